"""Link tokens, TOTP codes (RFC 6238), trusted-device cookies, sealed secrets and login throttling: the account
security primitives.

Throttling follows the OWASP Authentication Cheat Sheet (account lockout must not be a denial of service) and
its device-cookie scheme: a browser that signed in to an account before carries a signed device cookie, and
its failures count against that cookie alone; every other browser's failures count per (account, address),
per account (all addresses together) and per address. Each lock in a row lasts longer (1, 2, 4, 8, then 15
minutes), so someone guessing from elsewhere never locks the owner out of a browser they used before.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import struct
from urllib.parse import quote, urlencode

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .models import AuthToken, LoginThrottle

ACCOUNT_LIMIT = 5  # failures per account from one address (or one trusted browser) before a lock
SPREAD_LIMIT = 20  # failures per account from browsers it never signed in on, all addresses together
IP_LIMIT = 20  # failures per client address (any accounts) before a lock
WINDOW_S = 15 * 60
FIRST_LOCK_S = 60  # sign-in locks double from here ...
LOCK_S = 15 * 60  # ... up to this (and every other throttle locks this long at once)
STRIKES_FORGOTTEN_S = 24 * 3600  # a day without a lock starts the doubling again
DEVICE_TTL_S = 180 * 24 * 3600
NOTICE_EVERY_S = 3600  # at most one "someone tried to sign in" mail per account per hour


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
STEP_S = 30


def new_totp_secret() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def totp_code(secret: str, at: float, step: int = 0) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    counter = int(at // STEP_S) + step
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def totp_step(secret: str, code: str, at: float, after: int | None = None) -> int | None:
    """The time step the code belongs to (the current one or one either side, for clock drift), or None.

    Steps up to `after` (the last one accepted) are refused: each code works once (RFC 6238 section 5.2).
    """
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) != 6:
        return None
    now = int(at // STEP_S)
    found = None
    for step in (-1, 0, 1):
        if hmac.compare_digest(totp_code(secret, at, step), code) and (after is None or now + step > after):
            found = now + step
    return found


def verify_totp(secret: str, code: str, at: float) -> bool:
    """Accept the current code and one step either side (clock drift)."""
    return totp_step(secret, code, at) is not None


def totp_uri(secret: str, email: str, issuer: str = "CareSpace") -> str:
    label = quote(f"{issuer}:{email}")
    return f"otpauth://totp/{label}?" + urlencode({"secret": secret, "issuer": issuer})


# ---- secrets sealed with the instance key ----------------------------------------------------------
def _sealing_key(secret_key: bytes, purpose: str) -> bytes:
    return hmac.new(secret_key, f"carespace seal {purpose}".encode(), hashlib.sha256).digest()


def seal(secret_key: bytes, purpose: str, value: str) -> str:
    """AES-GCM under a key derived from the instance secret; the purpose is bound in as associated data."""
    nonce = secrets.token_bytes(12)
    box = AESGCM(_sealing_key(secret_key, purpose)).encrypt(nonce, value.encode(), purpose.encode())
    return base64.urlsafe_b64encode(nonce + box).decode()


def unseal(secret_key: bytes, purpose: str, sealed: str | None) -> str | None:
    """The sealed value, or None when absent or not sealed with this instance's key."""
    if not sealed:
        return None
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        return AESGCM(_sealing_key(secret_key, purpose)).decrypt(raw[:12], raw[12:], purpose.encode()).decode()
    except (ValueError, InvalidTag):
        return None


# ---- trusted-device cookies (OWASP "Slow Down Online Guessing Attacks with Device Cookies") --------
def _devices(secret_key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="carespace-device")


def device_cookie(secret_key: bytes, email: str) -> str:
    """A signed cookie saying "this browser signed in to this account", with a nonce of its own."""
    return _devices(secret_key).dumps({"e": email.strip().lower(), "n": secrets.token_urlsafe(16)})


def device_nonce(secret_key: bytes, cookie: str | None, email: str) -> str | None:
    """The cookie's nonce when it is ours, recent and for this email; None otherwise."""
    if not cookie or len(cookie) > 400:
        return None
    try:
        data = _devices(secret_key).loads(cookie, max_age=DEVICE_TTL_S)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("e") != email.strip().lower() or not isinstance(data.get("n"), str):
        return None
    return str(data["n"])


