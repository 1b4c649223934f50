"""Every reproduction of the access-control report (issue 11), as a hostile patient would send it.

Alex signs in, registers an app of her own at /oauth/register and approves it with patient/*.cruds;
Sam is another patient of the practice. Each test is one reported path and fails if it opens again.
"""
from __future__ import annotations

from typing import Any

import pytest

from fhir_server.access.context import AccessContext
from tests.support import access_world as aw
from tests.support.fhirapi import matches, ok
from tests.support.smart import REDIRECT

CRUDS = "launch/patient openid fhirUser patient/*.cruds"


class Caller:
    """Alex's app: HTTP requests with her bearer token."""

    def __init__(self, client: Any, token: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> Any:
        return self.client.get(f"/fhir/{path}", headers=self.headers)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(f"/fhir/{path}".rstrip("/"), json=body, headers=self.headers)

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.put(f"/fhir/{path}", json=body, headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(f"/fhir/{path}", headers=self.headers)


def _app_of(smart: Any, user: Any, scope: str) -> str:
    """A public app registered by RFC 7591 dynamic registration, approved by `user` for `scope`."""
    reg = smart.client.post("/oauth/register", json={
        "client_name": "Alex's own app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], "scope": scope})
    assert reg.status_code == 201, reg.get_data(as_text=True)
    client_id = reg.get_json()["client_id"]
    smart.login(user)
    resp = smart.exchange(client_id, smart.code(client_id, scope))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert set(resp.get_json()["scope"].split()) >= set(scope.split())
    return str(resp.get_json()["access_token"])


@pytest.fixture
def world(fhir: Any) -> aw.World:
    return aw.build(fhir)


@pytest.fixture
def alex(smart: Any, world: aw.World) -> Caller:
    return Caller(smart.client, _app_of(smart, smart.user(world.alex), CRUDS))


def _trusted(fhir: Any, rtype: str, fid: str) -> dict[str, Any]:
    return fhir.read(aw.SYS, rtype, fid).json()  # type: ignore[no-any-return]


def _ids(bundle: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle.get("entry", [])}


# ---- 1. other patients' documents ----
def test_1_a_pointer_alex_writes_releases_no_binary(alex: Caller, fhir: Any, world: aw.World) -> None:
    created = alex.post("DocumentReference", {
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": "Patient/alex"},
        "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/bin-sam-psych"}}]})
    assert created.status_code == 201  # her own record may hold any pointer: refusing it would be an oracle
    assert alex.get("Binary/bin-sam-psych").status_code == 404
    assert alex.put("Binary/bin-sam-psych", {"resourceType": "Binary", "id": "bin-sam-psych",
                                             "contentType": "text/plain", "data": "b3ducmQ="}).status_code == 404
    assert alex.delete("Binary/bin-sam-letter").status_code == 404
    assert _trusted(fhir, "Binary", "bin-sam-psych")["data"] == aw._b64("Sam's psychiatry note")
    assert _trusted(fhir, "Binary", "bin-sam-letter")["id"] == "bin-sam-letter"
    assert ok(alex.get("Binary/bin-alex-doc"))["data"] == aw._b64("Alex's visit summary")
    assert _ids(ok(alex.get("Binary"))) == {("Binary", "bin-alex-doc")}


def test_1_the_portal_serves_no_binary_through_a_pointer_alex_wrote(alex: Caller, smart: Any, client: Any) -> None:
    doc = ok(alex.post("DocumentReference", {
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": "Patient/alex"},
        "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/bin-sam-psych"}}]}), 201)
    page = client.get(f"/health/documents/{doc['id']}")
    assert page.status_code == 404 and "psychiatry" not in page.get_data(as_text=True)
    raw = client.get(f"/health/documents/{doc['id']}/content")
    assert raw.status_code == 404 and b"psychiatry" not in raw.get_data()


def test_1_has_on_documents_is_no_prefix_oracle(alex: Caller) -> None:
    probe = "Practitioner?_id=chen&_has:DocumentReference:author:location:below="
    assert _ids(ok(alex.get(probe + "Binary/bin-sam"))) == set()
    assert _ids(ok(alex.get(probe + "Binary/bin-alex"))) == {("Practitioner", "chen")}  # her own documents count


