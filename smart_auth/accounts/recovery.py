"""Password reset by mail (1 hour, single use, ends other sessions) and TOTP two-step verification."""
from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from . import security
from .core import AccountCore, normalize_email
from .errors import InputError, LinkProblem
from .models import AuthToken, User
from .passwords import hash_password, verify_password


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
            row = self.core.valid_token(dbs, token, "reset")
            user = dbs.get(User, row.user_id)
            if user is None or user.status != "active":
                raise LinkProblem("This password reset link no longer works.", "revoked")
            return user

    def reset_password(self, token: str, password: str, confirm: str) -> User:
        """New password; ends every other session and (through the OAuth hook) every refresh token."""
        with self.core.write() as uow:
            dbs: Session = uow.session
            row = self.core.valid_token(dbs, token, "reset")
            user = dbs.get(User, row.user_id)
            if user is None or user.status != "active":
                raise LinkProblem("This password reset link no longer works.", "revoked")
            self.core.check_new_password(password, confirm)
            user.password_hash = hash_password(password)
            user.session_epoch = (user.session_epoch or 0) + 1
            row.state = "used"
            dbs.execute(update(AuthToken).where(AuthToken.purpose == "reset", AuthToken.user_id == user.id,
                                                AuthToken.state == "active")
                        .values(state="replaced").execution_options(synchronize_session=False))
            security.clear_failures(dbs, user.email)
        self.core.run_hooks("on_password_reset", user.id)
        self.core.audit("reset", user, True, "password reset; other sessions and app refresh tokens ended")
        return user

    # ---- two-step verification -----------------------------------------------------------------
    def enable_totp(self, user_id: int, secret: str, code: str) -> None:
        if not security.verify_totp(secret, code or "", self.core.clock()):
            raise InputError("That code is not correct. Enter the current 6-digit code from your authenticator app.")
        with self.core.write() as uow:
            user = uow.session.get(User, user_id)
            if user is None:
                raise InputError("This account no longer exists.")
            user.totp_secret = secret
        self.core.audit("totp-on", user, True, "two-step verification turned on")

    def disable_totp(self, user_id: int, password: str) -> None:
        with self.core.write() as uow:
            user = uow.session.get(User, user_id)
            if user is None or not verify_password(user.password_hash, password or ""):
                raise InputError("The password is not correct.")
            user.totp_secret = None
        self.core.audit("totp-off", user, True, "two-step verification turned off")
