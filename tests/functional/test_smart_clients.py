"""Checklist J (51-53) introspection, K (54) revocation and Connected apps, L (55-59, 61) asymmetric
clients and backend services, I (48-49) assertion errors, RFC 7591 registration, register-client."""
from __future__ import annotations

import json
import re
import secrets
from typing import Any

import pytest
from joserfc import jwk, jwt

from tests.support.jwks_server import JwksServer
from tests.support.smart import ATYPE, REDIRECT, assertion, basic, keypair

FULL = "launch/patient openid fhirUser offline_access patient/*.rs"


@pytest.fixture
def jwks_server():
    servers: list[JwksServer] = []

    def start(jwks: dict[str, Any]) -> str:
        servers.append(JwksServer(jwks))
        return servers[-1].url
    yield start
    for s in servers:
        s.close()


def _backend(smart, alg="ES384", uri_server=None, scope=""):
    key, jwks = keypair(alg)
    if uri_server:
        client_id, _ = smart.register("jwks", jwks_uri=uri_server(jwks), grant_types=["client_credentials"],
                                      redirect_uris=[], scope=scope)
    else:
        client_id, _ = smart.register("jwks", jwks=json.dumps(jwks), grant_types=["client_credentials"],
                                      redirect_uris=[], scope=scope)
    return client_id, key


def _cc(smart, client_id, key, alg="ES384", scope="system/*.read", **kw):
    data = {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ATYPE,
            "client_assertion": assertion(client_id, key, alg, **kw)}
    return smart.client.post("/oauth/token", data=data, headers={"Accept": "application/json"})


