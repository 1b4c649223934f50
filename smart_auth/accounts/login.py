"""Signing in (RFC-free, the practice's rule): all three of email, password and date of birth, then TOTP if on."""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import security
from .core import AccountCore
from .errors import InputError, LoginFailed, Throttled
from .models import User
from .passwords import verify_password


class Login:
    """Sign-in: email, password and date of birth must all match; one generic failure; throttled; TOTP."""

    def __init__(self, core: AccountCore) -> None:
        self.core = core

    def authenticate(self, email: str, password: str, birth_date: str, ip: str | None) -> User:
        """All three must match; one generic failure; throttled per account and per address."""
        try:
            return self._authenticate(email, password, birth_date, ip)
        except IntegrityError:  # two first failures for the same key at once: count again
            return self._authenticate(email, password, birth_date, ip)

    def _authenticate(self, email: str, password: str, birth_date: str, ip: str | None) -> User:
        keys = security.throttle_keys(email or "", ip)
        now = self.core.clock()
        user: User | None = None
        failures = False
        # the password is checked outside any write unit (argon2 takes tens of milliseconds, more under load,
        # and a writer holds the database's write lock); the outcome is counted in a short writer afterwards,
        # which looks at the locks again, so a burst of guesses still locks the account after the limit
        with self.core.fhir.sessions() as dbs:
            minutes = security.locked_minutes(dbs, keys, now)
            if not minutes:
                user = self.core.user_by_email(dbs, email or "")
                failures = security.failures_on(dbs, keys[:1])  # what a success clears
        if minutes:
            failed = "throttled"
        else:
            ok = verify_password(user.password_hash if user else None, password or "")
            ok = ok and user is not None and user.status == "active" and (birth_date or "").strip() == user.birth_date
            failed = "" if ok else "wrong credentials"
            if failed or failures:
                with self.core.write() as uow:
                    minutes = security.locked_minutes(uow.session, keys, now)
                    if minutes:
                        failed = "throttled"
                    elif failed:
                        security.record_failure(uow.session, keys, now)
                    elif not user or not user.totp_secret:
                        security.clear_failures(uow.session, email)
        if failed:
            self.core.audit("login", user if failed != "throttled" else None, False, f"sign-in refused: {failed}",
                       display=(email or "")[:320])
            if failed == "throttled":
                raise Throttled(minutes)
            raise LoginFailed()
        assert user is not None
        if not user.totp_secret:
            self.core.audit("login", user, True, "signed in", self.core.own_patient(user))
        return user

    def verify_second_factor(self, user_id: int, code: str, ip: str | None) -> User:
        """The TOTP step after a correct password, counted in the same throttle."""
        now = self.core.clock()
        with self.core.write() as uow:
            dbs: Session = uow.session
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
            self.core.audit("login", user, False, "sign-in refused: wrong authentication code")
            raise InputError("That code is not correct. Enter the current 6-digit code from your authenticator app.")
        self.core.audit("login", user, True, "signed in with two-step verification", self.core.own_patient(user))
        return user
