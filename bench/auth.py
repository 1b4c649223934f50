"""A SMART Backend Services token for the benchmark client, so HTTP figures include the real access checks."""
from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

from .measure import Client

SCOPE = "system/*.rs"


def backend_token(app: Any, client: Client) -> str | None:
    """Register a confidential backend client in the store and get a token from /oauth/token over HTTP.

    None when the SMART layer is not part of the build (the FHIR API is then open to a trusted resolver).
    """
    try:
        from smart_auth.oauth.service import register_client
    except ModuleNotFoundError:
        return None
    with app.extensions["carespace.sessions"]() as dbs:
        new = register_client(dbs, name="CareSpace bench", kind="secret", redirect_uris=[], scope=SCOPE,
                              grant_types=["client_credentials"])
        dbs.commit()
        client_id, secret = new.client_id, new.client_secret
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    body = urlencode({"grant_type": "client_credentials", "scope": SCOPE})
    client.conn.request("POST", "/oauth/token", body=body, headers={
        "Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json"})
    resp = client.conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"the token endpoint answered {resp.status}: {data[:300]!r}")
    return str(json.loads(data)["access_token"])
