"""Checklist H (items 37-42): every FHIR request is checked against the token: 401 without a valid
token, the patient compartment, granted types and permissions, category filters, _include,
_revinclude, $everything and Bundle entries."""
from __future__ import annotations

from sqlalchemy import update

from tests.support.smart import OBS_CAT, two_patients


def _ids(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {(e["resource"]["resourceType"], e["resource"]["id"]) for e in resp.get_json().get("entry", [])}


def test_item37_missing_invalid_expired_tokens_are_401(smart, monkeypatch):
    mine, other, own_obs, _, at = two_patients(smart)
    r = smart.get(f"Patient/{mine}", None)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.get_json()["resourceType"] == "OperationOutcome"
    r = smart.get(f"Patient/{mine}", "not-a-token")
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    r = smart.client.get(f"/fhir/Patient/{mine}", headers={"Authorization": f"Basic {at}"})
    assert r.status_code == 401
    from smart_auth.oauth import repository
    real = repository.now
    monkeypatch.setattr(repository, "now", lambda: real() + 3700)
    r = smart.get(f"Patient/{mine}", at)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_item38_token_audience_must_be_this_server(smart, app):
    from smart_auth.oauth.models import OAuthToken
    mine, other, own_obs, _, at = two_patients(smart)
    assert smart.get(f"Patient/{mine}", at).status_code == 200
    with app.extensions["carespace.sessions"]() as s:
        s.execute(update(OAuthToken).values(aud="https://elsewhere.example.org/fhir"))
        s.commit()
    assert smart.get(f"Patient/{mine}", at).status_code == 401


def test_item39_patient_compartment_reads_and_searches(smart):
    mine, other, own_obs, other_obs, at = two_patients(smart)
    assert smart.get(f"Observation/{own_obs}", at).status_code == 200
    assert smart.get(f"Observation/{other_obs}", at).status_code == 404
    assert smart.get(f"Patient/{other}", at).status_code == 404
    assert _ids(smart.get("Observation", at)) == {("Observation", own_obs)}
    assert _ids(smart.get(f"Observation?patient={mine}", at)) == _ids(smart.get(f"Observation?patient=Patient/{mine}",
                                                                                 at))
    assert _ids(smart.get(f"Observation?patient={other}", at)) == set()
    assert _ids(smart.get("Patient", at)) == {("Patient", mine)}
    post = smart.client.post("/fhir/Observation/_search", data={"patient": mine},
                             headers={"Authorization": f"Bearer {at}"})
    assert _ids(post) == {("Observation", own_obs)}


def test_item39_include_revinclude_everything_and_bundles(smart):
    mine, other, own_obs, other_obs, at = two_patients(smart)
    cross = smart.fhir.create(smart.sys, "Observation", {
        "resourceType": "Observation", "status": "final", "code": {"text": "note"},
        "subject": {"reference": f"Patient/{mine}"}, "performer": [{"reference": f"Patient/{other}"}]}).stored.id
    ids = _ids(smart.get(f"Observation?_id={cross}&_include=Observation:performer", at))
    assert ("Patient", other) not in ids and ("Observation", cross) in ids
    ids = _ids(smart.get(f"Patient?_id={mine}&_revinclude=Observation:subject", at))
    assert ("Observation", own_obs) in ids and ("Observation", other_obs) not in ids
    ids = _ids(smart.get(f"Patient/{mine}/$everything", at))
    assert ("Observation", own_obs) in ids and ("Patient", other) not in ids
    assert smart.get(f"Patient/{other}/$everything", at).status_code == 404
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{own_obs}"}},
        {"request": {"method": "GET", "url": f"Observation/{other_obs}"}}]}
    r = smart.client.post("/fhir", json=batch, headers={"Authorization": f"Bearer {at}"})
    statuses = [e["response"]["status"] for e in r.get_json()["entry"]]
    assert statuses[0].startswith("200") and statuses[1][:3] in ("403", "404")


