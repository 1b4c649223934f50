"""Password reset by mail (1 hour, single use, ends every session) and TOTP two-step verification."""
from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from . import security
from .core import AccountCore, normalize_email
from .errors import InputError, LinkProblem, Throttled
from .models import AuthToken, User
from .passwords import hash_password, verify_password
from .signins import SignIns

TOTP_OFF_LIMIT = 5  # wrong passwords on the "turn off two-step verification" form before a lock
SEAL_PURPOSE = "totp-pending"


class Recovery:
    """Forgot password and two-step verification."""

    def __init__(self, core: AccountCore) -> None:
        self.core = core

    # ---- password reset ------------------------------------------------------------------------
    def request_reset(self, email: str, ip: str | None) -> None:
        """Mail a reset link when the account exists and is active; the caller answers the same either way."""
        try:
            value = normalize_email(email)
        except InputError:
            return
        now = self.core.clock()
        keys = [(f"reset:{value}"[:400], 5)] + ([(f"reset-ip:{ip}"[:400], 30)] if ip else [])
        with self.core.write() as uow:
            dbs: Session = uow.session
            if security.locked_minutes(dbs, keys, now):
                return
            security.record_failure(dbs, keys, now)  # counts requests: a few per hour per email
            user = self.core.user_by_email(dbs, value)
            if user is None or user.status != "active":
                return
            self.core.issue_link(dbs, "reset", user, None, user.email, user.name)
        self.core.audit("reset-request", user, True, "password reset link sent")

    def reset_info(self, token: str) -> User:
        with self.core.fhir.sessions() as dbs:
            row = self.core.use_token(dbs, token, "reset")  # used once, across processes; undone if this unit fails
            user = dbs.get(User, row.user_id)
            if user is None or user.status != "active":
                raise LinkProblem("This password reset link no longer works.", "revoked")
            return user

    def reset_password(self, token: str, password: str, confirm: str) -> User:
        """New password; ends every other session and (through the OAuth hook) every refresh token."""
        with self.core.write() as uow:
            dbs: Session = uow.session
            row = self.core.use_token(dbs, token, "reset")  # used once, across processes; undone if this unit fails
            user = dbs.get(User, row.user_id)
            if user is None or user.status != "active":
                raise LinkProblem("This password reset link no longer works.", "revoked")
            self.core.check_new_password(password, confirm)
            user.password_hash = hash_password(password)
            user.session_epoch = (user.session_epoch or 0) + 1
            SignIns.end_all(dbs, user.id)
            dbs.execute(update(AuthToken).where(AuthToken.purpose == "reset", AuthToken.user_id == user.id,
                                                AuthToken.state == "active")
                        .values(state="replaced").execution_options(synchronize_session=False))
            security.clear_failures(dbs, user.email)
        self.core.run_hooks("on_password_reset", user.id)
        self.core.audit("reset", user, True, "password reset; other sessions and app refresh tokens ended")
        return user

    # ---- two-step verification -----------------------------------------------------------------
    def start_totp(self, user_id: int) -> str:
        """A new secret to set up, kept on the account sealed with the instance key (never in the cookie)."""
        secret = security.new_totp_secret()
        with self.core.write() as uow:
            user = uow.session.get(User, user_id)
            if user is None:
                raise InputError("This account no longer exists.")
            user.totp_pending = security.seal(self.core.secret_key, SEAL_PURPOSE, secret)
        return secret

    def pending_totp(self, user: User) -> str | None:
        """The secret being set up, if any (shown with its QR code until its first code turns it on)."""
        return security.unseal(self.core.secret_key, SEAL_PURPOSE, user.totp_pending)

    def enable_totp(self, user_id: int, code: str) -> None:
        """Turn two-step verification on with the pending secret's current code. That code signs nobody in (the
        person is signed in already), so it is not used up: the sign-in codes are, each after its first use."""
        now = self.core.clock()
        with self.core.write() as uow:
            user = uow.session.get(User, user_id)
            if user is None:
                raise InputError("This account no longer exists.")
            secret = security.unseal(self.core.secret_key, SEAL_PURPOSE, user.totp_pending)
            if secret is None or security.totp_step(secret, code or "", now) is None:
                raise InputError("That code is not correct. Enter the current 6-digit code from your authenticator app.")
            user.totp_secret, user.totp_pending, user.totp_last_step = secret, None, None
        self.core.audit("totp-on", user, True, "two-step verification turned on")

    def disable_totp(self, user_id: int, password: str, ip: str | None) -> None:
        """Turn it off with the password, throttled like signing in (5 wrong, then locks that grow)."""
        now = self.core.clock()
        keys = [(f"totp-off:{user_id}", TOTP_OFF_LIMIT)] + ([(f"ip:{ip}"[:400], security.IP_LIMIT)] if ip else [])
        with self.core.fhir.sessions() as dbs:
            minutes = security.locked_minutes(dbs, keys, now)
            user = dbs.get(User, user_id)
            stored = user.password_hash if user is not None else None
        if minutes:
            raise Throttled(minutes, "wrong passwords")
        ok = verify_password(stored, password or "")  # outside the write unit: argon2 is slow
        with self.core.write() as uow:
            minutes = security.locked_minutes(uow.session, keys, now)
            if not minutes and not ok:
                security.record_failure(uow.session, keys, now, security.FIRST_LOCK_S)
            user = uow.session.get(User, user_id)
            if not minutes and ok and user is not None:
                user.totp_secret, user.totp_last_step = None, None
                security.clear_keys(uow.session, keys[:1])
        if minutes:
            raise Throttled(minutes, "wrong passwords")
        if not ok or user is None:
            self.core.audit("totp-off", user, False, "turning off two-step verification refused: wrong password")
            raise InputError("The password is not correct.")
        self.core.audit("totp-off", user, True, "two-step verification turned off")
