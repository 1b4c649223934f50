"""Password reset by mail (1 hour, single use, ends other sessions) and TOTP two-step verification."""
from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from . import security
from .errors import InputError, LinkProblem
from .models import AuthToken, User
from .passwords import hash_password, verify_password
from .service import AccountService, normalize_email


class Recovery(AccountService):
    """Forgot password and two-step verification on top of the core account rules."""

    # ---- password reset ------------------------------------------------------------------------
    def request_reset(self, email: str, ip: str | None) -> None:
        """Mail a reset link when the account exists and is active; the caller answers the same either way."""
        try:
            value = normalize_email(email)
        except InputError:
            return
        now = self.clock()
        keys = [(f"reset:{value}"[:400], 5)] + ([(f"reset-ip:{ip}"[:400], 30)] if ip else [])
        with self.write() as repo:
            dbs: Session = repo.s
            if security.locked_minutes(dbs, keys, now):
                return
            security.record_failure(dbs, keys, now)  # counts requests: a few per hour per email
            user = self.user_by_email(dbs, value)
            if user is None or user.status != "active":
                return
            self.issue_link(dbs, "reset", user, None, user.email, user.name)
        self.audit("reset-request", user, True, "password reset link sent")

    def reset_info(self, token: str) -> User:
        with self.fhir.sessions() as dbs:
            row = self.valid_token(dbs, token, "reset")
            user = dbs.get(User, row.user_id)
            if user is None or user.status != "active":
                raise LinkProblem("This password reset link no longer works.", "revoked")
            return user

    def reset_password(self, token: str, password: str, confirm: str) -> User:
        """New password; ends every other session and (through the OAuth hook) every refresh token."""
        with self.write() as repo:
            dbs: Session = repo.s
            row = self.valid_token(dbs, token, "reset")
            user = dbs.get(User, row.user_id)
            if user is None or user.status != "active":
                raise LinkProblem("This password reset link no longer works.", "revoked")
            self.check_new_password(password, confirm)
            user.password_hash = hash_password(password)
            user.session_epoch = (user.session_epoch or 0) + 1
            row.state = "used"
            dbs.execute(update(AuthToken).where(AuthToken.purpose == "reset", AuthToken.user_id == user.id,
                                                AuthToken.state == "active")
                        .values(state="replaced").execution_options(synchronize_session=False))
            security.clear_failures(dbs, user.email)
        self.run_hooks("on_password_reset", user.id)
        self.audit("reset", user, True, "password reset; other sessions and app refresh tokens ended")
        return user

    # ---- two-step verification -----------------------------------------------------------------
    def enable_totp(self, user_id: int, secret: str, code: str) -> None:
        if not security.verify_totp(secret, code or "", self.clock()):
            raise InputError("That code is not correct. Enter the current 6-digit code from your authenticator app.")
        with self.write() as repo:
            user = repo.s.get(User, user_id)
            user.totp_secret = secret
        self.audit("totp-on", user, True, "two-step verification turned on")

    def disable_totp(self, user_id: int, password: str) -> None:
        with self.write() as repo:
            user = repo.s.get(User, user_id)
            if user is None or not verify_password(user.password_hash, password or ""):
                raise InputError("The password is not correct.")
            user.totp_secret = None
        self.audit("totp-off", user, True, "two-step verification turned off")
