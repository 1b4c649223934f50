"""The read fast path (fhir_server/rest/fastpath.py) answers plain reads exactly as the Flask view would,
and leaves every other request, and every failing read, to Flask."""
from __future__ import annotations

import json
from typing import Any

from tests.support.smart import two_patients

COMPARED = ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Location", "Set-Cookie",
            "WWW-Authenticate", "Access-Control-Allow-Origin")


def _flask_seen(app: Any) -> list[str]:
    """Paths that reached Flask (the fast path answers before Flask runs any before_request hook)."""
    from flask import request, request_started
    seen: list[str] = []

    def started(_sender: Any, **_kw: Any) -> None:
        seen.append(request.path)
    request_started.connect(started, app, weak=False)
    return seen


def _both(smart: Any, path: str, token: str | None, **kw: Any) -> tuple[Any, Any]:
    """The same request with the fast path switched on and off."""
    smart.app.config["FHIR_READ_FAST_PATH"] = True
    fast = smart.get(path, token, **kw)
    smart.app.config["FHIR_READ_FAST_PATH"] = False
    slow = smart.get(path, token, **kw)
    smart.app.config["FHIR_READ_FAST_PATH"] = True
    return fast, slow


def _same(fast: Any, slow: Any) -> None:
    assert fast.status_code == slow.status_code
    assert fast.get_data() == slow.get_data()
    for name in COMPARED:
        assert fast.headers.get(name) == slow.headers.get(name), name


def test_plain_read_is_answered_before_flask_with_identical_bytes_and_headers(smart: Any) -> None:
    mine, _other, own_obs, _, at = two_patients(smart)
    seen = _flask_seen(smart.app)
    fast, slow = _both(smart, f"Observation/{own_obs}", at)
    assert fast.status_code == 200 and json.loads(fast.get_data())["id"] == own_obs
    _same(fast, slow)
    assert seen == [f"/fhir/Observation/{own_obs}"]  # only the request with the fast path switched off
    assert fast.headers["ETag"] == 'W/"1"' and fast.headers["Content-Type"].startswith("application/fhir+json")


def test_failing_reads_fall_through_to_flask_errors(smart: Any) -> None:
    mine, other, own_obs, other_obs, at = two_patients(smart)
    seen = _flask_seen(smart.app)
    cases = [(f"Observation/{other_obs}", at, 404), ("Observation/nope", at, 404), (f"Observation/{own_obs}", None, 401),
             (f"Observation/{own_obs}", "not-a-token", 401), ("NotAType/1", at, 404)]
    for path, token, status in cases:
        fast, slow = _both(smart, path, token)
        assert fast.status_code == status, (path, fast.get_data(as_text=True))
        _same(fast, slow)
        assert json.loads(fast.get_data())["resourceType"] == "OperationOutcome"
    assert len(seen) == 2 * len(cases)  # every failing read was answered by Flask, fast path on or off
    smart.fhir.delete(smart.sys, "Observation", own_obs)
    fast, slow = _both(smart, f"Observation/{own_obs}", at)
    assert fast.status_code == 410
    _same(fast, slow)


def test_requests_that_change_the_answer_go_to_flask(smart: Any) -> None:
    mine, _other, own_obs, _, at = two_patients(smart)
    etag = smart.get(f"Observation/{own_obs}", at).headers["ETag"]
    seen = _flask_seen(smart.app)
    r = smart.get(f"Observation/{own_obs}", at, headers={"If-None-Match": etag})
    assert r.status_code == 304
    r = smart.get(f"Observation/{own_obs}", at, headers={"Origin": "https://app.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    r = smart.get(f"Observation/{own_obs}", at, query_string={"_elements": "status"})
    assert "valueQuantity" not in r.get_json() and "code" in r.get_json()  # code is mandatory: always kept
    assert smart.client.head(f"/fhir/Observation/{own_obs}", headers={"Authorization": f"Bearer {at}"}).status_code == 200
    assert len(seen) == 4


def test_a_bad_token_is_audited_once_and_each_read_once(smart: Any) -> None:
    mine, _other, own_obs, _, at = two_patients(smart)

    def events(code: str) -> int:
        _, page = smart.fhir.search(smart.sys, "AuditEvent", [("subtype", code), ("_count", "500")])
        return len(page.matches)

    refused, reads = events("token-refused"), events("read")
    assert smart.get(f"Observation/{own_obs}", "forged").status_code == 401
    for _ in range(3):
        assert smart.get(f"Observation/{own_obs}", at).status_code == 200
    assert events("read") == reads + 3
    assert events("token-refused") == refused + 1
