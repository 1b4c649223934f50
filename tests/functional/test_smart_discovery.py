"""Checklist A (items 1-6) and G (32-34): SMART discovery, OpenID configuration, JWKS, CORS, metadata."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from carespace import close_app

CAPS = ("launch-standalone launch-ehr client-public client-confidential-symmetric client-confidential-asymmetric "
        "sso-openid-connect context-standalone-patient context-ehr-patient context-banner context-style "
        "permission-offline permission-patient permission-user permission-v1 permission-v2 authorize-post").split()


def test_item01_well_known_is_json_without_auth(client):
    r = client.get("/fhir/.well-known/smart-configuration", headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert isinstance(r.get_json(), dict)


def test_item02_required_fields_and_types(client):
    doc = client.get("/fhir/.well-known/smart-configuration").get_json()
    assert isinstance(doc["authorization_endpoint"], str) and isinstance(doc["token_endpoint"], str)
    assert doc["authorization_endpoint"].startswith("http://localhost/")
    assert all(isinstance(c, str) for c in doc["capabilities"])
    assert {"authorization_code", "client_credentials"} <= set(doc["grant_types_supported"])
    assert "S256" in doc["code_challenge_methods_supported"] and "plain" not in doc["code_challenge_methods_supported"]
    assert isinstance(doc["issuer"], str) and isinstance(doc["jwks_uri"], str)


def test_item03_recommended_fields(client):
    doc = client.get("/fhir/.well-known/smart-configuration").get_json()
    for name in ("introspection_endpoint", "revocation_endpoint", "management_endpoint", "scopes_supported",
                 "registration_endpoint"):
        assert doc[name]
    assert doc["response_types_supported"] == ["code"]
    assert {"client_secret_basic", "private_key_jwt"} <= set(doc["token_endpoint_auth_methods_supported"])
    assert {"RS384", "ES384"} <= set(doc["token_endpoint_auth_signing_alg_values_supported"])


def test_item04_capabilities(client):
    doc = client.get("/fhir/.well-known/smart-configuration").get_json()
    assert set(CAPS) <= set(doc["capabilities"])


def test_item05_cors_on_discovery_metadata_and_token(client):
    origin = {"Origin": "https://app.example.org"}
    for path in ("/fhir/.well-known/smart-configuration", "/fhir/metadata", "/.well-known/openid-configuration"):
        r = client.get(path, headers=origin)
        assert r.headers["Access-Control-Allow-Origin"] in ("https://app.example.org", "*"), path
    r = client.post("/oauth/token", data={"grant_type": "nope"}, headers=origin)
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
    pre = client.options("/fhir/Patient", headers={**origin, "Access-Control-Request-Method": "GET",
                                                   "Access-Control-Request-Headers": "authorization"})
    assert pre.status_code in (200, 204)
    assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()


def test_item05_cors_on_fhir_api(smart):
    pid = smart.patient()
    tok = smart.launch(smart.user(pid))
    r = smart.get(f"Patient/{pid}", tok["access_token"], headers={"Origin": "https://app.example.org"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example.org"


def test_item06_metadata_oauth_uris_match_well_known(client):
    cs = client.get("/fhir/metadata").get_json()
    sec = cs["rest"][0]["security"]
    assert sec["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    ext = next(e for e in sec["extension"]
               if e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris")
    uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
    doc = client.get("/fhir/.well-known/smart-configuration").get_json()
    assert uris["authorize"] == doc["authorization_endpoint"] and uris["token"] == doc["token_endpoint"]
    assert uris["introspect"] == doc["introspection_endpoint"] and uris["revoke"] == doc["revocation_endpoint"]
    assert uris["manage"] == doc["management_endpoint"] and uris["register"] == doc["registration_endpoint"]


def test_item06_metadata_parses_with_python_fhirclient(client):
    from fhirclient.models.capabilitystatement import CapabilityStatement
    cs = CapabilityStatement(client.get("/fhir/metadata").get_json())
    assert cs.rest[0].security.extension[0].extension[0].url == "authorize"


def test_item32_openid_configuration(client):
    r = client.get("/.well-known/openid-configuration")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    doc = r.get_json()
    for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "response_types_supported",
                 "subject_types_supported"):
        assert doc[name]
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    smart_doc = client.get("/fhir/.well-known/smart-configuration").get_json()
    assert doc["issuer"] == smart_doc["issuer"]
    assert client.get(doc["issuer"].removeprefix("http://localhost") + "/.well-known/openid-configuration") \
        .status_code == 200


def test_item33_jwks_has_an_rsa_key_kept_in_the_instance_folder(app, client):
    from joserfc import jwk
    keys = client.get("/oauth/jwks").get_json()["keys"]
    rsa = [k for k in keys if k["kty"] == "RSA"]
    assert rsa and rsa[0]["kid"] and rsa[0]["alg"] == "RS256"
    jwk.import_key(rsa[0])
    path = Path(app.config["INSTANCE_DIR"]) / "oauth_signing_key.pem"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    from carespace import create_app
    again = create_app({**{k: app.config[k] for k in ("INSTANCE_DIR", "DATABASE_URL", "BASE_URL", "SECRET_KEY")},
                        "TESTING": True})
    try:
        assert again.test_client().get("/oauth/jwks").get_json()["keys"][0]["kid"] == rsa[0]["kid"]
    finally:
        close_app(again)


def test_smart_style_url_is_public_json(client):
    r = client.get("/oauth/smart-style.json")
    assert r.status_code == 200 and r.is_json and "color_background" in r.get_json()


def test_registration_endpoint_hidden_when_switched_off(tmp_path, backend, pg_cluster):
    from tests.conftest import _new_db_url, make_app
    app = make_app(_new_db_url(backend, pg_cluster, tmp_path), tmp_path / "i", DYNAMIC_CLIENT_REGISTRATION=False)
    c = app.test_client()
    assert "registration_endpoint" not in c.get("/fhir/.well-known/smart-configuration").get_json()
    assert c.post("/oauth/register", json={"redirect_uris": ["https://a.example/cb"]}).status_code == 403
    close_app(app)
