"""SMART on FHIR HTTP surface: discovery, token, introspection, revocation, registration, JWKS;
init_app wires the authorization server, the FHIR bearer-token resolver, CORS and revocation hooks.

Every answer of these endpoints is RFC 6749 section 5.2 JSON: Authlib's OAuth2Error (400/401), 429
temporarily_unavailable with Retry-After (limits.py: guessed credentials on /oauth/token, registrations),
503 temporarily_unavailable (database busy), 500 server_error; HTTP errors keep that shape too."""
from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from fhir_server import AccessContext, HeaderResolver, Unauthorized
from smart_auth.accounts.models import PatientAccess, User
from smart_auth.accounts.session import db, write_phase

from . import limits
from . import repository as repo
from .client_auth import private_key_jwt, unverified_issuer
from .discovery import STYLE, endpoints, openid_configuration, security_hook, smart_configuration
from .endpoints import Introspection, Registration, Revocation
from .keys import ClientKeys, ServerKey
from .limits import Limits
from .models import AppGrant, OAuthToken
from .server import Hooks, SmartServer, build_server
from .service import InvalidToken, active_patient_ids, resolve_bearer
from .token_cache import CHANGES, TokenCache
from .tokens import make_audit, make_save

log = logging.getLogger("carespace.oauth")
bp = Blueprint("smart", __name__)
TOKEN_PATHS = ["/oauth/token", "/oauth/introspect", "/oauth/revoke", "/oauth/register", "/oauth/authorize"]
CORS_PREFIXES = ("/fhir", "/.well-known", "/oauth/token", "/oauth/introspect", "/oauth/revoke", "/oauth/register",
                 "/oauth/jwks", "/oauth/smart-style.json")
REALM = 'Bearer realm="CareSpace FHIR"'


def server() -> SmartServer:
    return current_app.extensions["smart.server"]  # type: ignore[no-any-return]


def _json(doc: dict[str, Any]) -> Response:
    resp = jsonify(doc)
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.errorhandler(Exception)
def _oauth_error(err: Exception) -> Response:
    """The OAuth endpoints answer RFC 6749 JSON whatever happens: 503 temporarily_unavailable with Retry-After
    when the database is busy or unreachable, server_error otherwise (never an HTML page)."""
    if isinstance(err, HTTPException):
        resp = jsonify(error="invalid_request", error_description=err.description or err.name)
        resp.status_code = err.code or 400
        return resp
    unavailable = current_app.extensions.get("carespace.db_unavailable")
    if unavailable is not None and unavailable(err):
        log.warning("database busy or unavailable on %s: %s", request.path, str(err).splitlines()[0])
        resp = jsonify(error="temporarily_unavailable",
                       error_description="The authorization server is busy; nothing was issued or changed. "
                                         "Try again in a moment.")
        resp.status_code = 503
        resp.headers["Retry-After"] = str(current_app.config.get("RETRY_AFTER_S", 2))
    else:
        log.exception("Unhandled error on %s", request.path)
        resp = jsonify(error="server_error", error_description="An internal error occurred; nothing was issued.")
        resp.status_code = 500
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


for _code in (400, 403, 404, 405, 413, 415, 500):  # before the app's own pages for these statuses
    bp.register_error_handler(_code, _oauth_error)


@bp.get("/fhir/.well-known/smart-configuration")
def smart_config() -> Response:
    return _json(smart_configuration(current_app.config))


@bp.get("/.well-known/openid-configuration")
def openid_config() -> Response:
    return _json(openid_configuration(current_app.config))


@bp.get("/oauth/jwks")
def jwks() -> Response:
    return _json(current_app.extensions["smart.key"].jwks())


@bp.get("/oauth/smart-style.json")
def smart_style() -> Response:
    return _json(STYLE)


def _limits() -> Limits:
    return current_app.extensions["smart.limits"]  # type: ignore[no-any-return]


