"""Checklist item 22 and capability `context-ehr-encounter`: an EHR launch from Connected apps binds the
patient's most recent Encounter, returned as `encounter` (also after refresh) and readable with the token."""
from __future__ import annotations

import re

from tests.support.smart import FHIR_BASE, basic, query

LAUNCH_URI = "https://app.example.org/launch"


def _encounter(smart, pid: str, start: str) -> str:
    body = {"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{pid}"}, "period": {"start": start, "end": start}}
    return str(smart.fhir.create(smart.sys, "Encounter", body).stored.id)


def _ehr_launch(smart, user, client_id: str, secret: str | None, scope: str, patient_id: str | None = None):
    """Launch the app from Connected apps, authorize with the handle and exchange the code."""
    smart.login(user)
    page = smart.client.get("/apps").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"client_id": client_id, "csrf_token": csrf, **({"patient_id": patient_id} if patient_id else {})}
    r = smart.client.post("/apps/launch", data=form)
    q = query(r.headers["Location"])
    assert r.headers["Location"].startswith(LAUNCH_URI) and q["iss"] == FHIR_BASE and q["launch"]
    resp = smart.authorize(client_id, scope, launch=q["launch"])
    if resp.status_code == 200:
        resp = smart.approve(resp)
    tok = smart.exchange(client_id, query(resp.headers["Location"])["code"], secret)
    assert tok.status_code == 200, tok.get_data(as_text=True)
    return tok.get_json()


def _refresh(smart, client_id: str, rt: str, secret: str | None = None):
    data = {"grant_type": "refresh_token", "refresh_token": rt}
    headers = basic(client_id, secret) if secret else {}
    if not secret:
        data["client_id"] = client_id
    r = smart.client.post("/oauth/token", data=data, headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_item22_ehr_launch_returns_latest_encounter_readable_and_kept_on_refresh(smart):
    pid = smart.patient()
    latest = _encounter(smart, pid, "2024-06-01T09:00:00Z")
    older = _encounter(smart, pid, "2021-03-04T10:00:00Z")  # created last, but an earlier visit
    _encounter(smart, smart.patient("Other"), "2025-01-01T09:00:00Z")  # another patient's, newer: not bound
    user = smart.user(pid)
    client_id, _ = smart.register(launch_uri=LAUNCH_URI, name="Visit App")
    tok = _ehr_launch(smart, user, client_id, None, "launch openid fhirUser offline_access patient/*.rs")
    assert tok["patient"] == pid and tok["encounter"] == latest != older
    assert smart.get(f"Encounter/{tok['encounter']}", tok["access_token"]).status_code == 200
    intro = smart.client.post("/oauth/introspect", data={"token": tok["access_token"]},
                              headers={"Authorization": f"Bearer {tok['access_token']}"}).get_json()
    assert intro["active"] is True and intro["patient"] == pid and intro["encounter"] == latest
    new = _refresh(smart, client_id, tok["refresh_token"])
    assert new["patient"] == pid and new["encounter"] == latest
    assert smart.get(f"Encounter/{latest}", new["access_token"]).status_code == 200


def test_item22_practitioner_ehr_launch_user_scopes_read_encounter(smart):
    pid = smart.patient()
    enc = _encounter(smart, pid, "2023-02-02T08:00:00Z")
    prac = smart.fhir.create(smart.sys, "Practitioner", {"resourceType": "Practitioner"}).stored.id
    staff = smart.user(None, role="staff", fhir_user=f"Practitioner/{prac}")
    client_id, secret = smart.register("secret", launch_uri=LAUNCH_URI, name="Clinician App")
    tok = _ehr_launch(smart, staff, client_id, secret, "launch openid fhirUser offline_access user/Encounter.rs "
                      "user/Patient.rs", patient_id=pid)
    assert tok["patient"] == pid and tok["encounter"] == enc
    assert smart.get(f"Encounter/{enc}", tok["access_token"]).status_code == 200
    assert _refresh(smart, client_id, tok["refresh_token"], secret)["encounter"] == enc


def test_item22_no_encounter_omits_the_key(smart):
    pid = smart.patient()
    client_id, _ = smart.register(launch_uri=LAUNCH_URI, name="Visit App")
    tok = _ehr_launch(smart, smart.user(pid), client_id, None, "launch openid fhirUser offline_access patient/*.rs")
    assert tok["patient"] == pid and "encounter" not in tok
    assert "encounter" not in _refresh(smart, client_id, tok["refresh_token"])


def test_item22_standalone_launch_has_no_encounter(smart):
    pid = smart.patient()
    _encounter(smart, pid, "2024-06-01T09:00:00Z")
    tok = smart.launch(smart.user(pid), "launch/patient launch/encounter openid fhirUser offline_access patient/*.rs")
    assert tok["patient"] == pid and "encounter" not in tok


def test_capability_context_ehr_encounter_advertised(smart):
    caps = smart.client.get("/fhir/.well-known/smart-configuration").get_json()["capabilities"]
    assert "context-ehr-encounter" in caps and "context-ehr-patient" in caps
    assert "context-standalone-encounter" not in caps
