"""OAuth domain logic without Flask: client registration, bearer-token resolution for the FHIR API,
consent memory, EHR launch handles (patient, encounter) and revocation.  Raises domain errors; views map them."""
from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fhir_server import AccessContext, parse_scope
from smart_auth.accounts.models import PatientAccess, User
from smart_auth.accounts.session import has_active_access

from . import repository as repo
from .models import AppGrant, EncounterContext, LaunchContext, OAuthClient
from .scopes import split
from .token_cache import CHANGES, TokenCache

log = logging.getLogger("carespace.oauth")
PatientIds = Callable[[Session, User], list[str]]
LAUNCH_TTL_S = 3600
MAX_CLIENT_NAME = 200  # oauth_client.name
MAX_REDIRECT_URIS = 10
MAX_URI = 1000  # oauth_code.redirect_uri, oauth_client.launch_uri
MAX_TEXT = 2000
_STRINGS = ("client_name", "client_uri", "logo_uri", "tos_uri", "policy_uri", "jwks_uri", "software_id",
            "software_version", "token_endpoint_auth_method", "scope", "initiate_login_uri", "software_statement")
_LISTS = ("redirect_uris", "grant_types", "response_types", "contacts")


class OAuthDomainError(Exception):
    """Bad input to a domain operation (shown to the person or printed by the CLI)."""


class InvalidToken(Exception):
    """A bearer token that must not be honoured (unknown, expired, revoked, wrong audience, access ended)."""


def same_resource(a: str | None, b: str) -> bool:
    """`aud` comparison: the FHIR base, trailing slash and scheme/host case normalised."""
    if not a:
        return False
    x, y = urlsplit(a.strip()), urlsplit(b)
    return (x.scheme.lower(), x.netloc.lower(), x.path.rstrip("/")) == (y.scheme.lower(), y.netloc.lower(),
                                                                         y.path.rstrip("/"))


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str | None
    row: OAuthClient


def register_client(dbs: Session, *, name: str, redirect_uris: list[str], scope: str = "", kind: str = "public",
                    jwks: str | None = None, jwks_uri: str | None = None, grant_types: list[str] | None = None,
                    launch_uri: str | None = None, dynamic: bool = False) -> NewClient:
    """Register an app: kind is public | secret | jwks (private_key_jwt with inline keys or jwks_uri)."""
    if not name.strip():
        raise OAuthDomainError("the app needs a name")
    grants = grant_types or ["authorization_code", "refresh_token"]
    if "client_credentials" in grants and kind == "public":
        raise OAuthDomainError("a backend service (client_credentials) needs --jwks-uri, --jwks-file or --secret")
    if "authorization_code" in grants and not redirect_uris:
        raise OAuthDomainError("an app that signs people in needs at least one --redirect-uri")
    for uri in [*redirect_uris, *([launch_uri] if launch_uri else []), *([jwks_uri] if jwks_uri else [])]:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise OAuthDomainError(f"{uri!r} is not an absolute http(s) URL without a fragment")
    if jwks:
        try:
            keys = json.loads(jwks)
        except ValueError:
            raise OAuthDomainError("the JWKS is not valid JSON") from None
        if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list) or not keys["keys"]:
            raise OAuthDomainError('the JWKS must be an object {"keys": [...]} with at least one key')
    for s in split(scope):
        if parse_scope(s) is None and s not in ("openid", "fhirUser", "profile", "launch", "launch/patient",
                                                 "launch/encounter", "offline_access", "online_access"):
            raise OAuthDomainError(f"{s!r} is not a SMART scope")
    method = {"public": "none", "secret": "client_secret_basic", "jwks": "private_key_jwt"}[kind]
    secret = secrets.token_urlsafe(32) if kind == "secret" else None
    client_id = secrets.token_urlsafe(18)
    row = OAuthClient(client_id=client_id, name=name.strip(), secret_hash=repo.digest(secret) if secret else None,
                      auth_method=method, redirect_uris="\n".join(redirect_uris), scope=" ".join(split(scope)),
                      grant_types=" ".join(grants), jwks=jwks, jwks_uri=jwks_uri, launch_uri=launch_uri,
                      dynamic=dynamic, created_at=repo.now())
    dbs.add(row)
    dbs.flush()
    return NewClient(client_id, secret, row)


