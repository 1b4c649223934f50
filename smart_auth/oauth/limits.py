"""Rate limits of the OAuth endpoints, kept in the login throttle's table (`auth_throttle`, through
`smart_auth.accounts.security`) so that every server process counts the same attempts: failed token requests
per client address and per client, and registrations per client address. Each key locks for the login
throttle's lock time once it reaches its limit within the throttle's window."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from smart_auth.accounts import security


@dataclass(frozen=True)
class Limits:
    """The configured limits (0 turns one off)."""

    token_per_ip: int = 30
    token_per_client: int = 100
    register_per_ip: int = 20

    def token_keys(self, ip: str | None, client_id: str | None) -> list[tuple[str, int]]:
        """Throttle keys of a token request: its address and, when it names a registered client, that client."""
        keys = [(f"oauth-token-ip:{ip}"[:400], self.token_per_ip)] if ip and self.token_per_ip > 0 else []
        if client_id and self.token_per_client > 0:
            keys.append((f"oauth-token-client:{client_id}"[:400], self.token_per_client))
        return keys

    def register_keys(self, ip: str | None) -> list[tuple[str, int]]:
        return [(f"oauth-register-ip:{ip}"[:400], self.register_per_ip)] if ip and self.register_per_ip > 0 else []


def counted(error: str | None, unknown_grant: bool) -> bool:
    """A failed token request counts when it guessed: client credentials that do not authenticate
    (invalid_client), or a code or refresh token that does not exist (invalid_grant for an unknown value; a
    real one used up, expired or revoked is an app's mistake, not a guess)."""
    return error == "invalid_client" or (error == "invalid_grant" and unknown_grant)


def wait_seconds(dbs: Session, keys: list[tuple[str, int]], now: float) -> int:
    """RFC 6585 section 4 Retry-After: seconds until the longest lock on any key ends (0: go ahead)."""
    return security.locked_minutes(dbs, keys, now) * 60 if keys else 0


def count(dbs: Session, keys: list[tuple[str, int]], now: float) -> None:
    """Count one attempt on every key in the caller's write unit (the caller commits); a first attempt racing
    another process's first attempt on the same key is counted again on the row that process made."""
    if not keys:
        return
    try:
        with dbs.begin_nested():
            security.record_failure(dbs, keys, now)
    except IntegrityError:
        security.record_failure(dbs, keys, now)
