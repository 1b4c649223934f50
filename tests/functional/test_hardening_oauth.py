"""Issue 16, the authorization server's reproductions: 2 (consent after a wider grant), 5 (the two discovery
documents agree), 7 (no 500 from /oauth/authorize or /oauth/register), 9 (refresh replay revokes the grant
family), 10 (who may introspect), 12 (a slow jwks_uri), 14 (rate limits on /oauth/token and /oauth/register)."""
from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import _new_db_url, make_app
from tests.support.jwks_server import JwksServer
from tests.support.smart import ATYPE, REDIRECT, Smart, assertion, basic, keypair, pkce, query


def browser_form(page: Any) -> dict[str, Any]:
    """The consent form as a browser sends it: hidden fields and only the boxes that are ticked."""
    html = page.get_data(as_text=True)
    form: dict[str, Any] = {"decision": "allow"}
    for tag in re.findall(r"<input[^>]*>", html):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name is None or value is None:
            continue
        if 'type="hidden"' in tag or re.search(r"\schecked", tag):
            form.setdefault(name.group(1), []).append(value.group(1))
    return form


def ticked(page: Any) -> set[str]:
    return {v for k, vs in browser_form(page).items() if k in ("type", "offline") for v in vs}


def _ready(smart: Smart) -> tuple[str, str]:
    pid = smart.patient()
    client_id, _ = smart.register()
    smart.login(smart.user(pid))
    return pid, client_id


# ---- 2. a remembered wider grant covers a narrower request; a scope never asked is offered ticked ----
def test_item2_second_authorization_keeps_what_a_wider_grant_covers(smart):
    pid, client_id = _ready(smart)
    first = smart.authorize(client_id, "launch/patient patient/*.rs")
    assert first.status_code == 200 and ticked(first) == {"*"}
    assert smart.client.post("/oauth/consent", data=browser_form(first)).status_code == 302
    second = smart.authorize(client_id, "launch/patient offline_access patient/Observation.rs")
    assert second.status_code == 200
    assert ticked(second) == {"Observation", "1"}  # covered by patient/*.rs; offline_access never asked before
    done = smart.client.post("/oauth/consent", data=browser_form(second))
    assert done.status_code == 302
    tok = smart.exchange(client_id, query(done.headers["Location"])["code"]).get_json()
    assert set(tok["scope"].split()) == {"launch/patient", "offline_access", "patient/Observation.rs"}
    assert tok["refresh_token"]
    assert smart.get(f"Observation/{smart.observation(pid)}", tok["access_token"]).status_code == 200


def test_item2_a_covered_narrower_request_is_answered_from_the_wider_grant(smart):
    pid, client_id = _ready(smart)
    first = smart.authorize(client_id, "launch/patient offline_access patient/*.rs")
    assert smart.client.post("/oauth/consent", data=browser_form(first)).status_code == 302
    again = smart.authorize(client_id, "launch/patient patient/Observation.rs")
    assert again.status_code == 302
    tok = smart.exchange(client_id, query(again.headers["Location"])["code"]).get_json()
    assert tok["scope"].split() == ["launch/patient", "patient/Observation.rs"]  # what was asked, no more
    apps = smart.client.get("/apps").get_data(as_text=True)
    assert "patient/*.rs" in apps  # the remembered decision is still the wider one


def test_item2_what_the_user_declined_stays_unticked(smart):
    pid, client_id = _ready(smart)
    scope = "launch/patient offline_access patient/Patient.rs patient/Observation.rs"
    first = smart.authorize(client_id, scope)
    form = browser_form(first)
    form["type"], form["offline"] = ["Patient"], []
    assert smart.client.post("/oauth/consent", data=form).status_code == 302
    again = smart.authorize(client_id, scope + " patient/Condition.rs")
    assert again.status_code == 200 and ticked(again) == {"Patient", "Condition"}


# ---- 5. both discovery documents: RFC 8414 section 2 fields, the same values ----
def test_item5_openid_configuration_lists_revocation_introspection_and_client_credentials(client):
    oidc = client.get("/.well-known/openid-configuration").get_json()
    assert oidc["revocation_endpoint"] == "http://localhost/oauth/revoke"
    assert oidc["introspection_endpoint"] == "http://localhost/oauth/introspect"
    assert "client_credentials" in oidc["grant_types_supported"]