def test_item39_write_permissions(smart):
    mine, other, own_obs, other_obs, at = two_patients(smart)
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{mine}"}}
    h = {"Authorization": f"Bearer {at}"}
    assert smart.client.post("/fhir/Observation", json=body, headers=h).status_code == 403  # .rs only
    tok = smart.launch(smart.user(smart.patient("Writer")), "launch/patient patient/Observation.cruds")
    h = {"Authorization": f"Bearer {tok['access_token']}"}
    writer = tok["patient"]
    ok = dict(body, subject={"reference": f"Patient/{writer}"})
    assert smart.client.post("/fhir/Observation", json=ok, headers=h).status_code == 201
    assert smart.client.post("/fhir/Observation", json=body, headers=h).status_code == 403
    assert smart.client.get("/fhir/Observation/_history", headers=h).status_code == 403


def test_item40_denied_types_are_403(smart):
    mine, other, own_obs, _, at = two_patients(smart, "launch/patient patient/Patient.rs patient/Condition.rs")
    r = smart.get(f"Observation?patient={mine}", at)
    assert r.status_code == 403 and r.get_json()["resourceType"] == "OperationOutcome"
    assert smart.get(f"Observation/{own_obs}", at).status_code == 403
    assert smart.get(f"Condition?patient={mine}", at).status_code == 200


def test_item41_v1_read_scope(smart):
    mine, other, own_obs, _, at = two_patients(smart, "launch/patient patient/Observation.read patient/Patient.read")
    assert _ids(smart.get(f"Observation?patient={mine}", at)) == {("Observation", own_obs)}


def test_item42_category_scope_filters_reads_and_searches(smart):
    mine = smart.patient()
    lab, vital = smart.observation(mine, "laboratory"), smart.observation(mine, "vital-signs", "8867-4")
    multi = smart.fhir.create(smart.sys, "Observation", {
        "resourceType": "Observation", "status": "final", "code": {"text": "both"},
        "subject": {"reference": f"Patient/{mine}"},
        "category": [{"coding": [{"system": OBS_CAT, "code": "survey"}]},
                     {"coding": [{"system": OBS_CAT, "code": "laboratory"}]}]}).stored.id
    scope = f"launch/patient patient/Patient.rs patient/Observation.rs?category={OBS_CAT}|laboratory"
    at = smart.launch(smart.user(mine), scope)["access_token"]
    assert _ids(smart.get(f"Observation?patient={mine}", at)) == {("Observation", lab), ("Observation", multi)}
    assert _ids(smart.get(f"Observation?patient={mine}&category=vital-signs", at)) == set()
    assert smart.get(f"Observation/{lab}", at).status_code == 200
    assert smart.get(f"Observation/{vital}", at).status_code == 403


def test_user_scopes_of_a_patient_reach_only_their_patients(smart):
    mine, child, stranger = smart.patient("Mine"), smart.patient("Child"), smart.patient("Stranger")
    obs = {p: smart.observation(p) for p in (mine, child, stranger)}
    user = smart.user(mine)
    smart.proxy(user, child)
    smart.login(user)
    client_id, _ = smart.register()
    tok = smart.exchange(client_id, smart.code(client_id, "openid fhirUser user/*.rs")).get_json()
    at = tok["access_token"]
    assert "patient" not in tok
    assert _ids(smart.get("Observation", at)) == {("Observation", obs[mine]), ("Observation", obs[child])}
    assert smart.get(f"Patient/{stranger}", at).status_code == 404
    assert smart.client.get("/fhir/Observation/_history", headers={"Authorization": f"Bearer {at}"}).status_code == 403


def test_every_fhir_access_is_audited_with_the_app(smart):
    import json
    mine, other, own_obs, _, at = two_patients(smart)
    smart.get(f"Observation/{own_obs}", at)
    _, page = smart.fhir.search(smart.sys, "AuditEvent", [("_count", "500")])
    events = [json.loads(x) for _, _, x in page.matches]
    reads = [e for e in events if e["subtype"][0]["code"] == "read"]
    assert any(a.get("who", {}).get("identifier", {}).get("system") == "urn:carespace:client"
               for e in reads for a in e["agent"])