def _too_many(wait: int, what: str) -> Response:
    """RFC 6585 section 4: 429 with Retry-After, in RFC 6749 section 5.2 JSON."""
    resp = jsonify(error="temporarily_unavailable",
                   error_description=f"Too many {what} from here; try again in {max(1, wait // 60)} minute(s)")
    resp.status_code = 429
    resp.headers["Retry-After"] = str(wait)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


def _count(keys: list[tuple[str, int]]) -> None:
    """Count an attempt on the rate-limit keys in a short write unit of its own."""
    limits.count(write_phase(), keys, time.time())
    db().commit()


def _named_client() -> str | None:
    """The registered client a token request names (HTTP Basic, client_id or the assertion's issuer), if any."""
    auth = request.authorization
    named = auth.username if auth is not None and auth.type == "basic" else request.form.get("client_id")
    if not named and request.form.get("client_assertion"):
        named = unverified_issuer(request.form["client_assertion"])
    return named if named and repo.client(db(), named) is not None else None


@bp.post("/oauth/token")
def token() -> Response:
    keys = _limits().token_keys(request.remote_addr, _named_client())
    wait = limits.wait_seconds(db(), keys, time.time())
    if wait:
        current_app.extensions["smart.hooks"].refused(request.form.get("client_id"), "token request rate-limited")
        return _too_many(wait, "failed token requests")
    resp: Response = server().create_token_response()
    if resp.status_code >= 400:
        db().rollback()
        body = resp.get_json(silent=True) or {}
        if limits.counted(body.get("error"), bool(g.get("oauth_guess"))):
            _count(keys)
        current_app.extensions["smart.hooks"].refused(
            request.form.get("client_id"), f"{body.get('error')}: {body.get('error_description', '')}")
    return resp


def _audited(resp: Response, what: str) -> Response:
    """Refused introspection and revocation requests are audited like refused token requests."""
    if resp.status_code >= 400:
        db().rollback()
        body = resp.get_json(silent=True) or {}
        current_app.extensions["smart.hooks"].refused(
            request.form.get("client_id"), f"{what}: {body.get('error')}: {body.get('error_description', '')}")
    return resp


@bp.post("/oauth/introspect")
def introspect() -> Response:
    return _audited(server().create_endpoint_response(Introspection.ENDPOINT_NAME), "introspection")


@bp.post("/oauth/revoke")
def revoke() -> Response:
    return _audited(server().create_endpoint_response(Revocation.ENDPOINT_NAME), "revocation")


@bp.post("/oauth/register")
def register() -> Response:
    if not current_app.config.get("DYNAMIC_CLIENT_REGISTRATION", True):
        resp = jsonify(error="access_denied", error_description="Dynamic client registration is switched off; "
                                                                "ask the practice to register the app")
        resp.status_code = 403
        return resp
    keys = _limits().register_keys(request.remote_addr)
    wait = limits.wait_seconds(db(), keys, time.time())
    if wait:
        return _too_many(wait, "app registrations")
    _count(keys)
    return server().create_endpoint_response(Registration.ENDPOINT_NAME)  # type: ignore[no-any-return]


def bearer_resolver(app: Flask) -> HeaderResolver:
    """The FHIR API's access resolver: the Bearer token of the request, or 401 (a bad token is audited)."""
    cache = TokenCache(float(app.config["TOKEN_CACHE_SECONDS"]))
    CHANGES.watch(OAuthToken, AppGrant, PatientAccess, User)
    app.extensions["smart.token_cache"] = cache

    def from_header(auth: str) -> AccessContext:
        if not auth:
            raise Unauthorized("This FHIR server needs a SMART access token (Authorization: Bearer ...)",
                               headers={"WWW-Authenticate": REALM})
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Send the access token as Authorization: Bearer <token>",
                               headers={"WWW-Authenticate": f'{REALM}, error="invalid_request"'})
        try:
            return resolve_bearer(app.extensions["carespace.engine"], app.extensions["carespace.sessions"],
                                  value.strip(), app.config["FHIR_BASE_URL"], active_patient_ids, cache)
        except InvalidToken as exc:
            raise Unauthorized(str(exc), headers={
                "WWW-Authenticate": f'{REALM}, error="invalid_token", error_description="{exc}"'}) from exc

    def refused(exc: Exception) -> None:
        if isinstance(exc.__cause__, InvalidToken):
            app.extensions["smart.hooks"].refused(None, f"FHIR API {request.method} {request.path}: {exc.__cause__}")

    return HeaderResolver(from_header, refused)