def error_text(text: str) -> str:
    """RFC 6749 5.2: an error_description holds only %x20-21 / %x23-5B / %x5D-7E; anything else becomes '?'."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)[:300]


def check_client_metadata(body: object) -> dict[str, Any]:
    """RFC 7591 section 2: the registration body is an object whose known members have their JSON types, within
    the sizes the tables hold (a name of 200 characters, 10 redirect URIs of 1000); OAuthDomainError otherwise."""
    if not isinstance(body, dict):
        raise OAuthDomainError("The registration must be a JSON object of client metadata (RFC 7591)")
    meta = {k: v for k, v in body.items() if v is not None}
    for name in _STRINGS:
        if name in meta and not isinstance(meta[name], str):
            raise OAuthDomainError(f"{name} must be a string")
        if len(meta.get(name) or "") > (MAX_URI if name.endswith("uri") else MAX_TEXT):
            raise OAuthDomainError(f"{name} is too long")
    for name in _LISTS:
        value = meta.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= MAX_URI for v in value):
            raise OAuthDomainError(f"{name} must be an array of strings of at most {MAX_URI} characters")
        if len(value) > MAX_REDIRECT_URIS:
            raise OAuthDomainError(f"{name} may hold at most {MAX_REDIRECT_URIS} entries")
    if len(meta.get("client_name") or "") > MAX_CLIENT_NAME:
        raise OAuthDomainError(f"client_name may be at most {MAX_CLIENT_NAME} characters")
    jwks = meta.get("jwks")
    if jwks is not None and not (isinstance(jwks, dict) and isinstance(jwks.get("keys"), list)
                                 and all(isinstance(k, dict) for k in jwks["keys"])):
        raise OAuthDomainError("jwks must be an object with a keys array of JWK objects")
    if any("\x00" in v for v in _strings_in(meta)):
        raise OAuthDomainError("Client metadata must not contain NUL characters")
    return meta


def _strings_in(meta: dict[str, Any]) -> list[str]:
    return [v for k in (*_STRINGS, *_LISTS) for v in (meta.get(k) if k in _LISTS else [meta.get(k)]) or []
            if isinstance(v, str)]


def is_resource_server(client: OAuthClient) -> bool:
    """RFC 7662 section 4, who may introspect any token: a confidential backend service (client_credentials,
    authenticated by private_key_jwt or a secret). Only the practice registers those (register-client, the
    console); dynamic registration makes public apps only, which introspect nothing but their own tokens."""
    return "client_credentials" in client.grant_types.split() and client.auth_method != "none"


def resolve_token(dbs: Session, token: str, fhir_base: str, patient_ids: PatientIds) -> AccessContext:
    """The AccessContext of a bearer token, or InvalidToken; also records the app's last use."""
    row = dbs.execute(repo.ACCESS_ROW, {"h": repo.digest(token)}).first()
    return _context(row, fhir_base, dbs, patient_ids)


def resolve_bearer(engine: Engine, sessions: Callable[[], Session], token: str, fhir_base: str,
                   patient_ids: PatientIds, cache: TokenCache | None = None) -> AccessContext:
    """resolve_token for the FHIR API: from the cache, else the token row in one SELECT (a session only for a
    person's token, to check the person and their access)."""
    key = repo.digest(token)
    ctx = cache.get(key) if cache is not None else None
    if ctx is not None:
        return ctx
    generation = CHANGES.generation
    row = repo.access_row(engine, key)
    if row is None or row.user_id is None:
        ctx = _context(row, fhir_base, None, patient_ids)
    else:
        with sessions() as dbs:
            ctx = _context(row, fhir_base, dbs, patient_ids)
    if cache is not None and row is not None:
        cache.put(key, ctx, generation, row.expires_at)
    return ctx


def _context(row: Any, fhir_base: str, dbs: Session | None, patient_ids: PatientIds) -> AccessContext:
    """Check a token row (live, this server, person still allowed, app not revoked) and build its context;
    `dbs` is needed only for a person's token."""
    t = repo.now()
    if row is None or row.revoked or row.expires_at <= t:
        raise InvalidToken("The access token is unknown, expired or revoked")
    if row.aud and not same_resource(row.aud, fhir_base):
        raise InvalidToken("The access token was issued for another server")
    user_ids = None
    if row.user_id is not None:
        assert dbs is not None, "a person's token is checked in a session"
        user = dbs.get(User, row.user_id)
        if user is None or user.status != "active":
            raise InvalidToken("The person who authorized this app can no longer sign in")
        if row.patient_id and user.role != "staff" and not has_active_access(dbs, user.id, row.patient_id):
            raise InvalidToken("Access to this patient's record has ended")
        if user.role != "staff":
            user_ids = patient_ids(dbs, user)
        if row.app_grant_id:
            grant = dbs.get(AppGrant, row.app_grant_id)
            if grant is None or grant.revoked_at is not None:
                raise InvalidToken("The app's access was revoked")
            if grant.last_used_at is None or grant.last_used_at < t - 60:
                _touch(dbs, grant.id, t)
    return AccessContext.from_scopes(split(row.scope), patient_id=row.patient_id, user=row.fhir_user,
                                     client_id=row.client_id, user_patient_ids=user_ids)