# ---- 2. writes into another patient's record ----
def test_2_writes_naming_another_patient_are_refused(alex: Caller, fhir: Any) -> None:
    forged = alex.post("Communication", {
        "resourceType": "Communication", "status": "completed", "subject": {"reference": "Patient/sam"},
        "sender": {"reference": "Practitioner/chen"}, "recipient": [{"reference": "Patient/alex"}],
        "payload": [{"contentString": "Please call"}]})
    assert forged.status_code == 403
    glucose = alex.post("Observation", aw.observation("x", "sam", value=999) | {"performer": [
        {"reference": "Patient/alex"}]})
    assert glucose.status_code == 403
    _, page = fhir.search(aw.SYS, "Observation", [("subject", "Patient/sam"), ("code", aw.GLUCOSE)])
    assert sorted(m[1] for m in page.matches) == ["sam-derived", "sam-glucose"]
    moved = alex.put("Observation/alex-glucose", aw.observation("alex-glucose", "sam"))
    assert moved.status_code == 403
    assert _trusted(fhir, "Observation", "alex-glucose")["subject"]["reference"] == "Patient/alex"


# ---- 3. shared practice data ----
def test_3_patient_tokens_cannot_write_shared_practice_data(alex: Caller, fhir: Any) -> None:
    renamed = {"resourceType": "Practitioner", "id": "chen", "name": [{"family": "Mallory"}]}
    assert alex.put("Practitioner/chen", renamed).status_code == 403
    assert alex.post("Organization", {"resourceType": "Organization", "name": "Fake"}).status_code == 403
    assert alex.delete("Location/loc").status_code == 403
    assert _trusted(fhir, "Practitioner", "chen")["name"][0]["family"] == "Chen"
    assert _trusted(fhir, "Location", "loc")["name"] == "Riverside clinic"
    assert ok(alex.get("Practitioner/chen"))["id"] == "chen"  # still readable: her clinician


def test_3_a_refused_delete_names_no_other_patients_resources(alex: Caller, fhir: Any) -> None:
    fhir.update(aw.SYS, "Observation", "sam-derived", aw.observation("sam-derived", "sam", value=250.0) | {
        "derivedFrom": [{"reference": "Observation/alex-glucose"}]})
    refused = alex.delete("Observation/alex-glucose")
    assert refused.status_code == 409
    assert "sam" not in refused.get_data(as_text=True)


# ---- 4. history and versions ----
def test_4_history_of_another_patients_deleted_resource(alex: Caller, fhir: Any) -> None:
    aw.put(fhir, aw.observation("sam-old", "sam"))
    fhir.delete(aw.SYS, "Observation", "sam-old")
    assert alex.get("Observation/sam-old/_history").status_code == 404
    assert alex.get("Observation/sam-old/_history/1").status_code == 404
    assert alex.get("Observation/sam-old").status_code == 404  # not even 410: its existence is Sam's


def test_4_versions_are_judged_by_their_own_content(alex: Caller, fhir: Any) -> None:
    aw.put(fhir, aw.observation("moved", "sam", value=42.0))
    aw.put(fhir, aw.observation("moved", "alex", value=43.0))  # the practice refiles it under Alex
    assert alex.get("Observation/moved/_history/1").status_code == 404
    assert ok(alex.get("Observation/moved/_history/2"))["valueQuantity"]["value"] == 43.0
    versions = [e["resource"]["meta"]["versionId"] for e in ok(alex.get("Observation/moved/_history"))["entry"]]
    assert versions == ["2"]


# ---- 5. yes/no oracles across records and scopes ----
def test_5_has_is_confined_to_the_callers_compartment(alex: Caller) -> None:
    assert _ids(ok(alex.get("Practitioner?_has:Encounter:practitioner:patient=sam"))) == set()
    assert _ids(ok(alex.get("Practitioner?_has:Encounter:practitioner:patient=alex"))) == {("Practitioner", "chen")}


def test_5_inner_queries_need_their_own_scopes(smart: Any, world: aw.World) -> None:
    user = smart.user(world.alex)
    patient_only = Caller(smart.client, _app_of(smart, user, "launch/patient openid fhirUser patient/Patient.rs"))
    assert patient_only.get(f"Patient?_has:Condition:subject:code={aw.HIV}").status_code == 403
    labs = Caller(smart.client, _app_of(
        smart, user, f"launch/patient openid fhirUser patient/Observation.rs?category={aw.OBS_CAT}|laboratory"))
    assert labs.get("Observation?_has:Condition:evidence-detail:code=7200002").status_code == 403
    assert labs.get("Observation?subject:Patient.birthdate=1985-05-05").status_code == 403
    assert labs.get(f"Observation?code={aw.GLUCOSE}").status_code == 200


