"""Notifications: "something new is waiting in CareSpace" mails, triggered in the FHIR write path.

    FHIR write (REST, transaction, batch, console, portal, EHR)   committed unit of work
        -> FhirService.on_commit -> Notifier.on_commit             notices: (recipient, patient, kind)
        -> notify_pending rows                                     one per recipient, record and kind
        -> Notifier.deliver_due, after the batching window         one mail per recipient, via the outbox

What is new: a message from the practice to a patient (kind messages), a laboratory Observation that
becomes final (results) and a new current DocumentReference (documents). Corrections (amended,
corrected, entered-in-error) and updates of what was already there tell nobody, and neither do writers
whose AccessContext says notify=False (`carespace import` without --notify, demo data). A message from
a patient or proxy tells the practice's address (CARESPACE_PRACTICE_EMAIL) instead.

The mails name no test, value, document title, message subject or text, and no patient: only which
kinds of thing are new and a link to sign in, with a one-click unsubscribe (RFC 8058). A pending notice
is taken (DELETE ... RETURNING) in the same transaction that queues its mail, so with several server
processes each mail is sent once; who may still hear of a record is checked again at that moment.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from fhir_server import Commit, CommittedWrite
from smart_auth.accounts.notifications import PRACTICE, NotificationPeople

from .background import Background
from .mail import Mailer
from .models import PendingNotice

log = logging.getLogger("carespace.notifications")
POLL_S = 30.0  # notices queued by other processes (the CLI) are picked up at least this often
LAB_CATEGORY = "laboratory"
CORRECTIONS = {"amended", "corrected", "entered-in-error", "cancelled"}
NOT_SENT = {"entered-in-error", "not-done", "stopped", "preparation"}
_PATIENT_SIDE = ("Patient/", "RelatedPerson/")


@dataclass(frozen=True)
class Notice:
    """Something new in a patient's record for one audience: the patient's people, or the practice."""

    audience: str  # patient | practice
    patient_id: str
    kind: str  # messages | results | documents


def _patient_of(ref: Any) -> str | None:
    """The id in a Patient reference (relative or absolute)."""
    text = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(text, str) or "Patient/" not in text:
        return None
    tail = text.rsplit("Patient/", 1)[1].split("/", 1)[0]
    return tail or None


def _is_lab(resource: dict[str, Any]) -> bool:
    return any(c.get("code") == LAB_CATEGORY for cat in resource.get("category") or [] if isinstance(cat, dict)
               for c in cat.get("coding") or [] if isinstance(c, dict))


def notice_of(write: CommittedWrite) -> Notice | None:
    """What a committed version means for notifications, or None when it tells nobody."""
    res, before = write.resource, write.previous()
    pid = _patient_of(res.get("subject"))
    if pid is None:
        return None
    if write.resource_type == "Observation":
        became_final = res.get("status") == "final" and (
            before is None or before.get("status") not in {"final", *CORRECTIONS})
        return Notice("patient", pid, "results") if became_final and _is_lab(res) else None
    if write.resource_type == "DocumentReference":
        new = before is None and res.get("status") == "current" and res.get("docStatus") != "entered-in-error"
        return Notice("patient", pid, "documents") if new else None
    if write.resource_type == "Communication":
        if before is not None or res.get("status") in NOT_SENT:
            return None
        sender = (res.get("sender") or {}).get("reference") if isinstance(res.get("sender"), dict) else None
        from_patient = isinstance(sender, str) and sender.startswith(_PATIENT_SIDE)
        return Notice("practice" if from_patient else "patient", pid, "messages")
    return None


KIND_TEXT = {"messages": "a new message", "results": "new test results", "documents": "a new document"}
PRACTICE_SUBJECT = "New message from a patient in CareSpace"
SUBJECT = "You have something new in CareSpace"


def _listing(kinds: Iterable[str]) -> str:
    parts = [KIND_TEXT[k] for k in kinds]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


@dataclass(frozen=True)
class NoticeMail:
    subject: str
    text: str
    html: str
    links: list[str]
    headers: dict[str, str]


def patient_mail(kinds: tuple[str, ...], base_url: str, unsubscribe_url: str) -> NoticeMail:
    """The mail to a patient or proxy: what kinds are new and where to sign in, nothing clinical."""
    login, account = f"{base_url}/login", f"{base_url}/account"
    what = _listing(kinds)
    text = (f"Hello,\n\nThere is {what} waiting for you in CareSpace.\n\n"
            f"Sign in to see it: {login}\n\n"
            "For your privacy this email does not say what it is.\n\n"
            f"Choose which emails you get on your Account page: {account}\n"
            f"Stop these emails: {unsubscribe_url}\n")
    html = (f"<p>Hello,</p><p>There is {what} waiting for you in CareSpace.</p>"
            f'<p><a href="{login}">Sign in to see it</a></p>'
            "<p>For your privacy this email does not say what it is.</p>"
            f'<p><a href="{account}">Choose which emails you get</a> · <a href="{unsubscribe_url}">Stop these '
            "emails</a></p>")
    return NoticeMail(SUBJECT, text, html, [login, unsubscribe_url], _unsubscribe_headers(unsubscribe_url))


def practice_mail(count: int, base_url: str, unsubscribe_url: str) -> NoticeMail:
    """The mail to the practice's address: patients wrote, with no names or words of theirs."""
    inbox = f"{base_url}/practice/inbox"
    what = "A patient sent a new message" if count == 1 else f"Patients sent {count} new messages"
    text = (f"{what} in CareSpace.\n\nOpen the Inbox to read and answer: {inbox}\n\n"
            f"Stop these emails to this address: {unsubscribe_url}\n")
    html = (f"<p>{what} in CareSpace.</p><p><a href=\"{inbox}\">Open the Inbox</a> to read and answer.</p>"
            f'<p><a href="{unsubscribe_url}">Stop these emails to this address</a></p>')
    return NoticeMail(PRACTICE_SUBJECT, text, html, [inbox, unsubscribe_url], _unsubscribe_headers(unsubscribe_url))


