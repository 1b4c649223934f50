"""Checklist C (15-18), D (19-24), F (27-30), G (31, 34-36) and I (44-50): the token endpoint."""
from __future__ import annotations

import uuid

from joserfc import jwk, jwt

from tests.support.smart import REDIRECT, basic

FULL = "launch/patient openid fhirUser offline_access patient/*.rs"


def _ready(smart, kind="public", scope=FULL):
    pid = smart.patient()
    user = smart.user(pid)
    client_id, secret = smart.register(kind)
    smart.login(user)
    return pid, user, client_id, secret, smart.code(client_id, scope)


def test_item15_item16_confidential_basic_exchange_and_headers(smart):
    pid, user, client_id, secret, code = _ready(smart, "secret")
    r = smart.exchange(client_id, code, secret)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Pragma"] == "no-cache"


def test_item15_python_fhirclient_style_basic_plus_body_client_id_and_state(smart):
    pid, user, client_id, secret, code = _ready(smart, "secret")
    r = smart.exchange(client_id, code, secret, client_id=client_id, state="ignored")
    assert r.status_code == 200


def test_item17_pkce_failures(smart):
    pid, user, client_id, secret, _ = _ready(smart, "secret")
    for verifier in (None, "", "x" * 50):
        code = smart.code(client_id)
        r = smart.exchange(client_id, code, secret, code_verifier=verifier)
        assert r.status_code == 400, verifier
    code = smart.code(client_id)
    from tests.support.smart import pkce
    _, challenge = pkce()
    smart_challenge = smart.verifier  # the verifier of this code
    assert smart.exchange(client_id, code, secret, code_verifier=challenge).status_code == 400  # "plain"
    assert smart_challenge


def test_item18_redirect_uri_and_client_binding(smart):
    pid, user, client_id, secret, code = _ready(smart)
    other_id, _ = smart.register()
    assert smart.exchange(client_id, code, redirect_uri=REDIRECT + "x").status_code == 400
    code = smart.code(client_id)
    r = smart.exchange(other_id, code)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"


def test_item18_code_reuse_revokes_tokens_it_issued(smart):
    pid, user, client_id, secret, code = _ready(smart)
    tok = smart.exchange(client_id, code).get_json()
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 200
    assert smart.exchange(client_id, code).status_code == 400
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 401


def test_item18_expired_code(smart, monkeypatch):
    pid, user, client_id, secret, code = _ready(smart)
    from smart_auth.oauth import repository
    real = repository.now
    monkeypatch.setattr(repository, "now", lambda: real() + 120)
    r = smart.exchange(client_id, code)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"


def test_item19_to_item23_token_body(smart):
    pid, user, client_id, secret, code = _ready(smart)
    tok = smart.exchange(client_id, code).get_json()
    for name in ("access_token", "token_type", "scope", "refresh_token", "id_token"):
        assert isinstance(tok[name], str) and tok[name]
    assert isinstance(tok["expires_in"], int) and tok["token_type"].lower() == "bearer"
    assert "openid fhirUser launch/patient offline_access" in " ".join(
        s for s in tok["scope"].split() if s in ("openid", "fhirUser", "launch/patient", "offline_access")) or \
        {"openid", "fhirUser", "launch/patient", "offline_access"} <= set(tok["scope"].split())
    assert tok["scope"] == FULL
    assert tok["patient"] == pid
    assert smart.get(f"Patient/{pid}", tok["access_token"]).get_json()["resourceType"] == "Patient"
    r = smart.get(f"Patient/{pid}", None)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")


def test_item20_v1_scopes_granted_as_requested(smart):
    scope = "launch/patient openid fhirUser offline_access patient/Patient.read patient/Observation.read"
    pid, user, client_id, secret, code = _ready(smart, scope=scope)
    tok = smart.exchange(client_id, code).get_json()
    assert tok["scope"] == scope
    assert smart.get(f"Observation?patient={pid}", tok["access_token"]).status_code == 200


def test_item24_need_patient_banner_and_style(smart):
    pid, user, client_id, secret, code = _ready(smart)
    tok = smart.exchange(client_id, code).get_json()
    assert tok["need_patient_banner"] is True
    r = smart.client.get(tok["smart_style_url"].removeprefix("http://localhost"))
    assert r.status_code == 200 and r.is_json


def test_item27_item28_refresh_twice_and_rotation(smart):
    pid, user, client_id, secret, code = _ready(smart, "secret")
    tok = smart.exchange(client_id, code, secret).get_json()
    r1 = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
                           headers=basic(client_id, secret))
    assert r1.status_code == 200 and r1.headers["Cache-Control"] == "no-store" and r1.headers["Pragma"] == "no-cache"
    t1 = r1.get_json()
    assert set(t1["scope"].split()) <= set(tok["scope"].split()) and isinstance(t1["expires_in"], int)
    r2 = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": t1["refresh_token"],
                                                 "scope": tok["scope"]}, headers=basic(client_id, secret))
    assert r2.status_code == 200
    t2 = r2.get_json()
    assert smart.get(f"Patient/{pid}", t2["access_token"]).status_code == 200
    old = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
                            headers=basic(client_id, secret))
    assert old.status_code == 400  # rotated away


def test_item27_public_refresh_without_client_id(smart):
    pid, user, client_id, secret, code = _ready(smart)
    tok = smart.exchange(client_id, code).get_json()
    r = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert r.status_code == 200, r.get_json()
    r = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "client_id": client_id,
                                                "refresh_token": r.get_json()["refresh_token"]})
    assert r.status_code == 200