# ---- J. introspection ----
def test_item51_item52_introspection_active(smart):
    pid = smart.patient()
    tok = smart.launch(smart.user(pid), kind="secret")
    r = smart.client.post("/oauth/introspect", data={"token": tok["access_token"]},
                          headers={**basic(tok["_client_id"], tok["_secret"]), "Accept": "application/json"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["active"] is True and body["client_id"] == tok["_client_id"]
    assert set(body["scope"].split()) == set(tok["scope"].split())
    assert isinstance(body["exp"], int) and body["patient"] == pid
    claims = jwt.decode(tok["id_token"], jwk.KeySet.import_key_set(smart.client.get("/oauth/jwks").get_json())).claims
    assert body["iss"] == claims["iss"] and body["sub"] == claims["sub"] and body["fhirUser"] == claims["fhirUser"]


def test_item51_introspection_with_bearer_authorization(smart):
    pid = smart.patient()
    tok = smart.launch(smart.user(pid))
    r = smart.client.post("/oauth/introspect", data={"token": tok["access_token"]},
                          headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert r.status_code == 200 and r.get_json()["active"] is True


def test_item53_introspection_unknown_token_is_inactive(smart):
    pid = smart.patient()
    tok = smart.launch(smart.user(pid), kind="secret")
    r = smart.client.post("/oauth/introspect", data={"token": "invalid_token_value"},
                          headers=basic(tok["_client_id"], tok["_secret"]))
    assert r.status_code == 200 and r.get_json() == {"active": False}


# ---- K. revocation ----
def test_item54_rfc7009_revocation(smart):
    pid = smart.patient()
    tok = smart.launch(smart.user(pid), kind="secret")
    auth = basic(tok["_client_id"], tok["_secret"])
    assert smart.client.post("/oauth/revoke", data={"token": tok["access_token"]}, headers=auth).status_code == 200
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 401
    r = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
                          headers=auth)
    assert r.status_code == 400
    assert smart.client.post("/oauth/revoke", data={"token": "unknown"}, headers=auth).status_code == 200


def test_item54_connected_apps_lists_and_revoke_kills_tokens_at_once(smart):
    pid = smart.patient()
    user = smart.user(pid)
    tok = smart.launch(user, kind="secret")
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 200
    page = smart.client.get("/apps").get_data(as_text=True)
    assert "Test App" in page and "Last used" in page and "patient/*.rs" in page
    gid = re.search(r'action="/apps/(\d+)/revoke"', page).group(1)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert smart.client.post(f"/apps/{gid}/revoke", data={"csrf_token": csrf}).status_code == 302
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 401
    r = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
                          headers=basic(tok["_client_id"], tok["_secret"]))
    assert r.status_code == 400
    assert "No apps are connected." in smart.client.get("/apps").get_data(as_text=True)
    assert smart.authorize(tok["_client_id"]).status_code == 200


def test_proxy_revocation_and_password_reset_hooks_kill_tokens(smart, app):
    pid = smart.patient()
    owner = smart.user(pid)
    helper = smart.user(smart.patient("Helper"))
    smart.proxy(helper, pid)
    smart.login(helper)
    client_id, _ = smart.register()
    tok = smart.exchange(client_id, smart.code(client_id, FULL, patient_id=pid)).get_json()
    assert tok["patient"] == pid and smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 200
    from sqlalchemy import update

    from smart_auth.accounts.models import PatientAccess
    with app.extensions["carespace.sessions"]() as s:  # what "Revoke access" does, then its hooks
        s.execute(update(PatientAccess).where(PatientAccess.user_id == helper.id, PatientAccess.patient_id == pid)
                  .values(status="revoked"))
        s.commit()
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 401  # per-use check, at once
    for hook in app.extensions["on_access_revoked"]:
        hook(helper.id, pid)
    assert smart.client.post("/oauth/introspect", data={"token": tok["access_token"]},
                             headers={"Authorization": "Bearer x"}).status_code == 401
    own = smart.launch(owner)
    for hook in app.extensions["on_password_reset"]:
        hook(owner.id)
    assert smart.get(f"Patient/{pid}", own["access_token"]).status_code == 401


# ---- L. asymmetric clients and backend services ----
@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_item55_item56_item58_backend_services_inline_jwks(smart, alg):
    client_id, key = _backend(smart, alg)
    r = _cc(smart, client_id, key, alg)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["token_type"].lower() == "bearer" and isinstance(body["expires_in"], int) and body["expires_in"] <= 300
    assert body["scope"] == "system/*.read" and "refresh_token" not in body
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Pragma"] == "no-cache"
    pid = smart.patient()
    assert smart.get(f"Patient/{pid}", body["access_token"]).status_code == 200
    assert smart.client.post("/fhir/Patient", json={"resourceType": "Patient"},
                             headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 403


def test_item55_item56_jwks_uri_and_jku(smart, jwks_server):
    client_id, key = _backend(smart, "ES384", jwks_server, scope="system/*.cruds")
    r = _cc(smart, client_id, key, scope="system/Patient.cruds system/Observation.rs")
    assert r.status_code == 200, r.get_json()
    at = r.get_json()["access_token"]
    created = smart.client.post("/fhir/Patient", json={"resourceType": "Patient"},
                                headers={"Authorization": f"Bearer {at}"})
    assert created.status_code == 201
    from smart_auth.oauth import repository
    with smart.app.extensions["carespace.sessions"]() as s:
        uri = repository.client(s, client_id).jwks_uri
    assert _cc(smart, client_id, key, header={"jku": uri}).status_code == 200
    r = _cc(smart, client_id, key, header={"jku": "https://evil.example.org/jwks.json"})
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_client"


def test_item57_assertion_checks(smart):
    client_id, key = _backend(smart, "RS384")
    jti = secrets.token_hex(32)
    assert _cc(smart, client_id, key, "RS384", jti=jti).status_code == 200
    replay = _cc(smart, client_id, key, "RS384", jti=jti)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_client"
    assert _cc(smart, client_id, key, "RS384", exp=900).status_code == 400  # more than 5 minutes ahead
    assert _cc(smart, client_id, key, "RS384", exp=-120).status_code == 400  # expired
    assert _cc(smart, client_id, key, "RS384", aud="https://other.example.org/token").status_code == 400
    other, _ = keypair("RS384")
    other.kid_for_test = key.kid_for_test  # same kid, wrong key
    assert _cc(smart, client_id, other, "RS384").status_code == 400


def test_item47_unknown_grant_type_with_valid_assertion(smart):
    client_id, key = _backend(smart)
    r = smart.client.post("/oauth/token", data={"grant_type": "not_a_grant", "scope": "system/*.read",
                                                "client_assertion_type": ATYPE,
                                                "client_assertion": assertion(client_id, key, "ES384")})
    assert r.status_code == 400 and r.get_json()["error"] == "unsupported_grant_type"


def test_item48_bad_assertion_type_is_exactly_400(smart):
    client_id, key = _backend(smart)
    r = smart.client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "system/*.read",
                                                "client_assertion_type": "not_an_assertion_type",
                                                "client_assertion": assertion(client_id, key, "ES384")})
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_client"