# ---- throttling -----------------------------------------------------------------------------------
def throttle_keys(email: str, ip: str | None) -> list[tuple[str, int]]:
    """The keys a sign-in from a browser that never signed in to this account counts on."""
    value = email.strip().lower()
    keys = [(f"email-ip:{value}|{ip or '-'}"[:400], ACCOUNT_LIMIT), (f"email:{value}"[:400], SPREAD_LIMIT)]
    if ip:
        keys.append((f"ip:{ip}"[:400], IP_LIMIT))
    return keys


def device_keys(nonce: str) -> list[tuple[str, int]]:
    """The one key a trusted browser's sign-in counts on."""
    return [(f"device:{nonce}"[:400], ACCOUNT_LIMIT)]


def take_keys(dbs: Session, keys: list[tuple[str, int]], now: float) -> None:
    """Lock the keys' rows for this write and load their current counts, so concurrent failures on PostgreSQL
    are counted one after the other, never two on the same count (SQLite's writers take turns already).

    Missing rows are made first (INSERT ... ON CONFLICT DO NOTHING), then every row is locked (SELECT ... FOR
    UPDATE), each step in key order: two writers then wait for each other in one order and never deadlock,
    and no first failure is lost to a unique violation."""
    names = sorted({key for key, _limit in keys})
    if not names:
        return
    insert = pg_insert if dbs.get_bind().dialect.name == "postgresql" else sqlite_insert
    dbs.execute(insert(LoginThrottle).values([
        {"key": k, "failures": 0, "window_start": now, "locked_until": 0.0, "strikes": 0} for k in names])
        .on_conflict_do_nothing(index_elements=["key"]))
    dbs.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(names)).order_by(LoginThrottle.key)
                .with_for_update().execution_options(populate_existing=True)).all()


def locked_minutes(dbs: Session, keys: list[tuple[str, int]], now: float) -> int:
    """Minutes until the longest lock on any key ends (0: not locked)."""
    wait = 0.0
    for key, _limit in keys:
        row = dbs.get(LoginThrottle, key)
        if row is not None and row.locked_until > now:
            wait = max(wait, row.locked_until - now)
    return math.ceil(wait / 60) if wait > 0 else 0


def record_failure(dbs: Session, keys: list[tuple[str, int]], now: float, first_lock_s: float = LOCK_S) -> list[str]:
    """Count a failure on every key; reaching its limit within the window locks the key, each lock in a row
    twice as long as the one before (from first_lock_s up to LOCK_S). Returns the keys locked now."""
    take_keys(dbs, keys, now)
    locked = []
    for key, limit in keys:
        row = dbs.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, window_start=now, locked_until=0.0, strikes=0)
            dbs.add(row)
        if now - row.window_start > WINDOW_S:
            row.failures, row.window_start = 0, now
        if row.strikes and now - row.locked_until > STRIKES_FORGOTTEN_S:
            row.strikes = 0
        row.failures += 1
        if row.failures >= limit:
            row.locked_until = now + min(LOCK_S, first_lock_s * 2 ** min(row.strikes or 0, 16))
            row.strikes = (row.strikes or 0) + 1
            row.failures, row.window_start = 0, now
            locked.append(key)
    return locked


def failures_on(dbs: Session, keys: list[tuple[str, int]]) -> bool:
    """Whether any key has failures or locks counted (a successful sign-in then clears them)."""
    for key, _limit in keys:
        row = dbs.get(LoginThrottle, key)
        if row is not None and (row.failures or row.strikes):
            return True
    return False


def clear_keys(dbs: Session, keys: list[tuple[str, int]]) -> None:
    """Forget the failures and locks in a row of these keys (after a success on them)."""
    for key, _limit in keys:
        row = dbs.get(LoginThrottle, key)
        if row is not None:
            row.failures, row.strikes = 0, 0


def clear_failures(dbs: Session, email: str) -> None:
    """The owner proved control of the mailbox (password reset): lift every lock on the account's keys."""
    value = email.strip().lower()
    dbs.execute(update(LoginThrottle).where(
        (LoginThrottle.key == f"email:{value}"[:400]) | LoginThrottle.key.startswith(f"email-ip:{value}|", autoescape=True))
        .values(failures=0, strikes=0, locked_until=0.0).execution_options(synchronize_session=False))