def _touch(dbs: Session, grant_id: int, t: int) -> None:
    """Record the app's last use (at most once a minute) in its own short write, never in the caller's read
    (a read that then writes can fail on SQLite), and without failing the request it serves."""
    try:
        engine = dbs.get_bind()
        assert isinstance(engine, Engine)
        with engine.execution_options(write=True).begin() as conn:
            conn.execute(update(AppGrant).where(
                AppGrant.id == grant_id, or_(AppGrant.last_used_at.is_(None), AppGrant.last_used_at < t - 60))
                .values(last_used_at=t))
    except SQLAlchemyError as exc:
        log.warning("could not record the last use of app grant %s: %s", grant_id, str(exc).splitlines()[0])


def active_patient_ids(dbs: Session, user: User) -> list[str]:
    """Patients a (non-staff) user may act for right now: what their user/ scopes can reach."""
    from sqlalchemy import select
    return list(dbs.execute(select(PatientAccess.patient_id).where(
        PatientAccess.user_id == user.id, PatientAccess.status == "active")).scalars())


def remember_consent(dbs: Session, user_id: int, client_id: str, patient_id: str | None, requested: list[str],
                     granted: list[str]) -> AppGrant:
    """Store (or update) the user's decision for this app, shown on "Connected apps"."""
    grant = repo.app_grant(dbs, user_id, client_id, patient_id)
    if grant is None:
        grant = AppGrant(user_id=user_id, client_id=client_id, patient_id=patient_id, created_at=repo.now(),
                         requested_scope="", granted_scope="")
        dbs.add(grant)
    grant.requested_scope = " ".join(requested)
    grant.granted_scope = " ".join(granted)
    dbs.flush()
    return grant


def revoke_app(dbs: Session, user_id: int, grant_id: int) -> AppGrant | None:
    """"Revoke" on Connected apps: the decision is forgotten and every token of the app dies at once."""
    grant = dbs.get(AppGrant, grant_id)
    if grant is None or grant.user_id != user_id or grant.revoked_at is not None:
        return None
    grant.revoked_at = repo.now()
    for other in repo.remembered(dbs, user_id, grant.client_id):
        if other.patient_id == grant.patient_id:
            other.revoked_at = grant.revoked_at
    repo.revoke_tokens(dbs, user_id=user_id, client_id=grant.client_id, patient_id=grant.patient_id)
    repo.revoke_tokens(dbs, app_grant_id=grant.id)
    return grant


def latest_encounter(fhir: Any, patient_id: str) -> str | None:
    """The patient's most recent Encounter (by period), bound to an EHR launch; None when there is none."""
    ctx = AccessContext.system("ehr-launch")
    _, page = fhir.search(ctx, "Encounter", [("patient", f"Patient/{patient_id}"), ("_sort", "-date"),
                                             ("_count", "1")])
    return page.matches[0][1] if page.matches else None


def create_launch(dbs: Session, user_id: int, client_id: str, patient_id: str,
                  encounter_id: str | None = None) -> str:
    """An opaque `launch` handle binding this user, patient and (when there is one) encounter."""
    handle = secrets.token_urlsafe(24)
    ctx = LaunchContext(handle_hash=repo.digest(handle), user_id=user_id, client_id=client_id,
                        patient_id=patient_id, expires_at=repo.now() + LAUNCH_TTL_S)
    dbs.add(ctx)
    dbs.flush()
    if encounter_id:
        dbs.add(EncounterContext(launch_id=ctx.id, encounter_id=encounter_id))
        dbs.flush()
    return handle


def launch_context(dbs: Session, handle: str, client_id: str, user_id: int,
                   staff: bool = False) -> tuple[str, str | None]:
    """The patient and encounter a launch handle binds, for this app and user; OAuthDomainError otherwise."""
    ctx = repo.launch(dbs, handle)
    if ctx is None or ctx.expires_at < repo.now() or ctx.client_id != client_id or ctx.user_id != user_id:
        raise OAuthDomainError("The launch is unknown or has expired; start the app again from Connected apps")
    if not staff and not has_active_access(dbs, user_id, ctx.patient_id):
        raise OAuthDomainError("You no longer have access to this patient's record")
    return ctx.patient_id, repo.encounter_of(dbs, launch_id=ctx.id)

