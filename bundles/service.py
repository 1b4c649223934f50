"""Send Record: validate the form, build and encrypt the Bundle, store it with a mailed link, serve it back.

No Flask here: the views pass plain values and get domain results or domain errors.  The password is
used once, to encrypt, and is never stored, logged or mailed.
"""
from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from fhir_server import AccessContext, AuditLog, FhirService, audit_event, now_instant

from . import builder, crypto, mails, repository
from .models import SentRecord, utcnow

PASSWORD_RULE = ("at least 12 characters, with an uppercase letter, a lowercase letter, a number and a "
                 "special character")
_PW_RULES: list[tuple[Callable[[str], bool], str]] = [
    (lambda p: len(p) >= 12, "at least 12 characters"),
    (lambda p: re.search(r"[A-Z]", p) is not None, "an uppercase letter"),
    (lambda p: re.search(r"[a-z]", p) is not None, "a lowercase letter"),
    (lambda p: re.search(r"[0-9]", p) is not None, "a number"),
    (lambda p: re.search(r"[^A-Za-z0-9]", p) is not None, "a special character"),
]
_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
NOTES_MAX = 2000


class LinkProblem(Exception):
    """A retrieval link that cannot give the record: reason is unknown | expired | revoked | limited."""

    def __init__(self, reason: str, retry_after: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class SendForm:
    recipient: str = ""
    start: str = ""
    end: str = ""
    notes: str = ""
    password: str = ""
    confirm: str = ""


@dataclass(frozen=True)
class Sender:
    """Who sends: the signed-in user acting for the patient, and their access context."""

    user_id: int
    name: str
    ref: str | None
    patient_id: str
    ctx: AccessContext


def password_failures(password: str) -> list[str]:
    return [text for check, text in _PW_RULES if not check(password)]


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def date_errors(form: SendForm, required: bool) -> dict[str, str]:
    errors: dict[str, str] = {}
    for key, label in (("start", "Start date"), ("end", "End date")):
        value = getattr(form, key)
        if not value and required:
            errors[key] = f"Enter the {label.lower()}."
        elif value and not _is_date(value):
            errors[key] = f"{label} must be a date like 2024-01-31."
    if not errors and form.start and form.end and form.start > form.end:
        errors["end"] = "End date must be on or after the start date."
    return errors


def validate(form: SendForm) -> dict[str, str]:
    """Errors by field name (recipient, start, end, notes, password, confirm); empty when it can be sent."""
    errors: dict[str, str] = {}
    if not form.recipient:
        errors["recipient"] = "Enter the recipient's email address."
    elif len(form.recipient) > 320 or not _EMAIL.match(form.recipient):
        errors["recipient"] = "Recipient email must be an email address like doctor@example.org."
    errors.update(date_errors(form, required=True))
    if len(form.notes) > NOTES_MAX:
        errors["notes"] = f"Notes must be at most {NOTES_MAX} characters."
    failures = password_failures(form.password)
    if not form.password:
        errors["password"] = "Enter a password to encrypt the record."
    elif failures:
        errors["password"] = "Password needs " + ", ".join(failures) + "."
    elif form.password.lower() in form.notes.lower() or form.password.lower() in form.recipient.lower():
        errors["password"] = "The password must not appear in the notes or the email address."
    if form.password and form.confirm != form.password:
        errors["confirm"] = "Confirm password must match the password."
    return errors


class SendRecordService:
    """Everything Send Record does, over the app's sessions, FHIR service, mailer and audit log."""

    def __init__(self, sessions: sessionmaker[Session], fhir: FhirService, mailer: Any, audit: AuditLog,
                 base_url: str, ttl_days: int = 30, ip_limit: tuple[int, int] = (60, 900),
                 record_limit: tuple[int, int] = (30, 3600), writes: sessionmaker[Session] | None = None) -> None:
        self.sessions = sessions
        self.writes = writes or sessions  # writer sessions (BEGIN IMMEDIATE on SQLite): units that read, then write
        self.fhir = fhir
        self.mailer = mailer
        self.audit = audit
        self.base_url = base_url.rstrip("/")
        self.ttl_days = ttl_days
        self.ip_limit = ip_limit
        self.record_limit = record_limit

    # ---- sending ----
    def send(self, sender: Sender, form: SendForm) -> SentRecord:
        """Build, encrypt, store and mail in one transaction; the caller validated the form."""
        stamp, _ = now_instant()
        notes = builder.notes_communication(sender.patient_id, form.notes, sender.ref, sender.name,
                                            form.recipient, stamp) if form.notes.strip() else None
        built = builder.build(self.fhir, sender.ctx, sender.patient_id, form.start, form.end, notes=notes)
        jwe = crypto.encrypt(built.json_bytes(), form.password)
        token = secrets.token_urlsafe(32)
        now = utcnow()
        row = SentRecord(patient_id=sender.patient_id, sender_user_id=sender.user_id, sender_name=sender.name,
                         sender_ref=sender.ref, recipient_email=form.recipient.strip(),
                         token_hash=repository.token_hash(token), start_date=form.start, end_date=form.end,
                         counts=json.dumps(built.counts), jwe=jwe, size=len(jwe), created_at=now,
                         expires_at=now + timedelta(days=self.ttl_days), open_count=0)
        link = f"{self.base_url}/records/{token}"
        subject, text, html = mails.record_mail(sender.name, form.notes, link, row.expires_at)
        with self.writes.begin() as s:
            s.add(row)
            s.flush()
            self.mailer.send(row.recipient_email, subject, text, html=html, links=[link], session=s)
        self.audit.record(audit_event(
            action="create", subtype="create", agent_ref=sender.ref, agent_display=sender.name,
            patient_id=sender.patient_id, entities=[], ok=True, kind="rest",
            detail=f"Send Record: {built.total} records from {form.start} to {form.end} sent encrypted to "
                   f"{row.recipient_email}"))
        return row

    def download(self, sender: Sender, start: str, end: str) -> builder.BuiltBundle:
        """The patient's own unencrypted Bundle (Download and its readable view), audited as one access."""
        built = builder.build(self.fhir, sender.ctx, sender.patient_id, start, end)
        span = f" from {start or 'the beginning'} to {end or 'today'}" if start or end else ""
        self.audit.record(audit_event(
            action="read", subtype="read", agent_ref=sender.ref, agent_display=sender.name,
            patient_id=sender.patient_id, entities=[], ok=True,
            detail=f"Download: {built.total} records{span} as a FHIR Bundle"))
        return built

    # ---- the patient's list ----
    def sent(self, patient_id: str) -> list[SentRecord]:
        with self.sessions() as s:
            return repository.for_patient(s, patient_id)

    def revoke(self, sender: Sender, record_id: int) -> SentRecord | None:
        """Kill the link and erase the encrypted record; None when it is not this patient's."""
        with self.writes.begin() as s:
            row = repository.get_for_patient(s, sender.patient_id, record_id)
            if row is None:
                return None
            if row.revoked_at is None:
                repository.erase(s, row.id, utcnow())
        self.audit.record(audit_event(
            action="update", subtype="update", agent_ref=sender.ref, agent_display=sender.name,
            patient_id=sender.patient_id, entities=[], ok=True,
            detail=f"Send Record link to {row.recipient_email} revoked"))
        with self.sessions() as s:
            return s.get(SentRecord, record_id)

    # ---- retrieval ----
    def check_rate(self, key: str, limit: tuple[int, int]) -> None:
        count, window_s = limit
        window = int(time.time() // window_s)
        with self.writes.begin() as s:
            hits = repository.hit(s, key, window)
        if hits > count:
            raise LinkProblem("limited", retry_after=int((window + 1) * window_s - time.time()) + 1)

    def lookup(self, token: str, ip: str) -> SentRecord:
        """The record behind a link (for the page), rate limited per IP; LinkProblem when it cannot be opened."""
        self.check_rate(f"ip:{ip}", self.ip_limit)
        with self.sessions() as s:
            row = repository.by_token(s, token) if token else None
        if row is None:
            raise LinkProblem("unknown")
        self._usable(row)
        return row

    def retrieve(self, token: str, ip: str, agent: str) -> SentRecord:
        """The JWE for a recipient: rate limited per IP and per record, audited, counted as an open."""
        row = self.lookup(token, ip)
        try:
            self.check_rate(f"record:{row.id}", self.record_limit)
        except LinkProblem:
            self._audit_retrieval(row, ip, agent, False, "refused: too many retrievals")
            raise
        with self.writes.begin() as s:
            repository.mark_opened(s, row.id, utcnow())
        self._audit_retrieval(row, ip, agent, True, "encrypted record retrieved")
        return row

    def _usable(self, row: SentRecord) -> None:
        if row.revoked_at is not None:
            raise LinkProblem("revoked")
        if _aware(row.expires_at) <= utcnow():
            if row.jwe is not None:
                with self.writes.begin() as s:
                    repository.erase(s, row.id)
            raise LinkProblem("expired")
        if not row.jwe:
            raise LinkProblem("expired")

    def _audit_retrieval(self, row: SentRecord, ip: str, agent: str, ok: bool, what: str) -> None:
        self.audit.record(audit_event(
            action="read", subtype="read", agent_ref=None, agent_display=f"Send Record recipient {row.recipient_email}",
            patient_id=row.patient_id, entities=[], ok=ok,
            detail=f"Send Record link from {row.sender_name}: {what} (IP {ip}, {agent[:120]})"))


def _aware(when: datetime) -> datetime:
    """SQLite returns naive datetimes: they are UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def status_of(row: SentRecord) -> str:
    """active | expired | revoked, for the Sent records list."""
    if row.revoked_at is not None:
        return "revoked"
    return "expired" if _aware(row.expires_at) <= utcnow() else "active"


def aware(when: datetime | None) -> datetime | None:
    return None if when is None else _aware(when)
