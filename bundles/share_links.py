"""Share by link: SMART Health Links a patient makes, their manifest, single-use file locations, revocation.

The specification is "SMART Health Links" in the HL7 SMART Health Cards and Links IG
(https://hl7.org/fhir/uv/smart-health-cards-and-links/STU1/links-specification.html, also
https://docs.smarthealthit.org/smart-health-links/spec).  No Flask here: the views pass plain values.

The key is 32 random bytes made at creation; it goes into the link the patient is shown and nowhere
else, so the server keeps only ciphertext.  A long-term link (flag L) must be re-encrypted when the
record changes, which needs the key: for those links only, the key is kept sealed under the server's
own key (SHARE_LINK_SERVER_KEY, a file in the instance folder), never in the clear.

Errors raised to the views (each maps to one answer of the spec's manifest request):

    ShareLinkError
     +-- BadManifestRequest  400  the request body is not what the spec asks (no recipient, wrong types)
     +-- LinkGone            404  unknown, expired, revoked, or dead after too many wrong passcodes
     +-- WrongPasscode       401  with remaining_attempts (0: the link just died)
     +-- TooManyRequests     429  with retry_after seconds
"""
from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session, sessionmaker

from fhir_server import AccessContext, AuditLog, FhirError, FhirService, audit_event

from . import builder, crypto, repository
from .models import ShareLink, ShareLinkAccess, utcnow
from .service import Sender, SendForm, date_errors

CONTENT_TYPE = "application/fhir+json"
EXPIRY_DAYS = (1, 7, 30, 90, 365)
LABEL_MAX = 80  # the spec's limit on `label`
RECIPIENT_MAX = 200
PASSCODE_MIN, PASSCODE_MAX = 6, 200
_hasher = PasswordHasher()


class ShareLinkError(Exception):
    """A manifest or file request that cannot be answered with content."""


class BadManifestRequest(ShareLinkError):
    """The body is not a manifest request (400)."""


class LinkGone(ShareLinkError):
    """No active link behind this URL (404): unknown, expired, revoked or dead."""


class WrongPasscode(ShareLinkError):
    """The passcode does not match (401); remaining_attempts before the link dies."""

    def __init__(self, remaining_attempts: int) -> None:
        super().__init__(f"wrong passcode, {remaining_attempts} attempts left")
        self.remaining_attempts = remaining_attempts


class TooManyRequests(ShareLinkError):
    """Too many manifest requests from one address (429)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many requests")
        self.retry_after = retry_after


@dataclass
class ShareForm:
    """The Share by link form as typed (strings), validated by validate()."""

    label: str = ""
    share: str = "all"  # all | kinds
    kinds: list[str] = field(default_factory=list)
    start: str = ""
    end: str = ""
    passcode: str = ""
    no_passcode: bool = False
    expires: str = "30"  # days, one of EXPIRY_DAYS
    long_term: bool = False


@dataclass(frozen=True)
class Created:
    """A link just made: the only moment its shlink (holding the key) exists outside the recipient's hands."""

    row: ShareLink
    payload: dict[str, Any]
    shlink: str
    viewer_link: str


@dataclass(frozen=True)
class LinkView:
    """One row of the patient's list of links."""

    row: ShareLink
    status: str  # active | expired | revoked | locked
    kinds: list[str]
    counts: dict[str, int]
    accesses: list[ShareLinkAccess]

    @property
    def recipients(self) -> list[str]:
        """Who opened it, as each recipient named themselves, first opening first, each once."""
        seen: list[str] = []
        for a in reversed(self.accesses):
            if a.outcome == "opened" and a.recipient not in seen:
                seen.append(a.recipient)
        return seen


