"""Account rules: invitations, registration, login with date of birth, throttling, password reset, TOTP.

No Flask here: the views and the CLI call these methods and show the domain errors they raise.
Every write happens in one FhirService unit of work, so FHIR resources, account rows and the outbox
mail commit together (or not at all).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_server import audit_event

from . import security
from .errors import InputError, LinkProblem, LoginFailed, PolicyError, Throttled
from .mails import invite_mail, reset_mail
from .models import AuthToken, PatientAccess, User
from .passwords import hash_password, policy_failures, verify_password

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


@dataclass(frozen=True)
class LinkInfo:
    """What a valid registration link is for, so the form asks for the right fields."""

    user: User | None
    access: PatientAccess | None
    email: str
    needs_birth_date: bool
    needs_name: bool
    existing_account: bool  # the invitee already has an active account: accepting needs no new password


class AccountService:
    """Accounts on top of the FHIR service, the outbox mailer and the AuditEvent log."""

    def __init__(self, fhir: Any, mailer: Any, audit_log: Any, base_url: str,
                 hooks: Mapping[str, Any], clock: Callable[[], float] = time.time) -> None:
        self.fhir = fhir
        self.mailer = mailer
        self.audit_log = audit_log
        self.base_url = base_url.rstrip("/")
        self.hooks = hooks
        self.clock = clock

    # ---- plumbing -----------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Any]:
        """One atomic unit (FHIR resources + account rows + outbox mail); yields the FHIR repository."""
        with self.fhir.unit(write=True) as repo:
            yield repo

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

    # ---- registration -------------------------------------------------------------------------
    def link_info(self, token: str) -> LinkInfo:
        with self.fhir.sessions() as dbs:
            return self._link_info(dbs, token)

    def _link_info(self, dbs: Session, token: str) -> LinkInfo:
        row = self.valid_token(dbs, token, "invite")
        access = dbs.get(PatientAccess, row.access_id) if row.access_id else None
        if access is not None and access.relationship == "proxy":
            if access.status != "pending":
                raise LinkProblem("This invitation was withdrawn or already accepted. " + LINK_ADVICE, "revoked")
            email = access.invited_email or ""
            user = self.user_by_email(dbs, email)
            existing = user is not None and user.status == "active"
            return LinkInfo(user, access, email, True, user is None, existing)
        user = dbs.get(User, row.user_id) if row.user_id else None
        if user is None or user.status == "disabled":
            raise LinkProblem("This registration link no longer works. " + LINK_ADVICE, "revoked")
        return LinkInfo(user, access, user.email, not user.birth_date, False, False)

    def register(self, token: str, password: str, confirm: str, birth_date: str = "", name: str = "") -> User:
        """Set the password (or accept shared access for an existing account) and use up the link."""
        with self.write() as repo:
            dbs: Session = repo.s
            info = self._link_info(dbs, token)
            row = self.valid_token(dbs, token, "invite")
            if info.needs_birth_date:
                birth_date = check_date(birth_date)
            if info.access is not None and info.access.relationship == "proxy":
                if birth_date != info.access.invited_birth_date or (
                        info.user is not None and info.user.birth_date and info.user.birth_date != birth_date):
                    raise InputError("This date of birth does not match the one given when you were invited. "
                                     "Check it, or ask the person who invited you to invite you again.")
            if info.needs_name and not (name or "").strip():
                raise InputError("Enter your full name.")
            if info.existing_account:
                user = info.user
                assert user is not None
            else:
                self.check_new_password(password, confirm)
                user = info.user or User(email=info.email, name=name.strip()[:200], birth_date=birth_date,
                                         role="proxy", session_epoch=0)
                if user.id is None:
                    dbs.add(user)
                if info.needs_birth_date and not user.birth_date:
                    user.birth_date = birth_date
                if name.strip() and not user.name:
                    user.name = name.strip()[:200]
                user.password_hash = hash_password(password)
                user.status = "active"
                dbs.flush()
            if info.access is not None:
                info.access.user_id = user.id
                info.access.status = "active"
            else:  # the patient's own record opens with the registration
                dbs.execute(update(PatientAccess).where(PatientAccess.user_id == user.id,
                                                        PatientAccess.relationship == "self",
                                                        PatientAccess.status == "pending")
                            .values(status="active").execution_options(synchronize_session=False))
            row.state = "used"
            patient_id = info.access.patient_id if info.access is not None else self.own_patient(user)
        self.audit("register", user, True, "registration completed" if not info.existing_account
                   else "shared access accepted", patient_id)
        return user

    @staticmethod
    def check_new_password(password: str, confirm: str) -> None:
        failures = policy_failures(password or "")
        if failures:
            raise PolicyError(failures)
        if password != confirm:
            raise InputError("The two passwords do not match. Type the same password in both fields.")

    # ---- login --------------------------------------------------------------------------------
    def authenticate(self, email: str, password: str, birth_date: str, ip: str | None) -> User:
        """All three must match; one generic failure; throttled per account and per address."""
        try:
            return self._authenticate(email, password, birth_date, ip)
        except IntegrityError:  # two first failures for the same key at once: count again
            return self._authenticate(email, password, birth_date, ip)

    def _authenticate(self, email: str, password: str, birth_date: str, ip: str | None) -> User:
        keys = security.throttle_keys(email or "", ip)
        now = self.clock()
        user: User | None = None
        failures = False
        # the password is checked outside any write unit (argon2 takes tens of milliseconds, more under load,
        # and a writer holds the database's write lock); the outcome is counted in a short writer afterwards,
        # which looks at the locks again, so a burst of guesses still locks the account after the limit
        with self.fhir.sessions() as dbs:
            minutes = security.locked_minutes(dbs, keys, now)
            if not minutes:
                user = self.user_by_email(dbs, email or "")
                failures = security.failures_on(dbs, keys[:1])  # what a success clears
        if minutes:
            failed = "throttled"
        else:
            ok = verify_password(user.password_hash if user else None, password or "")
            ok = ok and user is not None and user.status == "active" and (birth_date or "").strip() == user.birth_date
            failed = "" if ok else "wrong credentials"
            if failed or failures:
                with self.write() as repo:
                    minutes = security.locked_minutes(repo.s, keys, now)
                    if minutes:
                        failed = "throttled"
                    elif failed:
                        security.record_failure(repo.s, keys, now)
                    elif not user or not user.totp_secret:
                        security.clear_failures(repo.s, email)
        if failed:
            self.audit("login", user if failed != "throttled" else None, False, f"sign-in refused: {failed}",
                       display=(email or "")[:320])
            if failed == "throttled":
                raise Throttled(minutes)
            raise LoginFailed()
        assert user is not None
        if not user.totp_secret:
            self.audit("login", user, True, "signed in", self.own_patient(user))
        return user

    def verify_second_factor(self, user_id: int, code: str, ip: str | None) -> User:
        """The TOTP step after a correct password, counted in the same throttle."""
        now = self.clock()
        with self.write() as repo:
            dbs: Session = repo.s
            user = dbs.get(User, user_id)
            keys = security.throttle_keys(user.email if user else "", ip)
            minutes = security.locked_minutes(dbs, keys, now)
            ok = (not minutes and user is not None and user.status == "active" and bool(user.totp_secret)
                  and security.verify_totp(user.totp_secret or "", code or "", now))
            if ok:
                assert user is not None
                security.clear_failures(dbs, user.email)
            elif not minutes:
                security.record_failure(dbs, keys, now)
        if minutes:
            raise Throttled(minutes)
        if not ok or user is None:
            self.audit("login", user, False, "sign-in refused: wrong authentication code")
            raise InputError("That code is not correct. Enter the current 6-digit code from your authenticator app.")
        self.audit("login", user, True, "signed in with two-step verification", self.own_patient(user))
        return user

    @staticmethod
    def own_patient(user: User) -> str | None:
        ref = user.fhir_user or ""
        return ref.split("/", 1)[1] if ref.startswith("Patient/") else None
