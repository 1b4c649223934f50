"""Queries over the OAuth tables; secrets are looked up by their SHA-256 digest."""
from __future__ import annotations

import hashlib
import time
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Engine, bindparam, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_server import HotSelect

from .models import AppGrant, AuthCode, EncounterContext, LaunchContext, OAuthClient, OAuthToken, UsedAssertion


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def now() -> int:
    return int(time.time())


def client(dbs: Session, client_id: str | None) -> OAuthClient | None:
    """The registered client, None for an unknown id (or one no client_id can be: too long, holding NUL)."""
    if not client_id or not isinstance(client_id, str) or len(client_id) > 64 or "\x00" in client_id:
        return None
    return dbs.execute(select(OAuthClient).where(OAuthClient.client_id == client_id)).scalar_one_or_none()


def launchable_clients(dbs: Session) -> list[OAuthClient]:
    return list(dbs.execute(select(OAuthClient).where(OAuthClient.launch_uri.is_not(None))
                            .order_by(OAuthClient.name)).scalars())


def code(dbs: Session, value: str) -> AuthCode | None:
    return dbs.execute(select(AuthCode).where(AuthCode.code_hash == digest(value))).scalar_one_or_none()


def claim_code(dbs: Session, code_id: int) -> bool:
    """Mark a code used in one conditional UPDATE; False when another request (any process) took it first.

    RFC 6749 section 4.1.2: a code is used at most once. Reading `used` and setting it later would let two
    concurrent redemptions both read it unused; the row lock of this UPDATE lets exactly one through."""
    done = cast(CursorResult[Any], dbs.execute(update(AuthCode).where(AuthCode.id == code_id, AuthCode.used.is_(False))
                                               .values(used=True).execution_options(synchronize_session=False)))
    return bool(done.rowcount == 1)


def claim_refresh(dbs: Session, token_id: int) -> bool:
    """Revoke a refresh token being rotated in one conditional UPDATE; False when another request took it first.

    RFC 9700 section 4.14.2: a rotated refresh token is good once; as with codes, the row lock lets exactly one
    of several concurrent rotations through, and the others count as a replay."""
    done = cast(CursorResult[Any], dbs.execute(
        update(OAuthToken).where(OAuthToken.id == token_id, OAuthToken.revoked.is_(False))
        .values(revoked=True).execution_options(synchronize_session=False)))
    return bool(done.rowcount == 1)


def token_by_access(dbs: Session, value: str) -> OAuthToken | None:
    return dbs.execute(select(OAuthToken).where(OAuthToken.access_hash == digest(value))).scalar_one_or_none()


# Built once: the FHIR API resolves a bearer token on every request.
ACCESS_ROW = select(OAuthToken.revoked, OAuthToken.expires_at, OAuthToken.aud, OAuthToken.user_id,
                    OAuthToken.patient_id, OAuthToken.app_grant_id, OAuthToken.scope, OAuthToken.fhir_user,
                    OAuthToken.client_id).where(OAuthToken.access_hash == bindparam("h"))
_HOT_ACCESS_ROW = HotSelect(ACCESS_ROW)


class AccessRow(NamedTuple):
    """The columns of a token that a bearer check needs."""

    revoked: bool
    expires_at: int
    aud: str
    user_id: int | None
    patient_id: str | None
    app_grant_id: int | None
    scope: str
    fhir_user: str | None
    client_id: str


def access_row(engine: Engine, token_digest: str) -> AccessRow | None:
    """One SELECT on a pooled connection, outside any ORM session (None when the token is unknown)."""
    row = _HOT_ACCESS_ROW.first(engine, {"h": token_digest})
    return None if row is None else AccessRow(*row)


def token_by_refresh(dbs: Session, value: str) -> OAuthToken | None:
    return dbs.execute(select(OAuthToken).where(OAuthToken.refresh_hash == digest(value))).scalar_one_or_none()


def revoke_tokens(dbs: Session, *, user_id: int | None = None, client_id: str | None = None,
                  patient_id: str | None = None, code_id: int | None = None, app_grant_id: int | None = None) -> int:
    """Revoke every live token matching all the given criteria; returns how many."""
    q = update(OAuthToken).where(OAuthToken.revoked.is_(False))
    if user_id is not None:
        q = q.where(OAuthToken.user_id == user_id)
    if client_id is not None:
        q = q.where(OAuthToken.client_id == client_id)
    if patient_id is not None:
        q = q.where(OAuthToken.patient_id == patient_id)
    if code_id is not None:
        q = q.where(OAuthToken.code_id == code_id)
    if app_grant_id is not None:
        q = q.where(OAuthToken.app_grant_id == app_grant_id)
    return int(dbs.execute(q.values(revoked=True)).rowcount or 0)  # type: ignore[attr-defined]


def app_grant(dbs: Session, user_id: int, client_id: str, patient_id: str | None) -> AppGrant | None:
    return dbs.execute(select(AppGrant).where(
        AppGrant.user_id == user_id, AppGrant.client_id == client_id, AppGrant.revoked_at.is_(None),
        AppGrant.patient_id == patient_id if patient_id else AppGrant.patient_id.is_(None))
        .order_by(AppGrant.id.desc())).scalars().first()


def app_grants_for_user(dbs: Session, user_id: int) -> list[AppGrant]:
    return list(dbs.execute(select(AppGrant).where(AppGrant.user_id == user_id, AppGrant.revoked_at.is_(None))
                            .order_by(AppGrant.created_at.desc())).scalars())


def remembered(dbs: Session, user_id: int, client_id: str) -> list[AppGrant]:
    return list(dbs.execute(select(AppGrant).where(AppGrant.user_id == user_id, AppGrant.client_id == client_id,
                                                   AppGrant.revoked_at.is_(None))).scalars())


def launch(dbs: Session, handle: str) -> LaunchContext | None:
    return dbs.execute(select(LaunchContext).where(LaunchContext.handle_hash == digest(handle))).scalar_one_or_none()


def encounter_of(dbs: Session, *, launch_id: int | None = None, code_id: int | None = None) -> str | None:
    """The Encounter id bound to a launch or to an authorization code (and so to its tokens)."""
    if launch_id is None and code_id is None:
        return None
    where = EncounterContext.launch_id == launch_id if launch_id is not None else EncounterContext.code_id == code_id
    return dbs.execute(select(EncounterContext.encounter_id).where(where)).scalar_one_or_none()


def use_jti(dbs: Session, client_id: str, jti: str, expires_at: int) -> bool:
    """Record an assertion's jti; False when it was already used (replay)."""
    dbs.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < now() - 600))
    try:
        with dbs.begin_nested():
            dbs.add(UsedAssertion(client_id=client_id, jti=jti, expires_at=expires_at))
    except IntegrityError:
        return False
    return True


def live_tokens_for(dbs: Session, user_id: int, client_id: str) -> list[OAuthToken]:
    t = now()
    return list(dbs.execute(select(OAuthToken).where(
        OAuthToken.user_id == user_id, OAuthToken.client_id == client_id, OAuthToken.revoked.is_(False),
        or_(OAuthToken.expires_at > t, OAuthToken.refresh_expires_at > t))).scalars())
