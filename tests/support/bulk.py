"""Bulk Data helpers: a backend-services token for a scope, kick-off, polling to the manifest, NDJSON downloads."""
from __future__ import annotations

import json
import time
from typing import Any

from tests.support.smart import basic

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def backend_token(app: Any, client: Any, scope: str = "system/*.rs") -> tuple[str, str]:
    """(client_id, access token) of a newly registered backend-services client holding `scope`."""
    from smart_auth.oauth.service import register_client
    with app.extensions["carespace.sessions"]() as s:
        new = register_client(s, name="Bulk client", kind="secret", grant_types=["client_credentials"],
                              redirect_uris=[], scope=scope)
        s.commit()
        client_id, secret = new.client_id, new.client_secret
    r = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": scope},
                    headers=basic(client_id, secret or ""))
    assert r.status_code == 200, r.get_data(as_text=True)
    return client_id, r.get_json()["access_token"]


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def kick_off(client: Any, token: str, path: str = "/fhir/$export", **kw: Any) -> str:
    """Start an export; the status URL (path only) of its 202."""
    r = client.get(path, headers=auth(token, **ASYNC), **kw) if "json" not in kw else \
        client.post(path, headers=auth(token, **ASYNC), **kw)
    assert r.status_code == 202, r.get_data(as_text=True)
    return str(r.headers["Content-Location"]).removeprefix("http://localhost")


def wait(client: Any, token: str, status_url: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll (honouring Retry-After) until the manifest; fails on anything but 202, 429 and 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(status_url, headers=auth(token))
        if r.status_code == 200:
            return r.get_json()  # type: ignore[no-any-return]
        assert r.status_code in (202, 429), (r.status_code, r.get_data(as_text=True))
        assert r.headers["Retry-After"].isdigit()
        time.sleep(0.25)
    raise AssertionError(f"export {status_url} did not finish in {timeout} s")


def download(client: Any, token: str, url: str) -> list[dict[str, Any]]:
    r = client.get(url.removeprefix("http://localhost"), headers=auth(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "application/fhir+ndjson"
    return [json.loads(line) for line in r.get_data(as_text=True).splitlines()]


def resources(client: Any, token: str, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every exported resource, by the type its manifest entry names (checked against each line)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        got = download(client, token, item["url"])
        assert len(got) == item["count"] and all(r["resourceType"] == item["type"] for r in got)
        out.setdefault(item["type"], []).extend(got)
    return out
