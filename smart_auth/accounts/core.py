"""What every account service stands on: the FHIR service's units of work, the outbox, the audit log, links.

No Flask here: the views and the CLI call the services and show the domain errors they raise.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from fhir_server import FhirService, UnitOfWork, audit_event

from . import security
from .errors import InputError, LinkProblem, PolicyError
from .mails import invite_mail, reset_mail
from .models import AuthToken, PatientAccess, User
from .passwords import policy_failures

INVITE_TTL_S = 4 * 24 * 3600
RESET_TTL_S = 3600
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LINK_ADVICE = "Please ask our practice to resend the invite."


def normalize_email(email: str) -> str:
    """Emails are compared lower-cased and trimmed."""
    value = (email or "").strip().lower()
    if not EMAIL_RE.match(value) or len(value) > 320:
        raise InputError("Enter a valid email address, like name@example.com.")
    return value


def check_date(value: str, what: str = "date of birth") -> str:
    """A YYYY-MM-DD date that exists and is not in the future."""
    import datetime as dt
    value = (value or "").strip()
    try:
        day = dt.date.fromisoformat(value) if DATE_RE.match(value) else None
    except ValueError:
        day = None
    if day is None or day > dt.date.today() or day.year < 1900:
        raise InputError(f"Enter a valid {what} (YYYY-MM-DD).")
    return value


class AccountCore:
    """The plumbing the account services share (composed into each, never inherited)."""

    def __init__(self, fhir: FhirService, mailer: Any, audit_log: Any, base_url: str,
                 hooks: Mapping[str, Any], clock: Callable[[], float] = time.time, secret_key: bytes = b"") -> None:
        self.fhir = fhir
        self.secret_key = secret_key  # the instance secret: seals pending TOTP secrets, signs device cookies
        self.mailer = mailer
        self.audit_log = audit_log
        self.base_url = base_url.rstrip("/")
        self.hooks = hooks
        self.clock = clock

    # ---- plumbing -----------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[UnitOfWork]:
        """One atomic unit: FHIR resources (uow.fhir), account rows and outbox mail (uow.session) commit together."""
        with self.fhir.transaction(write=True) as uow:
            yield uow

    def audit(self, action: str, user: User | None, ok: bool, detail: str, patient_id: str | None = None,
              display: str | None = None, ref: str | None = None) -> None:
        ref = user.fhir_user if user is not None else ref
        self.audit_log.record(audit_event(kind="auth", action=action, subtype=action, agent_ref=ref,
                                          agent_display=display or (user.email if user else "unknown"),
                                          patient_id=patient_id, entities=[], ok=ok, detail=detail))

    def run_hooks(self, name: str, *args: Any) -> None:
        for hook in list(self.hooks.get(name) or []):
            hook(*args)

    @staticmethod
    def user_by_email(dbs: Session, email: str) -> User | None:
        return dbs.execute(select(User).where(func.lower(User.email) == email.strip().lower())).scalar_one_or_none()

    def issue_link(self, dbs: Session, purpose: str, user: User | None, access: PatientAccess | None,
                   to: str, name: str, for_patient: str | None = None) -> int:
        """Kill the earlier links for the same invite/reset, store a new hashed token, queue the mail."""
        q = update(AuthToken).where(AuthToken.purpose == purpose, AuthToken.state == "active")
        if access is not None:
            q = q.where(AuthToken.access_id == access.id)
        else:
            assert user is not None
            q = q.where(AuthToken.user_id == user.id)
        dbs.execute(q.values(state="replaced").execution_options(synchronize_session=False))
        token, digest = security.new_link_token()
        ttl = INVITE_TTL_S if purpose == "invite" else RESET_TTL_S
        dbs.add(AuthToken(purpose=purpose, token_hash=digest, user_id=user.id if user else None,
                          access_id=access.id if access else None, expires_at=self.clock() + ttl, state="active"))
        if purpose == "invite":
            mail = invite_mail(f"{self.base_url}/register?token={token}", name, for_patient)
        else:
            mail = reset_mail(f"{self.base_url}/reset-password?token={token}", name)
        return int(self.mailer.send(to, mail.subject, mail.text, html=mail.html, links=[mail.link], session=dbs))

    def valid_token(self, dbs: Session, token: str, purpose: str) -> AuthToken:
        """The usable token for a link, or LinkProblem saying what happened."""
        row = security.find_token(dbs, token, purpose)
        what = "registration link" if purpose == "invite" else "password reset link"
        fix = LINK_ADVICE if purpose == "invite" else "Ask for a new one with \u201cForgot password\u201d on the login page."
        if row is None:
            raise LinkProblem(f"This {what} is not valid. Check that you opened the whole link from the email. {fix}",
                              "invalid")
        if row.state == "used":
            raise LinkProblem(f"This {what} has already been used. If you have set your password, sign in on the "
                              f"login page. Otherwise: {fix}", "used")
        if row.state == "replaced":
            raise LinkProblem(f"This {what} was replaced by a newer one: use the link in the most recent email. "
                              f"{fix}", "replaced")
        if row.state != "active":
            raise LinkProblem(f"This {what} was withdrawn and no longer works. {fix}", "revoked")
        if row.expires_at <= self.clock():
            valid = "4 days" if purpose == "invite" else "1 hour"
            raise LinkProblem(f"This {what} has expired: it was valid for {valid}. {fix}", "expired")
        return row

    def use_token(self, dbs: Session, token: str, purpose: str) -> AuthToken:
        """The usable token for a link, used up by this unit of work in one conditional UPDATE: of two uses of one
        link at once (in any processes) one goes through and the other is told that the link was used."""
        row = self.valid_token(dbs, token, purpose)
        done = cast(CursorResult[Any], dbs.execute(
            update(AuthToken).where(AuthToken.id == row.id, AuthToken.state == "active").values(state="used")
            .execution_options(synchronize_session=False)))
        if done.rowcount != 1:  # another request used it first: say so as valid_token would now
            dbs.refresh(row)
            return self.valid_token(dbs, token, purpose)  # raises LinkProblem ("used", or what else happened)
        set_committed_value(row, "state", "used")
        return row

    @staticmethod
    def check_new_password(password: str, confirm: str) -> None:
        failures = policy_failures(password or "")
        if failures:
            raise PolicyError(failures)
        if password != confirm:
            raise InputError("The two passwords do not match. Type the same password in both fields.")

    @staticmethod
    def own_patient(user: User) -> str | None:
        ref = user.fhir_user or ""
        return ref.split("/", 1)[1] if ref.startswith("Patient/") else None
