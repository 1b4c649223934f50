"""Authlib endpoints: token introspection (RFC 7662), revocation (RFC 7009) and dynamic
registration of public apps (RFC 7591)."""
from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError
from authlib.oauth2.rfc6749.requests import JsonPayload, JsonRequest
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import current_app
from flask import request as flask_request

from smart_auth.accounts.session import db, write_phase

from . import repository as repo
from .server import AUTH_METHODS, Client, Token, hooks
from .service import (
    InvalidToken,
    OAuthDomainError,
    active_patient_ids,
    check_client_metadata,
    error_text,
    is_resource_server,
    register_client,
    resolve_token,
)


def _find(token: str, hint: str | None) -> Token | None:
    order = ["refresh_token", "access_token"] if hint == "refresh_token" else ["access_token", "refresh_token"]
    for kind in order:
        row = repo.token_by_access(db(), token) if kind == "access_token" else repo.token_by_refresh(db(), token)
        if row is not None:
            return Token(row, kind)
    return None


class Introspection(IntrospectionEndpoint):
    """RFC 7662: the caller authenticates as a client (client authentication, or the Bearer access token of one
    of its tokens); it learns about a token only when it is that token's own client or the resource server."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def authenticate_endpoint_client(self, request: Any) -> Any:
        auth = request.headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            try:
                ctx = resolve_token(db(), auth[7:].strip(), current_app.config["FHIR_BASE_URL"], active_patient_ids)
            except InvalidToken:
                raise InvalidClientError(status_code=401, description="The bearer token is not valid") from None
            row = repo.client(db(), ctx.client_id)
            request.client = Client(row) if row else None
            return request.client
        return super().authenticate_endpoint_client(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _find(token_string, token_type_hint)

    def check_permission(self, token: Token, client: Any, request: Any) -> bool:
        """RFC 7662 section 4: the token's own client, or a resource server (a backend service the practice
        registered); anyone else is told `active: false`, as for an unknown token (section 2.2)."""
        allowed = client is not None and (token.check_client(client) or is_resource_server(client.row))
        if not allowed:
            hooks(current_app).audit("token-introspected", client.row.client_id if client else None, None,
                                     "introspection of another app's token refused (answered active=false)", False)
        return allowed

    def introspect_token(self, token: Token) -> dict[str, Any]:
        row = token.row
        base = current_app.config["BASE_URL"]
        out: dict[str, Any] = {"active": True, "client_id": row.client_id, "scope": row.scope,
                               "exp": token.expires_at(), "iat": row.issued_at, "token_type": "Bearer"}
        if row.patient_id:
            out["patient"] = row.patient_id
            if encounter := repo.encounter_of(db(), code_id=row.code_id):
                out["encounter"] = encounter
        if row.id_token_sub:
            out["iss"], out["sub"] = base, row.id_token_sub
        if row.fhir_user:
            out["fhirUser"] = f"{current_app.config['FHIR_BASE_URL']}/{row.fhir_user}"
        return out

    def create_endpoint_response(self, request: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        status, body, headers = super().create_endpoint_response(request)
        hooks(current_app).audit("token-introspected", body.get("client_id"), None,
                                 f"introspection: active={body.get('active')}", True)
        return status, body, headers


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        write_phase()  # the token is found and revoked by one writer
        return _find(token_string, token_type_hint)

    def revoke_token(self, token: Token, request: Any) -> None:
        token.row.revoked = True
        db().commit()
        hooks(current_app).audit("token-revoked", token.row.client_id, token.row.patient_id,
                                 "revoked by the app (RFC 7009)", True)


class _Body(JsonPayload):
    """The request's JSON, None when it is not JSON at all (Flask's own error would be an HTML 400)."""

    @property
    def data(self) -> Any:
        return flask_request.get_json(silent=True)


class _Checked(JsonPayload):
    def __init__(self, data: dict[str, Any]) -> None:  # noqa: D107
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


class Registration(ClientRegistrationEndpoint):
    """RFC 7591 for public SMART apps; the practice turns it off with DYNAMIC_CLIENT_REGISTRATION."""

    def create_endpoint_request(self, request: Any) -> JsonRequest:
        req = JsonRequest(flask_request.method, flask_request.url, flask_request.headers)
        req.payload = _Body()
        return req

    def extract_client_metadata(self, request: Any) -> dict[str, Any]:
        """RFC 7591 section 3.2.2: a body that is not an object, or members of the wrong type or size, are
        refused before Authlib's claims (which fail with TypeError on them)."""
        body = request.payload.data
        if not isinstance(body, dict) or not body:
            raise InvalidRequestError("The registration must be a JSON object of client metadata (RFC 7591)")
        try:
            request.payload = _Checked(check_client_metadata(body))
        except OAuthDomainError as exc:
            raise InvalidClientMetadataError(error_text(str(exc))) from None
        return super().extract_client_metadata(request)  # type: ignore[no-any-return]

    def authenticate_token(self, request: Any) -> bool:
        return bool(current_app.config.get("DYNAMIC_CLIENT_REGISTRATION", True))

    def get_server_metadata(self) -> dict[str, Any]:
        return {"response_types_supported": ["code"], "token_endpoint_auth_methods_supported": ["none"],
                "grant_types_supported": ["authorization_code", "refresh_token"]}

    def resolve_public_key(self, request: Any) -> None:
        return None

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        return {}

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any) -> Client:
        method = client_metadata.get("token_endpoint_auth_method", "none")
        if method != "none":
            raise InvalidClientMetadataError("Only public apps (token_endpoint_auth_method none) may self-register")
        try:
            new = register_client(write_phase(), name=str(client_metadata.get("client_name") or "Unnamed app"),
                                  redirect_uris=list(client_metadata.get("redirect_uris") or []),
                                  scope=str(client_metadata.get("scope") or ""), kind="public",
                                  launch_uri=client_metadata.get("initiate_login_uri"), dynamic=True)
        except OAuthDomainError as exc:
            raise InvalidClientMetadataError(error_text(str(exc))) from None
        db().commit()
        return Client(new.row)

    def generate_client_registration_info(self, client: Client, request: Any) -> dict[str, Any]:
        return {"client_id": client.row.client_id, "client_id_issued_at": client.row.created_at,
                "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"]}