def _revocation_hooks(app: Flask) -> None:
    """Revoking a proxy or resetting a password kills that person's app tokens at once."""
    sessions = app.extensions["carespace.write_sessions"]

    def on_access_revoked(user_id: int, patient_id: str) -> None:
        try:
            with sessions() as dbs:
                repo.revoke_tokens(dbs, user_id=user_id, patient_id=patient_id)
                for grant in dbs.query(AppGrant).filter_by(user_id=user_id, patient_id=patient_id, revoked_at=None):
                    grant.revoked_at = repo.now()
                dbs.commit()
        except Exception:  # noqa: BLE001 - tokens also fail their per-use access check
            log.exception("could not revoke app tokens of user %s for patient %s", user_id, patient_id)

    def on_password_reset(user_id: int) -> None:
        try:
            with sessions() as dbs:
                repo.revoke_tokens(dbs, user_id=user_id)
                dbs.commit()
        except Exception:  # noqa: BLE001 - tokens also fail their per-use user check
            log.exception("could not revoke app tokens of user %s", user_id)

    app.extensions.setdefault("on_access_revoked", []).append(on_access_revoked)
    app.extensions.setdefault("on_password_reset", []).append(on_password_reset)


def _cors(resp: Response) -> Response:
    origin = request.headers.get("Origin")
    if origin and request.path.startswith(CORS_PREFIXES):
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.vary.add("Origin")
        resp.headers["Access-Control-Expose-Headers"] = ("Location, Content-Location, ETag, Last-Modified, "
                                                         "WWW-Authenticate")
        if request.method == "OPTIONS":
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
            resp.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Authorization, Content-Type, Accept, Prefer")
            resp.headers["Access-Control-Max-Age"] = "600"
    return resp


def init_app(app: Flask) -> None:
    from .apps import bp as apps_bp
    from .authorize import bp as authorize_bp

    key = ServerKey(app.config["INSTANCE_DIR"])
    app.extensions["smart.key"] = key
    cfg = app.config
    app.extensions["smart.limits"] = Limits(cfg.get("OAUTH_TOKEN_FAILURES_PER_IP", 30),
                                            cfg.get("OAUTH_TOKEN_FAILURES_PER_CLIENT", 100),
                                            cfg.get("OAUTH_REGISTER_LIMIT_PER_IP", 20))
    audit = make_audit(app)
    app.extensions["smart.hooks"] = Hooks(make_save(app, key), audit)

    def use_jti(client_id: str, jti: str, exp: int) -> bool:
        ok = repo.use_jti(write_phase(), client_id, jti, exp)
        db().commit()
        return ok

    client_keys = ClientKeys(float(cfg.get("JWKS_TIMEOUT_S", 2.0)), float(cfg.get("JWKS_FAILURE_CACHE_S", 60.0)))
    app.extensions["smart.client_keys"] = client_keys
    auth = private_key_jwt(lambda: endpoints(app.config)["token"], client_keys, use_jti, repo.now)
    srv = build_server(app, auth)
    srv.register_endpoint(Introspection)
    srv.register_endpoint(Revocation)
    srv.register_endpoint(Registration(srv))
    app.extensions["smart.server"] = srv
    if not app.config.get("FHIR_ACCESS_RESOLVER"):
        app.extensions["fhir_access_resolver"] = bearer_resolver(app)
    app.extensions.setdefault("capability_security_hooks", []).append(security_hook(app.config))
    app.extensions.setdefault("csrf_exempt_prefixes", []).extend(TOKEN_PATHS)
    _revocation_hooks(app)
    app.after_request(_cors)
    app.register_blueprint(bp)
    app.register_blueprint(authorize_bp)
    app.register_blueprint(apps_bp)

