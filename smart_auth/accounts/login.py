"""Signing in (RFC-free, the practice's rule): all three of email, password and date of birth, then TOTP if on.

Throttled without letting anyone lock the owner out (security.py's docstring has the rules): a browser
that signed in to the account before (its device cookie) is throttled on its own; others per account
and address, per account and per address, with locks that grow; the owner is mailed when a lock starts.
"""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import security
from .core import AccountCore
from .errors import InputError, LoginFailed, Throttled
from .mails import attempts_mail
from .models import LoginThrottle, User
from .passwords import verify_password

TOTP_LIMIT = 5  # wrong two-step codes per account before a lock
CODE_WRONG = "That code is not correct. Enter the current 6-digit code from your authenticator app."


class Login:
    """Sign-in: email, password and date of birth must all match; one generic failure; throttled; TOTP."""

    def __init__(self, core: AccountCore) -> None:
        self.core = core

    def authenticate(self, email: str, password: str, birth_date: str, ip: str | None,
                     device: str | None = None) -> User:
        """All three must match; one generic failure; throttled (see the module docstring). `device` is the
        browser's device cookie, if any."""
        try:
            return self._authenticate(email, password, birth_date, ip, device)
        except IntegrityError:  # two first failures for the same key at once: count again
            return self._authenticate(email, password, birth_date, ip, device)

    def device_cookie(self, user: User, current: str | None) -> str:
        """The device cookie to keep in this browser after a sign-in: the one it has, if it is for this person."""
        if security.device_nonce(self.core.secret_key, current, user.email):
            return str(current)
        return security.device_cookie(self.core.secret_key, user.email)

    def _keys(self, dbs: Session, email: str, ip: str | None, device: str | None,
              now: float) -> list[tuple[str, int]]:
        """A trusted browser's own key while it is not locked; the keys of any other browser otherwise."""
        nonce = security.device_nonce(self.core.secret_key, device, email)
        if nonce is not None:
            keys = security.device_keys(nonce)
            if not security.locked_minutes(dbs, keys, now):
                return keys
        return security.throttle_keys(email, ip)

    def _authenticate(self, email: str, password: str, birth_date: str, ip: str | None, device: str | None) -> User:
        now = self.core.clock()
        user: User | None = None
        failures = False
        # the password is checked outside any write unit (argon2 takes tens of milliseconds, more under load,
        # and a writer holds the database's write lock); the outcome is counted in a short writer afterwards,
        # which looks at the locks again, so a burst of guesses still locks the key after the limit
        with self.core.fhir.sessions() as dbs:
            keys = self._keys(dbs, email or "", ip, device, now)
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
                    security.take_keys(uow.session, keys, now)
                    minutes = security.locked_minutes(uow.session, keys, now)
                    if minutes:
                        failed = "throttled"
                    elif failed:
                        locked = security.record_failure(uow.session, keys, now, security.FIRST_LOCK_S)
                        if user is not None and any(not k.startswith("ip:") for k in locked):
                            self._notify(uow.session, user, now)
                    else:
                        security.clear_keys(uow.session, keys[:1])
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

    def _notify(self, dbs: Session, user: User, now: float) -> None:
        """Tell the owner that sign-ins to their account are being refused (at most once an hour)."""
        if user.status != "active":
            return
        key = f"notice:{user.id}"
        row = dbs.get(LoginThrottle, key)
        if row is not None and row.locked_until > now:
            return
        if row is None:
            row = LoginThrottle(key=key, failures=0, window_start=now, locked_until=0.0, strikes=0)
            dbs.add(row)
        row.locked_until = now + security.NOTICE_EVERY_S
        mail = attempts_mail(f"{self.core.base_url}/forgot-password", user.name)
        self.core.mailer.send(user.email, mail.subject, mail.text, html=mail.html, links=[mail.link], session=dbs)

    def verify_second_factor(self, user_id: int, code: str, ip: str | None) -> User:
        """The TOTP step after a correct password: each code once, wrong codes throttled per account."""
        now = self.core.clock()
        keys = [(f"totp:{user_id}", TOTP_LIMIT)] + ([(f"ip:{ip}"[:400], security.IP_LIMIT)] if ip else [])
        with self.core.write() as uow:
            dbs: Session = uow.session
            user = dbs.get(User, user_id)
            security.take_keys(dbs, keys, now)
            minutes = security.locked_minutes(dbs, keys, now)
            step = None
            if not minutes and user is not None and user.status == "active" and user.totp_secret:
                step = security.totp_step(user.totp_secret, code or "", now, user.totp_last_step)
            if step is not None:
                assert user is not None
                user.totp_last_step = step
                security.clear_keys(dbs, keys[:1])
            elif not minutes:
                security.record_failure(dbs, keys, now, security.FIRST_LOCK_S)
        if minutes:
            raise Throttled(minutes)
        if step is None or user is None:
            self.core.audit("login", user, False, "sign-in refused: wrong authentication code")
            raise InputError(CODE_WRONG)
        self.core.audit("login", user, True, "signed in with two-step verification", self.core.own_patient(user))
        return user