def test_item29_bogus_refresh_token(smart):
    pid, user, client_id, secret, code = _ready(smart, "secret")
    r = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": str(uuid.uuid4())},
                          headers=basic(client_id, secret))
    assert r.status_code == 400
    r = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": str(uuid.uuid4())})
    assert r.status_code == 400


def test_item30_refresh_bound_to_client_narrowing_ok_widening_refused(smart):
    pid, user, client_id, secret, code = _ready(smart, "secret")
    tok = smart.exchange(client_id, code, secret).get_json()
    other_id, other_secret = smart.register("secret")
    stolen = smart.client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                     "refresh_token": tok["refresh_token"]},
                               headers=basic(other_id, other_secret))
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "invalid_grant"
    wide = smart.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                                   "scope": "patient/*.cruds"}, headers=basic(client_id, secret))
    assert wide.status_code == 400 and wide.get_json()["error"] == "invalid_scope"
    narrow = smart.client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                     "refresh_token": tok["refresh_token"],
                                                     "scope": "patient/Observation.rs offline_access"},
                               headers=basic(client_id, secret))
    assert narrow.status_code == 200 and narrow.get_json()["scope"] == "patient/Observation.rs offline_access"
    nt = narrow.get_json()["access_token"]
    assert smart.get(f"Patient/{pid}", nt).status_code == 403
    from smart_auth.oauth.server import OFFLINE_TTL_S
    assert OFFLINE_TTL_S >= 90 * 24 * 3600


def test_online_access_refresh(smart):
    pid, user, client_id, secret, code = _ready(smart, scope="launch/patient online_access patient/*.rs")
    tok = smart.exchange(client_id, code).get_json()
    assert tok["refresh_token"]


def test_item31_item34_item35_item36_id_token(smart):
    pid, user, client_id, secret, code = _ready(smart)
    tok = smart.exchange(client_id, code).get_json()
    conf = smart.client.get("/.well-known/openid-configuration").get_json()
    keys = jwk.KeySet.import_key_set(smart.client.get(conf["jwks_uri"].removeprefix("http://localhost")).get_json())
    decoded = jwt.decode(tok["id_token"], keys, algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256" and decoded.header["kid"] == keys.keys[0].kid
    c = decoded.claims
    assert c["iss"] == conf["issuer"] and c["aud"] == client_id and c["exp"] > c["iat"]
    assert c["sub"] and len(c["sub"]) < 256 and "nonce" not in c
    assert c["fhirUser"].endswith(f"/Patient/{pid}")
    path = c["fhirUser"].split("/fhir/", 1)[1]
    assert smart.get(path, tok["access_token"]).get_json()["resourceType"] == "Patient"


def test_item36_staff_fhir_user_is_practitioner(smart):
    pid = smart.patient()
    prac = smart.fhir.create(smart.sys, "Practitioner", {"resourceType": "Practitioner",
                                                         "name": [{"family": "Welby"}]}).stored.id
    staff = smart.user(None, role="staff", fhir_user=f"Practitioner/{prac}")
    client_id, _ = smart.register()
    smart.login(staff)
    code = smart.code(client_id, "openid fhirUser user/*.rs")
    tok = smart.exchange(client_id, code).get_json()
    claims = jwt.decode(tok["id_token"], jwk.KeySet.import_key_set(smart.client.get("/oauth/jwks").get_json())).claims
    assert claims["fhirUser"].endswith(f"Practitioner/{prac}")
    assert smart.get(f"Practitioner/{prac}", tok["access_token"]).status_code == 200
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 200  # staff: user/ reaches every record


def test_item44_bad_code_is_exactly_400(smart):
    pid, user, client_id, secret, code = _ready(smart, "secret")
    r = smart.client.post("/oauth/token", data={"grant_type": "authorization_code", "code": "BAD_CODE",
                                                "redirect_uri": REDIRECT}, headers=basic(client_id, secret))
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"
    assert r.headers["Cache-Control"] == "no-store"


def test_item45_bad_client_id(smart):
    pid, user, client_id, secret, code = _ready(smart, "secret")
    r = smart.client.post("/oauth/token", data={"grant_type": "authorization_code", "code": code,
                                                "redirect_uri": REDIRECT, "code_verifier": smart.verifier},
                          headers=basic("BAD_CLIENT_ID", secret))
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_client"
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = smart.client.post("/oauth/token", data={"grant_type": "authorization_code", "code": code,
                                                "redirect_uri": REDIRECT, "client_id": "BAD_CLIENT_ID"})
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_client"


def test_item47_unknown_grant_type_is_exactly_400(smart):
    r = smart.client.post("/oauth/token", data={"grant_type": "password", "username": "x"})
    assert r.status_code == 400 and r.get_json()["error"] == "unsupported_grant_type"


def test_item50_missing_code_and_audit(smart):
    pid, user, client_id, secret, code = _ready(smart, "secret")
    assert smart.exchange(client_id, code, secret).status_code == 200
    r = smart.client.post("/oauth/token", data={"grant_type": "authorization_code"}, headers=basic(client_id, secret))
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_request"
    _, page = smart.fhir.search(smart.sys, "AuditEvent", [("_count", "200")])
    subtypes = [__import__("json").loads(x)["subtype"][0]["code"] for _, _, x in page.matches]
    assert "token-issued" in subtypes and "token-refused" in subtypes