def test_item5_the_two_discovery_documents_agree_on_every_shared_field(client):
    oidc = client.get("/.well-known/openid-configuration").get_json()
    smart_doc = client.get("/fhir/.well-known/smart-configuration").get_json()
    shared = set(oidc) & set(smart_doc)
    assert {"issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "registration_endpoint",
            "revocation_endpoint", "introspection_endpoint", "grant_types_supported", "scopes_supported",
            "token_endpoint_auth_methods_supported", "code_challenge_methods_supported"} <= shared
    assert {k: oidc[k] for k in shared} == {k: smart_doc[k] for k in shared}


# ---- 7. hostile authorize parameters and registration bodies ----
@pytest.mark.parametrize("response_type", ['"', "é", "code\u2028", "token"])
def test_item7_authorize_with_an_odd_response_type_is_an_error_not_a_500(smart, response_type):
    pid, client_id = _ready(smart)
    r = smart.client.get("/oauth/authorize?" + urlencode({"response_type": response_type}))
    assert r.status_code == 400 and "text/html" in r.headers["Content-Type"]
    r = smart.authorize(client_id, response_type=response_type)  # a known app and redirect: back to the app
    assert r.status_code == 302
    q = query(r.headers["Location"])
    assert q["error"] == "unsupported_response_type" and q["state"] == smart.state and "code" not in q


def test_item7_authorize_with_an_odd_redirect_uri_is_a_page_not_a_500(smart):
    pid, client_id = _ready(smart)
    for uri in ['https://app.example.org/"', "https://app.example.org/é"]:
        r = smart.authorize(client_id, redirect_uri=uri)
        assert r.status_code == 400 and "Location" not in r.headers


@pytest.mark.parametrize("body,error", [
    ('"x"', "invalid_request"), ("1", "invalid_request"), ("{bad", "invalid_request"),
    (json.dumps({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "jwks": "x"}),
     "invalid_client_metadata"),
    (json.dumps({"redirect_uris": [5], "token_endpoint_auth_method": "none"}), "invalid_client_metadata"),
    (json.dumps({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_uri": 5}),
     "invalid_client_metadata"),
    (json.dumps({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "response_types": 5}),
     "invalid_client_metadata"),
    (json.dumps({"redirect_uris": ['https://a.example.org/"é'], "token_endpoint_auth_method": "none",
                 "scope": "é"}), "invalid_client_metadata"),
])
def test_item7_registration_of_a_malformed_body_is_a_400(smart, body, error):
    r = smart.client.post("/oauth/register", data=body, content_type="application/json")
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json")
    assert r.get_json()["error"] == error


@pytest.mark.parametrize("header", ["Basic", "Basic ", "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
                                    "Basic " + base64.b64encode(b"no-colon").decode(), "Basic %%%"])
def test_item7_a_malformed_basic_header_is_invalid_client_not_a_500(smart, header):
    for path in ("/oauth/token", "/oauth/introspect", "/oauth/revoke"):
        r = smart.client.post(path, data={"grant_type": "client_credentials", "token": "x"},
                              headers={"Authorization": header})
        assert r.status_code == 401 and r.get_json()["error"] == "invalid_client", (path, r.get_json())


# ---- 9. refresh-token replay ----
def test_item9_a_replayed_refresh_token_revokes_the_whole_grant_family(smart):
    pid = smart.patient()
    first = smart.launch(smart.user(pid))
    client_id = first["_client_id"]
    refresh = {"grant_type": "refresh_token", "client_id": client_id}
    second = smart.client.post("/oauth/token", data={**refresh, "refresh_token": first["refresh_token"]}).get_json()
    assert smart.get(f"Patient/{pid}", second["access_token"]).status_code == 200  # now in the token cache
    replay = smart.client.post("/oauth/token", data={**refresh, "refresh_token": first["refresh_token"]})
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    assert smart.get(f"Patient/{pid}", second["access_token"]).status_code == 401
    third = smart.client.post("/oauth/token", data={**refresh, "refresh_token": second["refresh_token"]})
    assert third.status_code == 400
    active = smart.client.post("/oauth/introspect", data={"token": second["access_token"], "client_id": client_id})
    assert active.get_json() == {"active": False}


def test_item9_another_grant_of_the_same_app_is_not_touched(smart):
    pid = smart.patient()
    user = smart.user(pid)
    first = smart.launch(user)
    client_id = first["_client_id"]
    other = smart.exchange(client_id, smart.code(client_id)).get_json()
    refresh = {"grant_type": "refresh_token", "client_id": client_id}
    smart.client.post("/oauth/token", data={**refresh, "refresh_token": first["refresh_token"]})
    smart.client.post("/oauth/token", data={**refresh, "refresh_token": first["refresh_token"]})
    assert smart.get(f"Patient/{pid}", other["access_token"]).status_code == 200


# ---- 10. introspection: only the token's own client and the resource server ----
def _backend(smart: Smart) -> str:
    """A backend service's access token (the resource server)."""
    key, jwks = keypair("ES384")
    client_id, _ = smart.register("jwks", jwks=json.dumps(jwks), grant_types=["client_credentials"],
                                  redirect_uris=[])
    r = smart.client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs",
                                                "client_assertion_type": ATYPE,
                                                "client_assertion": assertion(client_id, key, "ES384")})
    assert r.status_code == 200, r.get_json()
    return str(r.get_json()["access_token"])


