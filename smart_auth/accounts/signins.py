"""The server side of sign-in sessions: signing out ends one on every server process, at once.

The session cookie names its session by a random token; the table keeps only the token's sha256, the
person and the absolute end. A copied cookie stops working when its row is gone: signed out, password
reset or account disabled (those two end every session of the person, as does the session epoch).
"""
from __future__ import annotations

import time

from sqlalchemy import delete
from sqlalchemy.orm import Session

from . import security
from .core import AccountCore
from .models import SignIn


class SignIns:
    """Start and end sign-in sessions (each one unit of work)."""

    def __init__(self, core: AccountCore) -> None:
        self.core = core

    def start(self, user_id: int, lifetime_s: float) -> str:
        """A new session for the person: the token for the cookie (sessions already over are cleared out)."""
        token, digest = security.new_link_token()
        now = time.time()  # real time, like the idle timeout (the accounts clock moves in link tests)
        with self.core.write() as uow:
            uow.session.execute(delete(SignIn).where(SignIn.expires_at <= now)
                                .execution_options(synchronize_session=False))
            uow.session.add(SignIn(token_hash=digest, user_id=user_id, created_at=now, expires_at=now + lifetime_s))
        return token

    def end(self, token: str) -> None:
        """Sign out: the session's row goes, so its cookie, wherever copied, no longer signs anyone in."""
        if not token:
            return
        with self.core.write() as uow:
            uow.session.execute(delete(SignIn).where(SignIn.token_hash == security.hash_token(token))
                                .execution_options(synchronize_session=False))

    @staticmethod
    def end_all(dbs: Session, user_id: int) -> None:
        """Sign out everywhere, inside the caller's unit (password reset, account disabled)."""
        dbs.execute(delete(SignIn).where(SignIn.user_id == user_id).execution_options(synchronize_session=False))
