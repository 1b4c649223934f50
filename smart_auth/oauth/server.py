"""Authlib wiring: the authorization server, its grants (code + PKCE S256, refresh, client
credentials), client and token adapters, and the SMART additions to the token response."""
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
    grants,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask, current_app, g
from flask import request as flask_request

from smart_auth.accounts.models import User
from smart_auth.accounts.session import db, write_phase

from . import repository as repo
from .adapters import Client, Code, FlaskRequest, StoredRequest, Token
from .client_auth import client_secret_basic
from .models import AuthCode, EncounterContext
from .scopes import allowed, covers, split
from .service import same_resource

ACCESS_TTL_S = 3600
BACKEND_TTL_S = 300
CODE_TTL_S = 60
OFFLINE_TTL_S = 120 * 24 * 3600  # refresh tokens outlive the three months SMART asks for
ONLINE_TTL_S = 8 * 3600
AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "client_secret_post", "none"]


class S256Only(CodeChallenge):
    """PKCE with S256 only: required for public apps, enforced whenever a challenge was sent."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if data.get("code_challenge") and not data.get("code_challenge_method"):
            raise InvalidRequestError("code_challenge_method=S256 is required with a code_challenge")
        if not data.get("code_challenge") and grant.request.client.row.auth_method == "none":
            raise InvalidRequestError("Public apps must use PKCE (code_challenge with S256)")
        super().validate_code_challenge(grant, redirect_uri)


def guessed() -> None:
    """Mark this token request as naming a code or refresh token that does not exist (a guess, for the rate
    limit), as opposed to a real one that is used up, expired or revoked."""
    g.oauth_guess = True


def smart_checks(grant: Any) -> None:
    """Grant extension: `aud` must name this FHIR server (the token is only good here)."""

    def check(g: Any, redirect_uri: str) -> None:
        data = g.request.payload.data
        aud = data.get("aud") or data.get("resource")
        if not same_resource(aud, current_app.config["FHIR_BASE_URL"]):
            raise InvalidRequestError(f"aud must be this FHIR server ({current_app.config['FHIR_BASE_URL']})")

    grant.register_hook("after_validate_authorization_request_payload", check)


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: Client) -> str:
        """Authlib's check without echoing the URI into the description (a quote or non-ASCII made it raise)."""
        uri = request.payload.redirect_uri
        if uri:
            if not client.check_redirect_uri(uri):
                raise InvalidRequestError("The redirect_uri is not one registered for this app")
            return str(uri)
        default = client.get_default_redirect_uri()
        if not default:
            raise InvalidRequestError("Missing 'redirect_uri' in request.", state=request.payload.state)
        return default

    def save_authorization_code(self, code: str, request: Any) -> None:
        d = request.decision
        data = request.payload.data
        row = AuthCode(code_hash=repo.digest(code), client_id=request.client.row.client_id,
                       user_id=request.user.id, redirect_uri=request.payload.redirect_uri or
                       request.client.get_default_redirect_uri(), scope=d["scope"], patient_id=d["patient_id"],
                       fhir_user=d["fhir_user"], code_challenge=data.get("code_challenge"),
                       code_challenge_method=data.get("code_challenge_method"), nonce=data.get("nonce"),
                       ehr_launch=d["ehr_launch"], app_grant_id=d["app_grant_id"],
                       expires_at=repo.now() + CODE_TTL_S)
        db().add(row)
        if d.get("encounter_id"):
            db().flush()
            db().add(EncounterContext(code_id=row.id, encounter_id=d["encounter_id"]))
        db().commit()

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        row = repo.code(write_phase(), code)  # used at most once: looked up by the writer that marks it used
        if row is None or row.client_id != client.row.client_id:
            guessed()
            return None
        if not row.used and row.expires_at < repo.now():
            return None
        if row.used or not repo.claim_code(db(), row.id):  # RFC 6749 4.1.2: a replayed code revokes what it issued
            repo.revoke_tokens(db(), code_id=row.id)
            db().commit()
            hooks(current_app).refused(client.row.client_id, "authorization code reused; its tokens were revoked")
            return None
        return Code(row)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        authorization_code.row.used = True
        db().commit()

    def authenticate_user(self, authorization_code: Code) -> User | None:
        return db().get(User, authorization_code.row.user_id)


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def _validate_request_client(self) -> Client:
        data = self.request.payload.data
        if not (self.request.headers.get("Authorization") or data.get("client_id")
                or data.get("client_assertion")):
            token = self.authenticate_refresh_token(data.get("refresh_token") or "")
            owner = token.get_client() if token else None
            if owner is None or owner.row.auth_method != "none":  # only public apps may omit client_id
                raise InvalidClientError(description="Client authentication is required")
            self.request.auth_method = "none"
            return owner
        authenticated: Client = super()._validate_request_client()
        return authenticated

    def _validate_token_scope(self, token: Token) -> None:
        wanted = split(self.request.payload.scope)
        have = split(token.get_scope())
        if any(not any(covers(h, w) for h in have) for w in wanted):
            raise InvalidScopeError(description="A refresh cannot widen the granted scopes")

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        """RFC 9700 4.14.2: a refresh token used again after its rotation (or revocation) is taken for stolen:
        every token descended from the same authorization code is revoked with it."""
        row = repo.token_by_refresh(write_phase(), refresh_token) if refresh_token else None  # rotated once
        if row is None:
            guessed()
            return None
        token = Token(row, "refresh_token")
        if g.get("refresh_claimed") == row.id:
            return token  # asked again within this request (public clients are identified by their token first)
        if not row.revoked and (token.is_revoked() or token.is_expired()):
            return None
        if row.revoked or not repo.claim_refresh(db(), row.id):  # rotated before, or by a concurrent request
            family = repo.revoke_tokens(db(), code_id=row.code_id) if row.code_id is not None else 0
            db().commit()
            if family:
                hooks(current_app).refused(row.client_id, f"refresh token reused after rotation; {family} "
                                                          "token(s) of its grant were revoked")
            return None
        g.refresh_claimed = row.id
        return token

    def authenticate_user(self, refresh_token: Token) -> User | None:
        return refresh_token.get_user()

    def revoke_old_credential(self, refresh_token: Token) -> None:
        refresh_token.row.revoked = True
        db().commit()


