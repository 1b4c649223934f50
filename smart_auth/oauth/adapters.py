"""Authlib's views of CareSpace objects: requests (live or replayed from stored parameters),
clients, authorization codes and tokens."""
from __future__ import annotations

import secrets
from typing import Any

from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from flask import request as flask_request

from smart_auth.accounts.models import User
from smart_auth.accounts.session import db, has_active_access

from . import repository as repo
from .models import AuthCode, OAuthClient, OAuthToken
from .scopes import allowed, split


def _https(url: str) -> str:
    """Authlib refuses http URLs; TLS is the deployment's job (CARESPACE_BASE_URL), not this check's."""
    return "https://" + url.split("://", 1)[1] if url.startswith("http://") else url


class FlaskRequest(FlaskOAuth2Request):
    def __init__(self, request: Any) -> None:  # noqa: D107 - same as Authlib's, minus the https check
        OAuth2Request.__init__(self, request.method, _https(request.url), headers=request.headers)
        self._request = request
        self.payload = FlaskOAuth2Payload(request)


class StoredRequest(OAuth2Request):
    """An authorization request replayed from the parameters kept while the user decides."""

    def __init__(self, params: dict[str, str]) -> None:  # noqa: D107
        super().__init__("GET", _https(flask_request.url), headers=flask_request.headers)
        self.payload = BasicOAuth2Payload(params)
        self.params = params
        self.decision: dict[str, Any] | None = None

    @property
    def args(self) -> dict[str, str]:
        return self.params

    @property
    def form(self) -> dict[str, str]:
        return self.params


class Client(ClientMixin):
    """Authlib's view of an OAuthClient row."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row
        self.client_id = row.client_id

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.row.redirect_uris.split()
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        kept = allowed(split(scope), split(self.row.scope), user_flow=True)
        return " ".join(kept) if kept else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris.split()  # exact match only

    def check_client_secret(self, client_secret: str) -> bool:
        return bool(self.row.secret_hash) and secrets.compare_digest(self.row.secret_hash or "",
                                                                     repo.digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.row.auth_method == "client_secret_basic":
            return method in ("client_secret_basic", "client_secret_post")
        return method == self.row.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.row.grant_types.split()

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "refresh_token":
            return "authorization_code" in self.row.grant_types.split()
        return grant_type in self.row.grant_types.split()


class Code:
    """Authlib's view of an authorization code."""

    def __init__(self, row: AuthCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope


class Token:
    """Authlib's view of a token row, as found by its access or its refresh token."""

    def __init__(self, row: OAuthToken, kind: str) -> None:
        self.row = row
        self.kind = kind

    def check_client(self, client: Client) -> bool:
        return self.row.client_id == client.row.client_id

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return self.row.expires_at - self.row.issued_at

    def expires_at(self) -> int:
        return (self.row.refresh_expires_at or 0) if self.kind == "refresh_token" else self.row.expires_at

    def is_expired(self) -> bool:
        return self.expires_at() <= repo.now()

    def is_revoked(self) -> bool:
        if self.row.revoked:
            return True
        if self.row.user_id is None:
            return False
        user = db().get(User, self.row.user_id)
        if user is None or user.status != "active":
            return True
        return bool(self.row.patient_id) and user.role != "staff" and not has_active_access(
            db(), user.id, self.row.patient_id or "")

    def get_user(self) -> User | None:
        return db().get(User, self.row.user_id) if self.row.user_id else None

    def get_client(self) -> Client | None:
        row = repo.client(db(), self.row.client_id)
        return Client(row) if row else None