def _unsubscribe_headers(url: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe, and RFC 3834 so auto-responders stay quiet."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated"}


class Notifier:
    """Turns committed writes into pending notices, and due notices into one mail per recipient."""

    def __init__(self, sessions: sessionmaker[Session], write_sessions: sessionmaker[Session],
                 people: NotificationPeople, mailer: Mailer, *, base_url: str, window_s: float,
                 practice_email: str | None, clock: Callable[[], float] = time.time, worker: bool = True) -> None:
        self.sessions = sessions
        self.writes = write_sessions
        self.people = people
        self.mailer = mailer
        self.base_url = base_url.rstrip("/")
        self.window_s = window_s
        self.practice_email = (practice_email or "").strip() or None
        self.clock = clock
        self.worker_enabled = worker
        self.sender = Background("carespace-notifier", self._step, log)

    # ---- the trigger (FhirService.on_commit) -----------------------------------------------------
    def on_commit(self, commit: Commit) -> None:
        """Queue a notice per recipient for what a committed unit of work added (after its commit)."""
        if not commit.notify:
            return
        notices = {n for n in (notice_of(w) for w in commit.writes) if n is not None}
        if not notices:
            return
        now = self.clock()
        with self.writes.begin() as dbs:
            rows: set[tuple[str, str, str]] = set()
            by_patient = self.people.people_of(dbs, {n.patient_id for n in notices if n.audience == "patient"})
            for n in notices:
                if n.audience == "patient":
                    rows.update((r, n.patient_id, n.kind) for r in by_patient.get(n.patient_id, []))
                elif self.practice_email:
                    rows.add((PRACTICE, n.patient_id, n.kind))
            if rows:
                dbs.execute(insert(PendingNotice), [
                    {"recipient": r, "patient_id": pid, "kind": kind, "created_at": now}
                    for r, pid, kind in sorted(rows)])
        if rows:
            self.kick()

    # ---- delivery ---------------------------------------------------------------------------------
    def deliver_due(self) -> int:
        """Queue one mail for each recipient whose oldest notice is past the window; returns how many."""
        cutoff = self.clock() - self.window_s
        with self.sessions() as dbs:
            due = dbs.execute(select(PendingNotice.recipient).group_by(PendingNotice.recipient)
                              .having(func.min(PendingNotice.created_at) <= cutoff)).scalars().all()
        return sum(self._deliver(recipient) for recipient in due)

    def _deliver(self, recipient: str) -> int:
        """Take every notice of one recipient and queue their mail in the same transaction (sent once)."""
        with self.writes.begin() as dbs:
            taken = dbs.execute(delete(PendingNotice).where(PendingNotice.recipient == recipient)
                                .returning(PendingNotice.patient_id, PendingNotice.kind)).all()
            if not taken:
                return 0  # another process took them first
            token = self.people.unsubscribe_token(recipient)
            unsubscribe = f"{self.base_url}/unsubscribe?t={token}"
            if recipient == PRACTICE:
                if not self.practice_email or not self.people.practice_wants(dbs):
                    return 0
                to, mail = self.practice_email, practice_mail(len(taken), self.base_url, unsubscribe)
            else:
                where = self.people.delivery(dbs, recipient, [(str(p), str(k)) for p, k in taken])
                if where is None:
                    return 0
                to, mail = where.email, patient_mail(where.kinds, self.base_url, unsubscribe)
            self.mailer.send(to, mail.subject, mail.text, html=mail.html, links=mail.links, session=dbs,
                             headers=mail.headers)
        return 1

    def next_due(self) -> float | None:
        """Epoch seconds when the next recipient's window ends (None: nothing pending)."""
        with self.sessions() as dbs:
            oldest = dbs.execute(select(func.min(PendingNotice.created_at))).scalar()
        return None if oldest is None else float(oldest) + self.window_s

    def kick(self) -> None:
        """Wake the background sender (started on first use in server processes)."""
        if self.worker_enabled:
            self.sender.kick()

    def stop(self) -> None:
        self.sender.stop()

    def _step(self) -> float:
        """Send what is due; sleep until the next recipient's window ends (or POLL_S)."""
        self.deliver_due()
        due = self.next_due()
        return POLL_S if due is None else max(0.2, min(POLL_S, due - self.clock() + 0.05))


def init_app(app: Any) -> None:
    """Install the Notifier on the FHIR write path (app.extensions["notifier"])."""
    fhir = app.extensions["fhir_service"]
    people: NotificationPeople = app.extensions["accounts"].people
    notifier = Notifier(app.extensions["carespace.sessions"], app.extensions["carespace.write_sessions"], people,
                        app.extensions["mailer"], base_url=app.config["BASE_URL"],
                        window_s=float(app.config["NOTIFY_WINDOW_S"]), practice_email=app.config.get("PRACTICE_EMAIL"),
                        clock=lambda: time.time() + float(app.config.get("CLOCK_OFFSET_S") or 0),
                        worker=bool(app.config.get("MAIL_WORKER", True)))
    app.extensions["notifier"] = notifier
    fhir.on_commit.append(notifier.on_commit)
    started = {"done": False}

    @app.before_request
    def _start_notifier() -> None:  # picks up notices queued by other processes or before a restart
        if not started["done"]:
            started["done"] = True
            notifier.kick()
