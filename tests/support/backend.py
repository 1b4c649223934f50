"""A SMART Backend Services client (private_key_jwt, client_credentials) and its token, for tests of system/ scopes."""
from __future__ import annotations

import json
from typing import Any

from tests.support.smart import ATYPE, Smart, assertion, keypair


def backend_token(smart: Smart, scope: str = "system/*.*") -> str:
    """Register a backend client allowed `scope` and return an access token granted that scope."""
    key, jwks = keypair("ES384")
    client_id, _ = smart.register("jwks", jwks=json.dumps(jwks), grant_types=["client_credentials"],
                                  redirect_uris=[], scope=scope)
    resp = smart.client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": scope,
                                                   "client_assertion_type": ATYPE,
                                                   "client_assertion": assertion(client_id, key, "ES384")})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    token: Any = resp.get_json()["access_token"]
    return str(token)
