"""Who hears that something new is waiting: the people with access to a record, and what each wants to hear.

A patient and every person with active shared access to the record receive the "something new" mail,
unless they turned that kind off on their account page or unsubscribed from a mail. Invited people
who have not registered, disabled accounts and revoked proxies receive nothing. The unsubscribe link
carries a token that can do one thing only: turn these mails off for one recipient (RFC 8058).

Errors raised here (accounts/errors.py):

    AccountError
     +-- InputError   an unsubscribe token that is not one of ours (tampered, cut short)
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .core import AccountCore
from .errors import InputError
from .models import NotifyPreference, PatientAccess, User, utcnow

KINDS = ("messages", "results", "documents")
PRACTICE = "practice"
_PURPOSE = b"carespace-unsubscribe-v1:"


def user_recipient(user_id: int) -> str:
    """The recipient key of a person."""
    return f"user:{user_id}"


@dataclass(frozen=True)
class Delivery:
    """Where one recipient's mail goes and which of the pending kinds they still want."""

    email: str
    kinds: tuple[str, ...]


class NotificationPeople:
    """Preferences, recipients and unsubscribe tokens; takes sessions from the caller's unit of work."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    # ---- preferences ------------------------------------------------------------------------------
    @staticmethod
    def preferences(dbs: Session, recipient: str) -> dict[str, bool]:
        """The kinds a recipient wants (every kind on when they never chose)."""
        row = dbs.get(NotifyPreference, recipient)
        if row is None:
            return dict.fromkeys(KINDS, True)
        return {"messages": bool(row.messages), "results": bool(row.results), "documents": bool(row.documents)}

    @staticmethod
    def set_preferences(dbs: Session, recipient: str, wanted: Mapping[str, bool]) -> None:
        """Store the kinds a recipient wants (the caller's write unit commits it)."""
        row = dbs.get(NotifyPreference, recipient)
        if row is None:
            row = NotifyPreference(recipient=recipient)
            dbs.add(row)
        row.messages, row.results, row.documents = (bool(wanted.get(k, False)) for k in KINDS)
        row.updated_at = utcnow()

    # ---- one-click unsubscribe (RFC 8058) ---------------------------------------------------------
    def unsubscribe_token(self, recipient: str) -> str:
        """A token that only turns notification mails off for `recipient`."""
        mac = hmac.new(self.secret, _PURPOSE + recipient.encode(), hashlib.sha256).digest()[:18]
        return f"{_b64(recipient.encode())}.{_b64(mac)}"

    def recipient_of(self, token: str) -> str:
        """The recipient a token was made for; InputError when it is not a token of ours."""
        head, _, tail = (token or "").strip().partition(".")
        try:
            recipient = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            recipient = ""
        if not recipient or not hmac.compare_digest(self.unsubscribe_token(recipient), f"{head}.{tail}"):
            raise InputError("This unsubscribe link is not valid. Open the whole link from the email, or sign in "
                             "and change your email settings on the Account page.")
        return recipient

    def unsubscribe(self, dbs: Session, token: str) -> str:
        """RFC 8058 one-click: every notification kind off for the token's recipient; returns the recipient."""
        recipient = self.recipient_of(token)
        self.set_preferences(dbs, recipient, dict.fromkeys(KINDS, False))
        return recipient

    # ---- recipients -------------------------------------------------------------------------------
    @staticmethod
    def people_of(dbs: Session, patient_ids: Iterable[str]) -> dict[str, list[str]]:
        """patient id -> recipient keys of the active people with active access (the patient, proxies)."""
        ids = sorted(set(patient_ids))
        out: dict[str, list[str]] = {pid: [] for pid in ids}
        if not ids:
            return out
        rows = dbs.execute(select(PatientAccess.patient_id, PatientAccess.user_id)
                           .join(User, User.id == PatientAccess.user_id)
                           .where(PatientAccess.patient_id.in_(ids), PatientAccess.status == "active",
                                  User.status == "active")
                           .order_by(PatientAccess.user_id)).all()
        for pid, uid in rows:
            if uid is not None:
                out[pid].append(user_recipient(int(uid)))
        return out

    def delivery(self, dbs: Session, recipient: str, pending: Iterable[tuple[str, str]]) -> Delivery | None:
        """Where to mail `recipient` about (patient id, kind) notices, checked again now; None: nobody to tell.

        Access revoked or an account disabled after the notice was queued means no mail about that record.
        """
        kind_of = [(pid, kind) for pid, kind in pending]
        prefs = self.preferences(dbs, recipient)
        if recipient == PRACTICE:
            return None  # the practice's address comes from the configuration (see carespace.notifications)
        uid = int(recipient.split(":", 1)[1])
        user = dbs.get(User, uid)
        if user is None or user.status != "active":
            return None
        still = set(dbs.execute(select(PatientAccess.patient_id).where(
            PatientAccess.user_id == uid, PatientAccess.status == "active",
            PatientAccess.patient_id.in_({pid for pid, _ in kind_of}))).scalars())
        kinds = tuple(k for k in KINDS if prefs[k] and any(pid in still and kind == k for pid, kind in kind_of))
        return Delivery(user.email, kinds) if kinds else None

    def practice_wants(self, dbs: Session) -> bool:
        """The practice's address has not unsubscribed from "new message" mails."""
        return self.preferences(dbs, PRACTICE)["messages"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class NotificationChoices:
    """The account page's email settings and the unsubscribe link, each change one unit of work."""

    def __init__(self, core: AccountCore, people: NotificationPeople) -> None:
        self.core = core
        self.people = people

    def of(self, user_id: int) -> dict[str, bool]:
        """The kinds of "something new" mail this person gets."""
        with self.core.fhir.transaction(write=False) as uow:
            return self.people.preferences(uow.session, user_recipient(user_id))

    def choose(self, user: User, wanted: Mapping[str, bool]) -> None:
        """Store the kinds this person wants (account page)."""
        with self.core.write() as uow:
            self.people.set_preferences(uow.session, user_recipient(user.id), wanted)
        on = [k for k in KINDS if wanted.get(k)]
        self.core.audit("notification-settings", user, True, "email about: " + (", ".join(on) or "nothing"))

    def unsubscribe(self, token: str) -> str:
        """One-click unsubscribe (RFC 8058 section 3.1): every kind off, without signing in; returns the recipient."""
        with self.core.write() as uow:
            recipient = self.people.unsubscribe(uow.session, token)
        user = None
        if recipient.startswith("user:"):
            with self.core.fhir.transaction(write=False) as uow:
                user = uow.session.get(User, int(recipient.split(":", 1)[1]))
        self.core.audit("unsubscribe", user, True, f"notification mails off for {recipient}",
                        display=None if user else recipient)
        return recipient
