"""Issue 16, item 8 and the security-headers class: every answer of every route in the app's URL map
(pages, FHIR, OAuth, static files and error answers) carries the security headers, and no page needs
inline script or style that its Content-Security-Policy would block."""
from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support import practice as pr
from tests.support.accounts import login, patient_user
from tests.support.smart import Smart

# Example values for the URL map's variables; unknown ids give error answers, which are checked too.
VALUES = {"rtype": "Patient", "filename": "portal.css", "grant_id": "1", "access_id": "1", "record_id": "1",
          "user_id": "1", "link_id": "1", "token": "no-such-token", "vid": "1", "doc_id": "no-such", "message_id": "no-such",
          "mid": "no-such", "oid": "no-such", "job_id": "no-such", "name": "none.ndjson"}
STATIC_FILES = {"static": "none.css", "portal.static": "portal.css", "accounts.static": "idle.js",
                "bundles.static": "print.js"}
PUBLIC_CACHE = {"smart.openid_config", "smart.smart_config", "smart.jwks", "smart.smart_style"}  # discovery
INLINE = [(re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.I), "an inline <script>"),
          (re.compile(r"<style[\s>]", re.I), "a <style> element"),
          (re.compile(r"<[^>]+\sstyle\s*=", re.I), "a style= attribute"),
          (re.compile(r"<[^>]+\son[a-z]+\s*=", re.I), "an inline event handler"),
          (re.compile(r"javascript:", re.I), "a javascript: URL")]


def _url(rule: Any, ids: dict[str, str]) -> str:
    values = {**VALUES, **ids}
    if rule.endpoint in STATIC_FILES:
        values["filename"] = STATIC_FILES[rule.endpoint]
    return rule.build({k: values[k] for k in rule.arguments}, append_unknown=False)[1]


def check(resp: Any, what: str) -> None:
    """The headers every answer carries, and a page's policy and body."""
    h = resp.headers
    assert h.get("X-Content-Type-Options") == "nosniff", what
    assert h.get("Referrer-Policy") in ("same-origin", "no-referrer"), what
    csp = h.get("Content-Security-Policy", "")
    framed = h.get("X-Frame-Options")
    if what.startswith("GET /health/documents/") and what.endswith("/content"):  # framed by its own page only
        assert framed == "SAMEORIGIN" and "frame-ancestors 'self'" in csp, what
    else:
        assert framed == "DENY" and "frame-ancestors 'none'" in csp, what
    if resp.mimetype == "text/html":
        directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";") if d.strip())
        assert "'self'" in directives.get("script-src", "") and "unsafe" not in directives["script-src"], what
        assert "unsafe" not in directives.get("style-src", "unsafe"), what
        assert directives.get("object-src") == "'none'" and directives.get("base-uri") == "'none'", what
        body = resp.get_data(as_text=True)
        for pattern, name in INLINE:
            found = pattern.search(body)
            assert found is None, f"{what}: {name} the policy blocks: {found.group(0) if found else ''}"


def _cache(resp: Any, endpoint: str, what: str) -> None:
    cache = resp.headers.get("Cache-Control", "")
    if endpoint in STATIC_FILES:
        assert "no-store" not in cache, what
    elif endpoint in PUBLIC_CACHE and resp.status_code == 200:
        assert cache.startswith("public"), what
    else:
        assert "no-store" in cache, what


@pytest.fixture
def world(app: Any, fhir: Any) -> dict[str, Any]:
    """Anonymous, a signed-in patient, a signed-in staff member and a patient app's bearer token."""
    smart = Smart(app, app.test_client())  # adds its test-only route before the first request
    pid = smart.patient()
    bearer = smart.launch(smart.user(pid), "launch/patient patient/*.rs")["access_token"]
    patient = app.test_client()
    own = patient_user(app, patient)
    pr.add_staff(app, fhir)
    staff = app.test_client()
    assert login(staff, "staff@example.com", "1975-05-14", pr.pd.PASSWORD).status_code == 302
    return {"anonymous": app.test_client(), "patient": patient, "staff": staff, "bearer": bearer,
            "ids": {"pid": own, "fid": own}}


def test_every_route_answers_with_the_security_headers(app: Any, world: dict[str, Any]) -> None:
    walked = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/_test/"):
            continue
        url = _url(rule, world["ids"])
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            who = ["anonymous"] if method != "GET" else ["anonymous", "patient", "staff"]
            for name in who:  # unsafe methods anonymously only: no CSRF token, so nothing changes (400/401/403)
                headers = {"Authorization": f"Bearer {world['bearer']}"} if name == "patient" and \
                    url.startswith("/fhir") else {}
                resp = world[name].open(url, method=method, headers=headers)
                what = f"{method} {url} as {name} ({resp.status_code})"
                assert resp.status_code < 500, what
                check(resp, what)
                _cache(resp, rule.endpoint, what)
            walked.add(rule.endpoint)
    assert len(walked) >= 80  # the whole URL map, not a sample


@pytest.mark.parametrize("path", ["/no-such-page", "/fhir/NoSuchType/1", "/fhir/Patient/no-such", "/oauth/nothing",
                                  "/health/documents/x/nothing"])
def test_error_answers_carry_them_too(client: Any, path: str) -> None:
    for method in ("GET", "POST", "DELETE"):
        resp = client.open(path, method=method)
        assert resp.status_code in (302, 400, 401, 404, 405), (method, path, resp.status_code)
        check(resp, f"{method} {path}")
        assert "no-store" in resp.headers["Cache-Control"]


def test_consent_and_login_cannot_be_framed(app: Any, smart: Any) -> None:
    pid = smart.patient()
    client_id, _ = smart.register()
    anonymous = smart.authorize(client_id)
    assert anonymous.status_code == 302 and anonymous.location.startswith("/login?")
    login_page = smart.client.get(anonymous.location)
    smart.login(smart.user(pid))
    consent = smart.authorize(client_id)
    assert consent.status_code == 200 and "Allow" in consent.get_data(as_text=True)
    for resp in (login_page, consent):
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in resp.headers  # http: a browser would ignore it anyway


def test_the_fast_path_read_carries_the_same_headers(app: Any, smart: Any) -> None:
    pid = smart.patient()
    token = smart.launch(smart.user(pid), "launch/patient patient/*.rs")["access_token"]
    fast = smart.get(f"Patient/{pid}", token)
    slow = smart.get(f"Patient/{pid}", token, headers={"If-None-Match": 'W/"0"'})  # answered by Flask
    assert fast.status_code == 200 and slow.status_code == 200
    for name in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy",
                 "Cache-Control", "Permissions-Policy"):
        assert fast.headers.get(name) == slow.headers.get(name) is not None, name
    assert fast.headers["Cache-Control"] == "no-store"


def test_https_instances_add_strict_transport_security(tmp_path: Any) -> None:
    from carespace import close_app
    from tests.conftest import make_app
    app = make_app(f"sqlite:///{tmp_path / 'h.db'}", tmp_path / "i", BASE_URL="https://portal.example.org")
    try:
        resp = app.test_client().get("/login", base_url="https://portal.example.org")
        assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        close_app(app)
