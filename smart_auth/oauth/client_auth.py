"""private_key_jwt client authentication (SMART asymmetric clients and backend services).

The assertion must be RS384 or ES384, signed by a key of the client's registered JWKS (inline or
jwks_uri; a `jku` header must equal the registered URL), iss == sub == client_id, aud == the token
URL, exp at most five minutes ahead, and a jti never seen before.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.util import urlsafe_b64decode

from .keys import ClientKeys, find_key

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGS = ("RS384", "ES384")
MAX_LIFETIME_S = 300
LEEWAY_S = 30


def _segment(token: str, i: int) -> dict[str, Any]:
    try:
        data = json.loads(urlsafe_b64decode(token.split(".")[i].encode()))
    except (IndexError, ValueError, TypeError):
        raise InvalidClientError(description="client_assertion is not a JWT") from None
    if not isinstance(data, dict):
        raise InvalidClientError(description="client_assertion is not a JWT")
    return data


def client_secret_basic(query_client: Callable[[str], Any], request: Any) -> Any:
    """RFC 6749 2.3.1 HTTP Basic, refusing a malformed header with invalid_client (Authlib's parser raised
    ValueError on `Basic` without credentials and on credentials that are not UTF-8: a 500)."""
    scheme, _, value = (request.headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip()).decode("utf-8")
    except (binascii.Error, ValueError):
        decoded = ""
    if ":" not in decoded:
        raise InvalidClientError(status_code=401, description="HTTP Basic credentials must be base64 of "
                                                              "client_id:client_secret")
    return authenticate_client_secret_basic(query_client, request)


def unverified_issuer(assertion: str) -> str | None:
    """The `iss` an assertion claims, before any check (to name the client a failed request counts against)."""
    try:
        iss = _segment(assertion, 1).get("iss")
    except InvalidClientError:
        return None
    return iss if isinstance(iss, str) else None


def private_key_jwt(token_url: Callable[[], str], keys: ClientKeys, use_jti: Callable[[str, str, int], bool],
                    now: Callable[[], int]) -> Callable[[Any, Any], Any]:
    """An Authlib client-auth function for the `private_key_jwt` method."""

    def authenticate(query_client: Callable[[str], Any], request: Any) -> Any:
        data = request.payload.data
        atype, assertion = data.get("client_assertion_type"), data.get("client_assertion")
        if not atype and not assertion:
            return None
        if atype != ASSERTION_TYPE:
            raise InvalidClientError(description=f"client_assertion_type must be {ASSERTION_TYPE}")
        if not assertion:
            raise InvalidClientError(description="client_assertion is missing")
        header, unverified = _segment(assertion, 0), _segment(assertion, 1)
        client_id = unverified.get("iss")
        client = query_client(client_id) if isinstance(client_id, str) else None
        if client is None or not isinstance(client_id, str) or client.row.auth_method != "private_key_jwt":
            raise InvalidClientError(description="The assertion's issuer is not a registered asymmetric client")
        if data.get("client_id") not in (None, client_id):
            raise InvalidClientError(description="client_id does not match the assertion's issuer")
        alg = header.get("alg")
        if alg not in ALGS:
            raise InvalidClientError(description="client_assertion must be signed with RS384 or ES384")
        jku = header.get("jku")
        if jku is not None and jku != client.row.jwks_uri:
            raise InvalidClientError(description="The assertion's jku is not the client's registered JWKS URL")
        try:
            key = find_key(keys.key_set(client.row.jwks, client.row.jwks_uri), header.get("kid"), alg)
            if key is None and client.row.jwks_uri:  # maybe rotated since the keys were cached
                key = find_key(keys.key_set(None, client.row.jwks_uri, fresh=True), header.get("kid"), alg)
        except Exception:  # noqa: BLE001 - unreachable or malformed JWKS: the client cannot authenticate
            raise InvalidClientError(description="The client's JWKS could not be read") from None
        if key is None:
            raise InvalidClientError(description="No key in the client's JWKS matches the assertion's kid and alg")
        try:
            claims = jwt.decode(assertion, key, algorithms=[alg]).claims
        except (JoseError, ValueError):
            raise InvalidClientError(description="The client_assertion signature is not valid") from None
        t = now()
        exp = claims.get("exp")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if claims.get("sub") != client_id:
            raise InvalidClientError(description="The assertion's sub must equal its iss (the client_id)")
        if token_url() not in auds:
            raise InvalidClientError(description="The assertion's aud must be the token endpoint URL")
        if not isinstance(exp, (int, float)) or exp < t - LEEWAY_S or exp > t + MAX_LIFETIME_S + LEEWAY_S:
            raise InvalidClientError(description="The assertion's exp must be in the next five minutes")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 255 or "\x00" in jti:
            raise InvalidClientError(description="The assertion needs a jti of at most 255 characters")
        if not use_jti(client_id, jti, int(exp)):
            raise InvalidClientError(description="This client_assertion was already used (jti replay)")
        return client

    return authenticate