def test_item49_wrong_iss(smart):
    client_id, key = _backend(smart)
    r = _cc(smart, client_id, key, iss="BAD_ISS")
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_client"


def test_backend_scopes_must_be_system(smart):
    client_id, key = _backend(smart)
    r = _cc(smart, client_id, key, scope="patient/*.rs launch")
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_scope"


def test_item61_asymmetric_launch_and_refresh(smart):
    key, jwks = keypair("RS384")
    client_id, _ = smart.register("jwks", jwks=json.dumps(jwks))
    pid = smart.patient()
    smart.login(smart.user(pid))
    code = smart.code(client_id)
    r = smart.exchange(client_id, code, None, client_assertion_type=ATYPE,
                       client_assertion=assertion(client_id, key, "RS384"))
    assert r.status_code == 200, r.get_json()
    tok = r.get_json()
    assert tok["id_token"] and tok["patient"] == pid
    r = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                                "client_assertion_type": ATYPE,
                                                "client_assertion": assertion(client_id, key, "RS384")})
    assert r.status_code == 200
    r = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "bogus",
                                                "client_assertion_type": ATYPE,
                                                "client_assertion": assertion(client_id, key, "RS384")})
    assert r.status_code == 400


# ---- RFC 7591 dynamic registration ----
def test_dynamic_registration_of_public_app(smart):
    r = smart.client.post("/oauth/register", json={"client_name": "Self-registered", "redirect_uris": [REDIRECT],
                                                   "token_endpoint_auth_method": "none",
                                                   "grant_types": ["authorization_code", "refresh_token"],
                                                   "scope": FULL})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["client_id"] and "client_secret" not in body and body["token_endpoint_auth_method"] == "none"
    pid = smart.patient()
    smart.login(smart.user(pid))
    assert smart.exchange(body["client_id"], smart.code(body["client_id"])).status_code == 200


def test_dynamic_registration_refuses_confidential_and_bad_uris(smart):
    r = smart.client.post("/oauth/register", json={"redirect_uris": [REDIRECT],
                                                   "token_endpoint_auth_method": "client_secret_basic"})
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_client_metadata"
    r = smart.client.post("/oauth/register", json={"redirect_uris": ["not a url"]})
    assert r.status_code == 400


# ---- carespace register-client ----
def test_register_client_command(tmp_path, capsys, monkeypatch):
    from carespace.cli import main
    monkeypatch.setenv("CARESPACE_INSTANCE_DIR", str(tmp_path))
    monkeypatch.setenv("CARESPACE_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    assert main(["register-client", "--name", "Portal App", "--redirect-uri", REDIRECT, "--secret"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["client_id"] and out["client_secret"] and out["token_endpoint_auth_method"] == "client_secret_basic"
    assert main(["register-client", "--name", "Public", "--redirect-uri", REDIRECT, "--public"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "client_secret" not in out and out["token_endpoint_auth_method"] == "none"
    _, jwks = keypair("ES384")
    f = tmp_path / "jwks.json"
    f.write_text(json.dumps(jwks))
    assert main(["register-client", "--name", "EHR", "--jwks-file", str(f), "--grant-type", "client_credentials",
                 "--scope", "system/*.cruds"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["token_endpoint_auth_method"] == "private_key_jwt" and out["grant_types"] == ["client_credentials"]
    assert main(["register-client", "--name", "Bad", "--redirect-uri", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("carespace register-client: error:") and err.count("\n") == 1
    assert main(["register-client", "--name", "Nofile", "--jwks-file", str(tmp_path / "missing.json"),
                 "--grant-type", "client_credentials"]) == 1
