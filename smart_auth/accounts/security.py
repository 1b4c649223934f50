"""Link tokens, TOTP codes (RFC 6238) and login throttling: the account security primitives."""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import struct
from urllib.parse import quote, urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuthToken, LoginThrottle

ACCOUNT_LIMIT = 5  # failures per email before a lock
IP_LIMIT = 20  # failures per client address before a lock
WINDOW_S = 15 * 60
LOCK_S = 15 * 60


def new_link_token() -> tuple[str, str]:
    """A random token for a mail link and the sha256 hex stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find_token(dbs: Session, token: str, purpose: str) -> AuthToken | None:
    """The stored token for a link, compared in constant time on its hash."""
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    row = dbs.execute(select(AuthToken).where(AuthToken.token_hash == digest,
                                              AuthToken.purpose == purpose)).scalar_one_or_none()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return row


# ---- TOTP (RFC 6238, SHA-1, 6 digits, 30 s) -------------------------------------------------------
def new_totp_secret() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def totp_code(secret: str, at: float, step: int = 0) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    counter = int(at // 30) + step
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def verify_totp(secret: str, code: str, at: float) -> bool:
    """Accept the current code and one step either side (clock drift)."""
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) != 6:
        return False
    return any(hmac.compare_digest(totp_code(secret, at, step), code) for step in (-1, 0, 1))


def totp_uri(secret: str, email: str, issuer: str = "CareSpace") -> str:
    label = quote(f"{issuer}:{email}")
    return f"otpauth://totp/{label}?" + urlencode({"secret": secret, "issuer": issuer})


# ---- throttling -----------------------------------------------------------------------------------
def throttle_keys(email: str, ip: str | None) -> list[tuple[str, int]]:
    keys = [(f"email:{email.strip().lower()}"[:400], ACCOUNT_LIMIT)]
    if ip:
        keys.append((f"ip:{ip}"[:400], IP_LIMIT))
    return keys


def locked_minutes(dbs: Session, keys: list[tuple[str, int]], now: float) -> int:
    """Minutes until the longest lock on any key ends (0: not locked)."""
    wait = 0.0
    for key, _limit in keys:
        row = dbs.get(LoginThrottle, key)
        if row is not None and row.locked_until > now:
            wait = max(wait, row.locked_until - now)
    return math.ceil(wait / 60) if wait > 0 else 0


def record_failure(dbs: Session, keys: list[tuple[str, int]], now: float) -> None:
    """Count a failure on every key; reaching its limit within the window locks the key."""
    for key, limit in keys:
        row = dbs.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, window_start=now, locked_until=0.0)
            dbs.add(row)
        if now - row.window_start > WINDOW_S:
            row.failures, row.window_start = 0, now
        row.failures += 1
        if row.failures >= limit:
            row.locked_until = now + LOCK_S
            row.failures, row.window_start = 0, now


def failures_on(dbs: Session, keys: list[tuple[str, int]]) -> bool:
    """Whether any key has failures counted (a successful sign-in then clears the account's)."""
    for key, _limit in keys:
        row = dbs.get(LoginThrottle, key)
        if row is not None and row.failures:
            return True
    return False


def clear_failures(dbs: Session, email: str) -> None:
    row = dbs.get(LoginThrottle, f"email:{email.strip().lower()}"[:400])
    if row is not None:
        row.failures = 0