def test_5_chains_are_confined_to_the_callers_compartment(alex: Caller) -> None:
    for oid, source in (("from-sam", "sam-derived"), ("from-own", "alex-glucose")):
        ok(alex.put(f"Observation/{oid}", aw.observation(oid, "alex") | {
            "derivedFrom": [{"reference": f"Observation/{source}"}]}), 201)
    assert _ids(ok(alex.get("Observation?derived-from:Observation.value-quantity=gt200"))) == set()
    assert _ids(ok(alex.get("Observation?derived-from:Observation.value-quantity=gt1"))) == {("Observation", "from-own")}


# ---- 6. audit ----
def _events(app: Any, fhir: Any, patient: str) -> list[dict[str, Any]]:
    app.extensions["audit_log"].flush()
    _, page = fhir.search(aw.SYS, "AuditEvent", [("patient", f"Patient/{patient}"), ("_count", "500")])
    return [__import__("json").loads(text) for _, _, text in page.matches]


def _named(events: list[dict[str, Any]]) -> set[str]:
    return {(e.get("what") or {}).get("reference", "") for ev in events for e in ev.get("entity", [])}


def test_6_every_access_is_audited_per_patient_with_every_resource(alex: Caller, app: Any, fhir: Any) -> None:
    for n in range(30):
        aw.put(fhir, aw.observation(f"alex-many-{n}", "alex", value=float(n)))
    ok(alex.get("Observation?_count=100"))
    ok(alex.get("Observation/alex-glucose/_history"))
    ok(alex.get("Encounter?_id=alex-visit&_include=Encounter:practitioner"))
    ok(alex.get("Patient/alex/$everything"))
    ok(alex.post("", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Condition/alex-asthma"}},
        {"request": {"method": "GET", "url": "Observation?code=8480-6"}}]}))
    events = _events(app, fhir, "alex")
    named = _named(events)
    assert {f"Observation/alex-many-{n}" for n in range(30)} <= named  # past the first page of 20
    assert {"Practitioner/chen", "Condition/alex-asthma", "Observation/alex-bp", "DocumentReference/alex-doc"} - named == set()
    subtypes = {c["code"] for ev in events for c in ev.get("subtype", [])}
    assert {"search", "history", "read"} <= subtypes
    assert not any("sam" in ref for ref in named)


def test_6_staff_and_backend_reads_reach_the_patients_access_log(smart: Any, app: Any, fhir: Any,
                                                                  world: aw.World) -> None:
    staff = smart.user(None, role="staff", fhir_user="Practitioner/chen")
    token = _app_of(smart, staff, "openid fhirUser user/*.rs")
    staff_app = Caller(smart.client, token)
    assert {i for _, i in _ids(ok(staff_app.get(f"Observation?code={aw.GLUCOSE}")))} >= {"sam-glucose", "alex-glucose"}
    backend = AccessContext.from_scopes(["system/*.rs"], client_id="practice-ehr")
    fhir.read(backend, "Condition", "sam-hiv")
    sam_events = _events(app, fhir, "sam")
    assert "Observation/sam-glucose" in _named(sam_events)
    assert "Condition/sam-hiv" in _named(sam_events)
    assert not _named(sam_events) & {"Observation/alex-glucose"}  # one event per patient: never another's ids
    assert any(ag.get("who", {}).get("reference") == "Practitioner/chen" for ev in sam_events for ag in ev["agent"])
    assert any(ag.get("who", {}).get("identifier", {}).get("value") == "practice-ehr"
               for ev in sam_events for ag in ev["agent"])


def test_6_an_attempt_on_another_patients_data_is_logged_under_the_caller(alex: Caller, app: Any, fhir: Any) -> None:
    assert alex.get("Binary/bin-sam-psych").status_code == 404
    ok(alex.get("Binary/bin-alex-doc"))
    assert "Binary/bin-alex-doc" in _named(_events(app, fhir, "alex"))
    assert "Binary/bin-sam-psych" not in _named(_events(app, fhir, "sam"))  # nothing of Sam's was released


def test_5_a_plain_search_returns_only_her_own(alex: Caller) -> None:
    assert [r["id"] for r in matches(ok(alex.get("Condition")))] == ["alex-asthma"]