def validate(form: ShareForm) -> dict[str, str]:
    """Errors by field name (label, kinds, start, end, passcode, expires); empty when the link can be made."""
    errors: dict[str, str] = {}
    if len(form.label) > LABEL_MAX:
        errors["label"] = f"Label must be at most {LABEL_MAX} characters."
    if form.share not in ("all", "kinds"):
        errors["kinds"] = "Choose all records or some kinds of records."
    elif form.share == "kinds" and not form.kinds:
        errors["kinds"] = "Choose at least one kind of record, or share all records."
    elif any(k not in builder.KINDS for k in form.kinds):
        errors["kinds"] = "Choose kinds from the list."
    errors.update(date_errors(SendForm(start=form.start, end=form.end), required=False))
    if not form.no_passcode:
        if not form.passcode:
            errors["passcode"] = "Enter a passcode, or choose to share without one."
        elif not PASSCODE_MIN <= len(form.passcode) <= PASSCODE_MAX:
            errors["passcode"] = f"Passcode must be {PASSCODE_MIN} to {PASSCODE_MAX} characters."
    if form.expires not in {str(d) for d in EXPIRY_DAYS}:
        errors["expires"] = "Choose when the link stops working."
    return errors


def b64u_json(obj: dict[str, Any]) -> str:
    return crypto.b64u(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def _aware(when: datetime) -> datetime:
    """SQLite returns naive datetimes: they are UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def status_of(row: ShareLink, now: datetime | None = None) -> str:
    """active | expired | revoked | locked (too many wrong passcodes), for the list and the manifest."""
    if row.revoked_at is not None:
        return "revoked"
    if _aware(row.expires_at) <= (now or utcnow()):
        return "expired"
    if row.passcode_hash is not None and row.attempts_left <= 0:
        return "locked"
    return "active" if row.jwe else "expired"


class ShareLinkService:
    """Everything Share by link does, over the app's sessions, FHIR service and audit log."""

    def __init__(self, sessions: sessionmaker[Session], writes: sessionmaker[Session], fhir: FhirService,
                 audit: AuditLog, base_url: str, server_key: bytes, *, attempts: int = 10, file_ttl_s: int = 300,
                 ip_limit: tuple[int, int] = (120, 900)) -> None:
        self.sessions = sessions
        self.writes = writes  # writer sessions (BEGIN IMMEDIATE on SQLite): units that read, then write
        self.fhir = fhir
        self.audit = audit
        self.base_url = base_url.rstrip("/")
        self.server_key = server_key
        self.attempts = attempts
        self.file_ttl_s = file_ttl_s
        self.ip_limit = ip_limit

    # ---- making a link ----
    def create(self, who: Sender, form: ShareForm) -> Created:
        """Build the Bundle, encrypt it under a new key and store only the ciphertext ("Creating a SHLink");
        the caller validated the form."""
        kinds = form.kinds if form.share == "kinds" else []
        built = builder.build(self.fhir, who.ctx, who.patient_id, form.start, form.end, kinds=kinds)
        key = os.urandom(32)
        token = secrets.token_urlsafe(32)  # 256 bits of randomness in the manifest URL
        now = utcnow()
        expires = now + timedelta(days=int(form.expires))
        label = form.label.strip()[:LABEL_MAX] or "Health record from CareSpace"
        row = ShareLink(
            patient_id=who.patient_id, creator_user_id=who.user_id, creator_name=who.name, creator_ref=who.ref,
            token_hash=repository.token_hash(token), label=label,
            passcode_hash=None if form.no_passcode else _hasher.hash(form.passcode),
            attempts_left=0 if form.no_passcode else self.attempts, start_date=form.start, end_date=form.end,
            kinds=json.dumps(kinds), counts=json.dumps(built.counts), long_term=form.long_term,
            wrapped_key=crypto.seal(self.server_key, key, token) if form.long_term else None,
            jwe=crypto.encrypt_dir(built.json_bytes(), key, cty=CONTENT_TYPE), content_at=now, created_at=now,
            expires_at=expires, open_count=0)
        with self.writes.begin() as s:
            s.add(row)
            s.flush()
            s.expunge(row)
        flag = ("L" if form.long_term else "") + ("" if form.no_passcode else "P")
        payload: dict[str, Any] = {"url": f"{self.base_url}/shl/manifest/{token}", "key": crypto.b64u(key),
                                   "exp": int(expires.timestamp()), "label": label, "v": 1}
        if flag:
            payload["flag"] = flag
        shlink = "shlink:/" + b64u_json(payload)
        span = f" from {form.start or 'the beginning'} to {form.end or 'today'}" if form.start or form.end else ""
        self.audit.record(audit_event(
            action="create", subtype="create", agent_ref=who.ref, agent_display=who.name, patient_id=who.patient_id,
            entities=[], ok=True, kind="rest",
            detail=f"Share by link \u201c{label}\u201d: {built.total} records{span}, "
                   f"{'with a passcode' if flag.endswith('P') else 'without a passcode'}, until "
                   f"{expires.date().isoformat()}"))
        return Created(row, payload, shlink, f"{self.base_url}/shl#{shlink}")

    # ---- the patient's list ----
    def links(self, patient_id: str) -> list[LinkView]:
        with self.sessions() as s:
            rows = repository.links_for(s, patient_id)
            accesses = repository.accesses_for(s, [r.id for r in rows])
        now = utcnow()
        return [LinkView(r, status_of(r, now), json.loads(r.kinds or "[]"), json.loads(r.counts or "{}"),
                         [a for a in accesses if a.link_id == r.id]) for r in rows]

    def revoke(self, who: Sender, link_id: int) -> ShareLink | None:
        """Kill the link and erase its ciphertext (and sealed key); None when it is not this patient's."""
        with self.writes.begin() as s:
            row = repository.link_for_patient(s, who.patient_id, link_id)
            if row is None:
                return None
            if row.revoked_at is None:
                repository.erase_link(s, row.id, utcnow())
            label = row.label
        self.audit.record(audit_event(
            action="update", subtype="update", agent_ref=who.ref, agent_display=who.name, patient_id=who.patient_id,
            entities=[], ok=True, detail=f"Share by link \u201c{label}\u201d revoked"))
        with self.sessions() as s:
            return s.get(ShareLink, link_id)

    # ---- the recipient's side ----
    def manifest(self, token: str, body: Any, ip: str) -> dict[str, Any]:
        """Answer a manifest request ("SHLink Manifest Request"): check recipient and passcode, count down wrong
        passcodes in the database, and list the file embedded or as a single-use location."""
        self._check_rate(ip)
        recipient, passcode, max_len = _manifest_request(body)
        with self.sessions() as s:
            row = repository.link_by_token(s, token) if token else None
        if row is None:
            raise LinkGone("unknown")
        self._active(row)
        self._creator_still_acts(row)
        if row.passcode_hash is not None:
            if not isinstance(passcode, str) or not _verify(row.passcode_hash, passcode):
                self._wrong_passcode(row, recipient, ip)
        if row.long_term:
            self._refresh(row, token)
        now = utcnow()
        with self.writes.begin() as s:
            current = repository.link_by_token(s, token)
            if current is None or status_of(current, now) != "active" or not current.jwe:
                raise LinkGone("gone")
            jwe = current.jwe
            repository.record_access(s, current.id, recipient, "opened", now)
            entry: dict[str, Any] = {"contentType": CONTENT_TYPE}
            if max_len is not None and len(jwe) > max_len:
                file_token = secrets.token_urlsafe(32)
                repository.add_file(s, file_token, current.id, now + timedelta(seconds=self.file_ttl_s), now)
                entry["location"] = f"{self.base_url}/shl/file/{file_token}"
            else:
                entry["embedded"] = jwe
        self._audit(row, recipient, ip, True, "opened the shared records")
        return {"files": [entry], "status": "can-change" if row.long_term else "finalized"}

    def file(self, file_token: str) -> str:
        """The JWE behind a location URL, once ("location" files are short-lived and single-use)."""
        now = utcnow()
        with self.writes.begin() as s:
            link_id = repository.claim_file(s, file_token, now) if file_token else None
            row = s.get(ShareLink, link_id) if link_id is not None else None
            if row is None or status_of(row, now) != "active" or not row.jwe:
                raise LinkGone("unknown")
            return row.jwe

    def _active(self, row: ShareLink) -> None:
        status = status_of(row)
        if status == "expired" and row.jwe is not None:
            with self.writes.begin() as s:
                repository.erase_link(s, row.id)
        if status != "active":
            raise LinkGone(status)

    def _creator_still_acts(self, row: ShareLink) -> None:
        """A link made by a proxy ends when their shared access does (the RelatedPerson made inactive)."""
        ref = row.creator_ref or ""
        if not ref.startswith("RelatedPerson/"):
            return
        try:
            person = self.fhir.read(AccessContext.system("share-links"), "RelatedPerson", ref.split("/", 1)[1]).json()
        except FhirError:
            person = {"active": False}
        if person.get("active", True) is not False:
            return
        with self.writes.begin() as s:
            repository.erase_link(s, row.id, utcnow())
        self.audit.record(audit_event(
            action="update", subtype="update", agent_ref=None, agent_display="CareSpace", patient_id=row.patient_id,
            entities=[], ok=True, detail=f"Share by link \u201c{row.label}\u201d revoked: {row.creator_name} no "
                                         "longer has shared access"))
        raise LinkGone("revoked")

    def _wrong_passcode(self, row: ShareLink, recipient: str, ip: str) -> None:
        now = utcnow()
        with self.writes.begin() as s:
            left = repository.spend_attempt(s, row.id)
            if left is None:
                raise LinkGone("locked")
            repository.record_access(s, row.id, recipient, "wrong-passcode", now)
            if left == 0:
                repository.erase_link(s, row.id)
        self._audit(row, recipient, ip, False, "wrong passcode" + (", the link no longer works" if left == 0 else
                                                                   f", {left} attempts left"))
        raise WrongPasscode(left)

    def _refresh(self, row: ShareLink, token: str) -> None:
        """A long-term link's content rebuilt from the record as it is now, under its own key."""
        if not row.wrapped_key:
            return
        key = crypto.unseal(self.server_key, row.wrapped_key, token)
        ctx = AccessContext.from_scopes(["patient/*.rs"], patient_id=row.patient_id, user=row.creator_ref,
                                        client_id=None)
        try:
            built = builder.build(self.fhir, ctx, row.patient_id, row.start_date, row.end_date,
                                  kinds=json.loads(row.kinds or "[]"))
        except FhirError:
            return  # the stored content stays as it was
        with self.writes.begin() as s:
            repository.replace_content(s, row.id, crypto.encrypt_dir(built.json_bytes(), key, cty=CONTENT_TYPE),
                                       json.dumps(built.counts), utcnow())

    def _check_rate(self, ip: str) -> None:
        count, window_s = self.ip_limit
        window = int(time.time() // window_s)
        with self.writes.begin() as s:
            hits = repository.hit(s, f"shl-ip:{ip}", window)
        if hits > count:
            raise TooManyRequests(int((window + 1) * window_s - time.time()) + 1)

    def _audit(self, row: ShareLink, recipient: str, ip: str, ok: bool, what: str) -> None:
        self.audit.record(audit_event(
            action="read", subtype="read", agent_ref=None, agent_display=f"Share link recipient \u201c{recipient}\u201d",
            patient_id=row.patient_id, entities=[], ok=ok,
            detail=f"Share by link \u201c{row.label}\u201d from {row.creator_name}: {recipient} {what} (IP {ip})"))


def _manifest_request(body: Any) -> tuple[str, Any, int | None]:
    """(recipient, passcode, embeddedLengthMax) of a manifest request body, or BadManifestRequest."""
    if not isinstance(body, dict):
        raise BadManifestRequest("The body must be a JSON object with a recipient.")
    recipient = body.get("recipient")
    if not isinstance(recipient, str) or not recipient.strip():
        raise BadManifestRequest("recipient is required: a string naming who asks for the records.")
    if len(recipient) > RECIPIENT_MAX:
        raise BadManifestRequest(f"recipient must be at most {RECIPIENT_MAX} characters.")
    passcode = body.get("passcode")
    if passcode is not None and not isinstance(passcode, str):
        raise BadManifestRequest("passcode must be a string.")
    max_len = body.get("embeddedLengthMax")
    if max_len is not None and (not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 0):
        raise BadManifestRequest("embeddedLengthMax must be a whole number, 0 or more.")
    return recipient.strip(), passcode, max_len


def _verify(stored: str, passcode: str) -> bool:
    try:
        return bool(_hasher.verify(stored, passcode))
    except (VerificationError, InvalidHashError):
        return False