def test_item10_a_self_registered_public_client_learns_nothing_of_another_apps_token(smart):
    pid = smart.patient()
    victim = smart.launch(smart.user(pid), kind="secret")
    reg = smart.client.post("/oauth/register", json={"client_name": "Nosy", "redirect_uris": [REDIRECT],
                                                     "token_endpoint_auth_method": "none"}).get_json()
    r = smart.client.post("/oauth/introspect", data={"token": victim["access_token"], "client_id": reg["client_id"]})
    assert r.status_code == 200 and r.get_json() == {"active": False}
    nosy = smart.launch(smart.user(smart.patient("Nosy")))
    r = smart.client.post("/oauth/introspect", data={"token": victim["access_token"]},
                          headers={"Authorization": f"Bearer {nosy['access_token']}"})
    assert r.status_code == 200 and r.get_json() == {"active": False}
    r = smart.client.post("/oauth/introspect", data={"token": victim["refresh_token"]},
                          headers={"Authorization": f"Bearer {nosy['access_token']}"})
    assert r.get_json() == {"active": False}
    r = smart.client.post("/oauth/introspect", data={"token": victim["access_token"]},
                          headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_client"
    r = smart.client.post("/oauth/introspect", data={"token": victim["access_token"]})
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_client"


def test_item10_the_tokens_own_client_and_the_resource_server_may_introspect(smart):
    pid = smart.patient()
    tok = smart.launch(smart.user(pid), kind="secret")
    own = smart.client.post("/oauth/introspect", data={"token": tok["access_token"]},
                            headers=basic(tok["_client_id"], tok["_secret"])).get_json()
    assert own["active"] is True and own["patient"] == pid
    rs = smart.client.post("/oauth/introspect", data={"token": tok["access_token"]},
                           headers={"Authorization": f"Bearer {_backend(smart)}"}).get_json()
    assert rs["active"] is True and rs["patient"] == pid and rs["client_id"] == tok["_client_id"]
    client_id, secret = smart.register("secret", grant_types=["client_credentials"], redirect_uris=[])
    rs = smart.client.post("/oauth/introspect", data={"token": tok["access_token"]},
                           headers=basic(client_id, secret)).get_json()
    assert rs["active"] is True and rs["scope"] == tok["scope"]


# ---- 12. a slow jwks_uri ----
def test_item12_a_slow_jwks_uri_does_not_stall_the_server(app, smart):
    key, jwks = keypair("ES384")
    slow = JwksServer(jwks, delay=4.0)
    try:
        client_id, _ = smart.register("jwks", jwks_uri=slow.url, grant_types=["client_credentials"],
                                      redirect_uris=[])
        answers: list[tuple[int, float]] = []

        def attempt() -> None:
            start = time.monotonic()
            r = app.test_client().post("/oauth/token", data={
                "grant_type": "client_credentials", "scope": "system/*.rs", "client_assertion_type": ATYPE,
                "client_assertion": assertion(client_id, key, "ES384")})
            answers.append((r.status_code, time.monotonic() - start))

        threads = [threading.Thread(target=attempt) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        start = time.monotonic()
        assert smart.client.get("/fhir/metadata").status_code == 200
        assert time.monotonic() - start < 1.0
        for t in threads:
            t.join(10)
        assert [status for status, _ in answers] == [400] * 6
        assert max(took for _, took in answers) < 3.5  # the 2 s deadline, not the server's 4 s
        assert slow.hits == 1  # one fetch for six concurrent assertions
        for _ in range(6):  # the failure is remembered: no assertion waits again
            attempt()
        assert max(took for _, took in answers[6:]) < 1.0 and slow.hits == 1
        assert answers[-1][0] == 400
    finally:
        slow.close()


# ---- 14. rate limits ----
def test_item14_wrong_codes_from_one_address_get_429_with_retry_after(smart):
    pid, client_id = _ready(smart)
    statuses = []
    for i in range(31):
        r = smart.client.post("/oauth/token", data={"grant_type": "authorization_code", "code": f"wrong-{i}",
                                                    "redirect_uri": REDIRECT, "code_verifier": pkce()[0],
                                                    "client_id": client_id})
        statuses.append(r.status_code)
    assert statuses == [400] * 30 + [429]
    assert int(r.headers["Retry-After"]) > 0 and r.get_json()["error"] == "temporarily_unavailable"
    assert r.headers["Cache-Control"] == "no-store"
    other = smart.client.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x",
                                                    "redirect_uri": REDIRECT, "client_id": client_id},
                              environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 400  # another address is not locked out


@pytest.fixture
def limited(backend: str, pg_cluster: Any, tmp_path: Path) -> Iterator[Smart]:
    """An app with small limits: 3 failures per address, 5 per client, 3 registrations per address."""
    from carespace import close_app
    application = make_app(_new_db_url(backend, pg_cluster, tmp_path), tmp_path / "instance",
                           OAUTH_TOKEN_FAILURES_PER_IP=3, OAUTH_TOKEN_FAILURES_PER_CLIENT=5,
                           OAUTH_REGISTER_LIMIT_PER_IP=3)
    yield Smart(application, application.test_client())
    close_app(application)


def test_item14_wrong_secrets_for_one_client_from_many_addresses_get_429(limited):
    client_id, secret = limited.register("secret", grant_types=["client_credentials"], redirect_uris=[])
    statuses = [limited.client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                    headers=basic(client_id, f"wrong-{i}"),
                                    environ_base={"REMOTE_ADDR": f"10.0.0.{i}"}).status_code for i in range(6)]
    assert statuses == [401] * 5 + [429]
    r = limited.client.post("/oauth/token", data={"grant_type": "client_credentials"},
                            headers=basic(client_id, secret), environ_base={"REMOTE_ADDR": "10.0.1.1"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_item14_registrations_per_address_are_limited(limited):
    body = {"client_name": "App", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    statuses = [limited.client.post("/oauth/register", json=body).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    r = limited.client.post("/oauth/register", json=body)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert r.get_json()["error"] == "temporarily_unavailable"
    assert limited.client.post("/oauth/register", json=body, environ_base={"REMOTE_ADDR": "10.9.9.9"}) \
        .status_code == 201


@pytest.mark.parametrize("change", [{"client_name": "x" * 201},
                                    {"redirect_uris": [f"{REDIRECT}/{i}" for i in range(11)]},
                                    {"redirect_uris": [REDIRECT + "/" + "x" * 1000]}])
def test_item14_registration_size_limits(smart, change):
    body = {"client_name": "App", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", **change}
    r = smart.client.post("/oauth/register", json=body)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_client_metadata"


def test_item14_registration_at_the_size_limits_is_accepted(smart):
    body = {"client_name": "x" * 200, "redirect_uris": [f"{REDIRECT}/{i}" for i in range(10)],
            "token_endpoint_auth_method": "none"}
    assert smart.client.post("/oauth/register", json=body).status_code == 201


def test_item14_limits_are_shared_by_processes(limited):
    """The counts live in the database: a second app on the same database sees the first one's lock."""
    from carespace import close_app
    client_id, _ = limited.register()
    for i in range(3):
        limited.client.post("/oauth/token", data={"grant_type": "authorization_code", "code": f"w{i}",
                                                  "redirect_uri": REDIRECT, "client_id": client_id})
    url = str(limited.app.extensions["carespace.engine"].url.render_as_string(hide_password=False))
    second = make_app(url, Path(limited.app.config["INSTANCE_DIR"]), OAUTH_TOKEN_FAILURES_PER_IP=3)
    try:
        r = second.test_client().post("/oauth/token", data={"grant_type": "authorization_code", "code": "w",
                                                            "redirect_uri": REDIRECT, "client_id": client_id})
        assert r.status_code == 429
    finally:
        close_app(second)
