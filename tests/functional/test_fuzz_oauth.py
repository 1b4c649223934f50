"""Issue 16, fuzzing the authorization server: random and hostile parameters, headers and bodies on
/oauth/authorize, /oauth/consent, /oauth/token, /oauth/register, /oauth/introspect and /oauth/revoke answer
below 500, and the JSON endpoints answer JSON (RFC 6749 section 5.2), never a page. Bounded and derandomized,
so the examples are the same on every run."""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import BACKENDS, _new_db_url, make_app
from tests.support.smart import ATYPE, DEFAULT_SCOPE, FHIR_BASE, REDIRECT, Smart, pkce

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
JSON_ENDPOINTS = ("/oauth/token", "/oauth/register", "/oauth/introspect", "/oauth/revoke")


class World:
    """One app per backend: a signed-in patient, a public and a confidential app, live tokens."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.smart = Smart(app, app.test_client())
        self.anonymous = app.test_client()
        pid = self.smart.patient()
        self.smart.login(self.smart.user(pid))
        self.public, _ = self.smart.register()
        self.secret_id, secret = self.smart.register("secret")
        assert secret is not None
        self.secret = secret
        tok = self.smart.exchange(self.public, self.smart.code(self.public)).get_json()
        self.access, self.refresh = tok["access_token"], tok["refresh_token"]
        self.code = self.smart.code(self.public)  # left unused: a live code the fuzzer may send

    def check(self, resp: Any, path: str) -> None:
        assert resp.status_code < 500, (path, resp.status_code, resp.get_data(as_text=True)[:500])
        if path in JSON_ENDPOINTS:
            assert resp.headers["Content-Type"].startswith("application/json"), (path, resp.status_code)
            json.loads(resp.get_data(as_text=True))


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from carespace import close_app
    folder: Path = tmp_path_factory.mktemp("fuzz-oauth")
    app = make_app(_new_db_url(str(request.param), pg_cluster, folder), folder / "instance",
                   OAUTH_TOKEN_FAILURES_PER_IP=0, OAUTH_TOKEN_FAILURES_PER_CLIENT=0, OAUTH_REGISTER_LIMIT_PER_IP=0)
    yield World(app)
    close_app(app)


hostile = st.one_of(
    st.text(max_size=40),
    st.sampled_from(['"', "'", "\\", "\x00", "é", "\u2028", "%00", "<script>", "a" * 3000, " ", "", "null",
                     "code", "S256", "plain", "token", "authorization_code", "refresh_token", "client_credentials",
                     "access_token", "none", DEFAULT_SCOPE, FHIR_BASE, REDIRECT, REDIRECT + '"', "https://é.example/",
                     ATYPE, "a.b.c", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", "consent", "login"]),
)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=60)


def _params(names: list[str], known: Any) -> Any:
    """Dicts over the given parameter names (and a random one), each value known-good or hostile."""
    value = st.one_of(known, hostile)
    return st.fixed_dictionaries({}, optional={**{n: value for n in names}, "extra": hostile})


@st.composite
def authorization(draw: Any) -> dict[str, str]:
    known = st.sampled_from(["code", REDIRECT, DEFAULT_SCOPE, FHIR_BASE, pkce()[1], "S256", "state-1", "consent"])
    params = draw(_params(["response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge",
                           "code_challenge_method", "launch", "prompt", "nonce", "resource"], known))
    return dict(params)


def _auth_header(draw: Any, w: World) -> dict[str, str]:
    kind = draw(st.sampled_from(["none", "basic", "bearer", "raw"]))
    if kind == "basic":
        user = draw(st.one_of(st.sampled_from([w.public, w.secret_id]), header_text))
        password = draw(st.one_of(st.just(w.secret), header_text))
        raw = draw(st.one_of(st.just(f"{user}:{password}".encode("utf-8", "surrogatepass")), st.binary(max_size=30)))
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    if kind == "bearer":
        return {"Authorization": "Bearer " + draw(st.one_of(st.just(w.access), header_text))}
    if kind == "raw":
        return {"Authorization": draw(header_text)}
    return {}


@given(data=st.data())
@FUZZ
def test_authorize_never_fails(world: World, data: Any) -> None:
    params = data.draw(authorization())
    if data.draw(st.booleans()):
        params["client_id"] = world.public
    client = world.smart.client if data.draw(st.booleans()) else world.anonymous
    if data.draw(st.booleans()):
        r = client.post("/oauth/authorize", data=params)
    else:
        r = client.get("/oauth/authorize", query_string=params)
    world.check(r, "/oauth/authorize")
    form = data.draw(st.fixed_dictionaries({}, optional={"rid": hostile, "decision": st.sampled_from(["allow", "deny"]),
                                                         "type": hostile, "offline": hostile, "patient_id": hostile,
                                                         "cat_Observation": hostile}))
    world.check(world.smart.client.post("/oauth/consent", data=form), "/oauth/consent")


@given(data=st.data())
@FUZZ
def test_token_never_fails(world: World, data: Any) -> None:
    w = world
    known = st.sampled_from(["authorization_code", "refresh_token", "client_credentials", w.code, w.refresh, REDIRECT,
                             pkce()[0], w.public, w.secret_id, w.secret, ATYPE, "system/*.rs", DEFAULT_SCOPE])
    form = data.draw(_params(["grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret",
                              "refresh_token", "scope", "client_assertion_type", "client_assertion"], known))
    r = w.smart.client.post("/oauth/token", data=form, headers=_auth_header(data.draw, w))
    w.check(r, "/oauth/token")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile, inner, max_size=4),
                           max_leaves=8)


@given(data=st.data())
@FUZZ
def test_register_never_fails(world: World, data: Any) -> None:
    fields = ["client_name", "redirect_uris", "token_endpoint_auth_method", "grant_types", "response_types", "scope",
              "jwks", "jwks_uri", "initiate_login_uri", "client_uri", "logo_uri", "contacts", "software_statement"]
    known = st.sampled_from(["none", [REDIRECT], ["authorization_code", "refresh_token"], ["code"], DEFAULT_SCOPE,
                             "App", {"keys": []}, "https://app.example.org/launch"])
    kind = data.draw(st.sampled_from(["metadata", "json", "raw"]))
    if kind == "metadata":
        body = json.dumps(data.draw(st.fixed_dictionaries({}, optional={f: st.one_of(known, json_values)
                                                                        for f in fields})))
    elif kind == "json":
        body = json.dumps(data.draw(json_values))
    else:
        body = data.draw(st.binary(max_size=60)).decode("latin-1")
    ctype = data.draw(st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"]))
    world.check(world.smart.client.post("/oauth/register", data=body, content_type=ctype), "/oauth/register")


@given(data=st.data())
@FUZZ
def test_introspect_and_revoke_never_fail(world: World, data: Any) -> None:
    w = world
    known = st.sampled_from([w.access, w.refresh, "access_token", "refresh_token", w.public, w.secret_id])
    form = data.draw(_params(["token", "token_type_hint", "client_id", "client_secret", "client_assertion_type",
                              "client_assertion"], known))
    path = data.draw(st.sampled_from(["/oauth/introspect", "/oauth/revoke"]))
    if path == "/oauth/revoke" and form.get("token") in (w.access, w.refresh):
        form["token"] = "not-the-live-one"  # keep the world's tokens alive for later examples
    w.check(w.smart.client.post(path, data=form, headers=_auth_header(data.draw, w)), path)