class BackendGrant(grants.ClientCredentialsGrant):
    """SMART Backend Services: private_key_jwt (or a secret via HTTP Basic) and system/ scopes only."""

    def validate_token_request(self) -> None:
        basic = (self.request.headers.get("Authorization") or "").strip().partition(" ")[0].lower() == "basic"
        self.TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"] if basic else ["private_key_jwt"]
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("This client is not registered for client_credentials")
        self.request.client = client
        kept = allowed(split(self.request.payload.scope), split(client.row.scope), user_flow=False)
        if not kept:
            raise InvalidScopeError(description="Backend services need system/ scopes within their registration")
        self.request.scope = " ".join(kept)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


def generate_bearer(grant_type: str, client: Client, user: Any = None, scope: str | None = None,
                    expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
    """Opaque bearer tokens; a refresh token only with offline_access or online_access."""
    token: dict[str, Any] = {"access_token": secrets.token_urlsafe(32), "token_type": "Bearer",
                             "expires_in": BACKEND_TTL_S if grant_type == "client_credentials" else ACCESS_TTL_S,
                             "scope": scope or ""}
    wanted = split(scope)
    if include_refresh_token and grant_type != "client_credentials" and (
            "offline_access" in wanted or "online_access" in wanted):
        token["refresh_token"] = secrets.token_urlsafe(32)
    return token


class Hooks:
    """Late-bound callbacks the views provide (token extras, auditing)."""

    def __init__(self, save: Callable[[dict[str, Any], Any], None],
                 audit: Callable[[str, str | None, str | None, str, bool], None]) -> None:
        self.save = save
        self.audit = audit

    def refused(self, client_id: str | None, why: str) -> None:
        self.audit("token-refused", client_id, None, why, False)


def hooks(app: Flask) -> Hooks:
    return app.extensions["smart.hooks"]  # type: ignore[no-any-return]


class OnlyCode(UnsupportedResponseTypeError):
    """unsupported_response_type that never quotes the value sent (it may hold any character)."""

    def __init__(self, redirect_uri: str | None) -> None:  # noqa: D107
        super().__init__("code", redirect_uri=redirect_uri)

    def get_error_description(self) -> str:
        return "Only response_type=code is supported"


class SmartServer(AuthorizationServer):
    """Authlib's Flask server, with requests replayable from stored parameters."""

    def get_authorization_grant(self, request: OAuth2Request) -> Any:
        """RFC 6749 4.1.2.1: an unknown response_type is unsupported_response_type (Authlib's own error quotes
        the value into its description and raises ValueError on a quote or non-ASCII: a 500)."""
        if request.payload.response_type == "code":
            return super().get_authorization_grant(request)
        redirect_uri = None
        client = self.query_client(request.payload.client_id) if request.payload.client_id else None
        if client is not None:
            wanted = request.payload.redirect_uri
            redirect_uri = (wanted if client.check_redirect_uri(wanted) else None) if wanted \
                else client.get_default_redirect_uri()
        raise OnlyCode(redirect_uri=redirect_uri)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        if isinstance(request, dict):
            return StoredRequest(request)
        return FlaskRequest(flask_request)


def build_server(app: Flask, client_auth: Callable[[Any, Any], Any]) -> SmartServer:
    def query_client(client_id: str) -> Client | None:
        row = repo.client(db(), client_id)
        return Client(row) if row else None

    server = SmartServer(app, query_client=query_client,
                         save_token=lambda token, request: hooks(app).save(token, request))
    server.register_token_generator("default", generate_bearer)
    server.register_client_auth_method("private_key_jwt", client_auth)
    server.register_client_auth_method("client_secret_basic", client_secret_basic)
    server.register_grant(CodeGrant, [S256Only(required=True), smart_checks])
    server.register_grant(RefreshGrant)
    server.register_grant(BackendGrant)
    return server


__all__ = ["SmartServer", "build_server", "Client", "Token", "StoredRequest", "InvalidGrantError",
           "ONLINE_TTL_S", "OFFLINE_TTL_S"]
