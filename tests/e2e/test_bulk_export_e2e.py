"""End to end: an independent client (plain `requests`, as a backend service) runs the Bulk Data flow against
`carespace serve`: token, kick-off, polling by Retry-After, manifest, NDJSON downloads counted against the
Synthea JSON; and an export queued before a restart finishes after it."""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import LiveServer, synthea_files

pytestmark = pytest.mark.e2e


def _token(live: Any, scope: str = "system/*.rs") -> str:
    reg = json.loads(live.cli("register-client", "--name", "Bulk backend", "--secret", "--grant-type",
                              "client_credentials", "--scope", scope).stdout)
    r = requests.post(f"{live.url}/oauth/token", data={"grant_type": "client_credentials", "scope": scope},
                      auth=(reg["client_id"], reg["client_secret"]), timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _manifest(session: requests.Session, url: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = session.get(url, timeout=10)
        if r.status_code == 200:
            return r.json()  # type: ignore[no-any-return]
        assert r.status_code in (202, 429), (r.status_code, r.text)
        time.sleep(int(r.headers["Retry-After"]))
    raise AssertionError("the export did not finish")


def test_an_outside_system_exports_the_synthea_patients(tmp_path: Path) -> None:
    folder = tmp_path / "live"
    folder.mkdir()
    files = sorted(synthea_files(), key=lambda p: p.stat().st_size)[:2]
    live = LiveServer(folder, f"sqlite:///{folder / 'carespace.db'}", None).start()
    try:
        for f in files:
            live.cli("import", str(f))
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {_token(live)}"
        cs = session.get(f"{live.url}/fhir/metadata", timeout=10).json()
        assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in cs["instantiates"]
        assert session.get(f"{live.url}/fhir/$export", timeout=10).status_code == 400  # no Prefer
        kick = session.get(f"{live.url}/fhir/$export", headers={"Prefer": "respond-async",
                                                                "Accept": "application/fhir+json"}, timeout=10)
        assert kick.status_code == 202, kick.text
        manifest = _manifest(session, kick.headers["Content-Location"])
        assert manifest["requiresAccessToken"] is True and manifest["error"] == []
        got: Counter[str] = Counter()
        for item in manifest["output"]:
            r = session.get(item["url"], timeout=30)
            assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/fhir+ndjson")
            lines = [json.loads(x) for x in r.text.splitlines()]
            assert len(lines) == item["count"] and {x["resourceType"] for x in lines} == {item["type"]}
            got[item["type"]] += len(lines)
        assert requests.get(manifest["output"][0]["url"], timeout=10).status_code == 401  # the token is needed
        want = Counter(e["resource"]["resourceType"] for f in files for e in json.loads(f.read_text())["entry"])
        assert got == want
        assert session.delete(kick.headers["Content-Location"], timeout=10).status_code == 202
        assert session.get(kick.headers["Content-Location"], timeout=10).status_code == 404
    finally:
        live.stop()


def test_an_export_queued_before_a_restart_finishes_after_it(tmp_path: Path) -> None:
    folder = tmp_path / "live"
    folder.mkdir()
    url = f"sqlite:///{folder / 'carespace.db'}"
    live = LiveServer(folder, url, None, env={"CARESPACE_EXPORT_WORKER": "off"}).start()
    try:
        live.cli("import", str(min(synthea_files(), key=lambda p: p.stat().st_size)))
        token = _token(live)
        kick = requests.get(f"{live.url}/fhir/Patient/$export?_type=Patient", timeout=10,
                            headers={"Prefer": "respond-async", "Authorization": f"Bearer {token}"})
        assert kick.status_code == 202
        status = kick.headers["Content-Location"]
        assert requests.get(status, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 202
    finally:
        live.stop()
    again = LiveServer(folder, url, None)
    again.port, again.url = live.port, live.url  # the same address: the status URL stays valid
    again.env["CARESPACE_BASE_URL"] = live.url
    again.start()
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        manifest = _manifest(session, status)
        assert [(o["type"], o["count"]) for o in manifest["output"]] == [("Patient", 1)]
    finally:
        again.stop()
