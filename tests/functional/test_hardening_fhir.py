"""Issue 16, the FHIR server's reproductions (items 1, 3, 4, 6 and 7's FHIR half), each a regression test.

Every test drives the API with a real bearer token from the authorization server (a SMART Backend Services
client for the `system/` scopes), as the independent clients that found the defects did.
"""
from __future__ import annotations

import json
from typing import Any

import pytest

from fhir_server.access.context import AccessContext
from fhir_server.errors import MethodNotAllowed
from tests.support.backend import backend_token
from tests.support.fhirapi import matches, ok

OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


class Caller:
    """A test client that sends one bearer token with every FHIR request."""

    def __init__(self, client: Any, token: str) -> None:
        self.client, self.token = client, token

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return getattr(self.client, method)(f"/fhir{path}", headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self("get", path, **kw)


def system_caller(smart: Any, scope: str = "system/*.*") -> Caller:
    """A backend-services client (private_key_jwt, client_credentials) holding `scope`."""
    return Caller(smart.client, backend_token(smart, scope))


def patient_caller(smart: Any, pid: str, scope: str = "launch/patient openid fhirUser patient/*.rs") -> Caller:
    return Caller(smart.client, smart.launch(smart.user(pid), scope)["access_token"])


def is_outcome(resp: Any, status: int) -> dict[str, Any]:
    body = ok(resp, status)
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error", body
    return body


def settle(smart: Any) -> None:
    """Write the queued access events (the server does so before any AuditEvent is read)."""
    smart.fhir.settle()


def audit_events_of(smart: Any, ref: str) -> list[dict[str, Any]]:
    settle(smart)
    _, page = smart.fhir.search(AccessContext.system("t"), "AuditEvent", [("entity", ref), ("_count", "100")])
    return [json.loads(text) for _, _, text in page.matches]


def count(smart: Any, rtype: str) -> int:
    _, page = smart.fhir.search(AccessContext.system("t"), rtype, [("_summary", "count")])
    return int(page.total or 0)


# ---- 1. DELETE is not held hostage by AuditEvents; AuditEvents are append-only ----
def test_1_delete_is_not_blocked_by_the_audit_events_of_the_resource(smart: Any) -> None:
    ehr = system_caller(smart)
    rid = ok(ehr("post", "/Basic", json={"resourceType": "Basic", "code": {"text": "x"}}), 201)["id"]
    ok(ehr.get(f"/Basic/{rid}"))
    assert audit_events_of(smart, f"Basic/{rid}"), "the create and the read are audited, referencing it"
    body = ok(ehr("delete", f"/Basic/{rid}"))
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "information"
    is_outcome(ehr.get(f"/Basic/{rid}"), 410)
    actions = [e["action"] for e in audit_events_of(smart, f"Basic/{rid}")]
    assert "D" in actions and "C" in actions, actions  # the audit trail still records what was deleted


def test_1_a_real_referrer_still_blocks_a_delete(smart: Any) -> None:
    ehr = system_caller(smart)
    pid = ok(ehr("post", "/Patient", json={"resourceType": "Patient"}), 201)["id"]
    oid = ok(ehr("post", "/Observation", json={"resourceType": "Observation", "status": "final",
                                               "code": {"text": "x"}, "subject": {"reference": f"Patient/{pid}"}}),
             201)["id"]
    settle(smart)
    body = is_outcome(ehr("delete", f"/Patient/{pid}"), 409)
    assert body["issue"][0]["diagnostics"].count(f"Observation/{oid}") == 1
    assert "AuditEvent" not in body["issue"][0]["diagnostics"]


def test_1_audit_events_are_append_only_for_every_client(smart: Any) -> None:
    ehr = system_caller(smart)
    pid = ok(ehr("post", "/Patient", json={"resourceType": "Patient"}), 201)["id"]
    event = audit_events_of(smart, f"Patient/{pid}")[0]
    aid = event["id"]
    forged = {**event, "outcome": "0", "agent": [{"who": {"display": "nobody"}, "requestor": True}]}
    is_outcome(ehr("put", f"/AuditEvent/{aid}", json=forged), 405)
    is_outcome(ehr("put", f"/AuditEvent/{pid}-new", json={**forged, "id": f"{pid}-new"}), 405)
    is_outcome(ehr("delete", f"/AuditEvent/{aid}"), 405)
    is_outcome(ehr("delete", f"/AuditEvent?_id={aid}"), 405)
    is_outcome(ehr("put", f"/AuditEvent?_id={aid}", json=forged), 405)
    for method, body in (("DELETE", None), ("PUT", forged)):
        tx = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"request": {"method": method, "url": f"AuditEvent/{aid}"}, **({"resource": body} if body else {})}]}
        is_outcome(ehr("post", "", json=tx), 405)
        batch = {**tx, "type": "batch"}
        reply = ok(ehr("post", "", json=batch))
        assert reply["entry"][0]["response"]["status"].startswith("405"), reply
    stored = ok(ehr.get(f"/AuditEvent/{aid}"))
    assert stored["meta"]["versionId"] == "1" and stored["agent"] == event["agent"]
    trusted = AccessContext.system("t")
    with pytest.raises(MethodNotAllowed):  # in-process callers too: the trail is append-only everywhere
        smart.fhir.delete(trusted, "AuditEvent", aid)
    with pytest.raises(MethodNotAllowed):
        smart.fhir.update(trusted, "AuditEvent", aid, forged)
    imported = {**forged, "id": "imported-1"}  # `carespace import` files an exported event under its own id
    smart.fhir.process_bundle(trusted, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": imported, "request": {"method": "PUT", "url": "AuditEvent/imported-1"}}]})
    assert ok(ehr.get("/AuditEvent/imported-1"))["meta"]["versionId"] == "1"
    with pytest.raises(MethodNotAllowed):
        smart.fhir.process_bundle(trusted, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": imported, "request": {"method": "PUT", "url": "AuditEvent/imported-1"}}]})


def test_1_capability_statement_lists_no_update_or_delete_of_audit_events(smart: Any) -> None:
    cs = ok(smart.client.get("/fhir/metadata"))
    audit = next(r for r in cs["rest"][0]["resource"] if r["type"] == "AuditEvent")
    codes = {i["code"] for i in audit["interaction"]}
    assert {"read", "vread", "create", "search-type", "history-instance", "history-type"} <= codes
    assert not codes & {"update", "delete", "patch"}
    assert audit["conditionalUpdate"] is False and audit["conditionalDelete"] == "not-supported"
    assert audit["updateCreate"] is False


# ---- 3. system-level interactions work for system tokens, as advertised ----
def test_3_system_history_and_search_answer_a_system_token(smart: Any) -> None:
    cs = ok(smart.client.get("/fhir/metadata"))
    assert {"search-system", "history-system"} <= {i["code"] for i in cs["rest"][0]["interaction"]}
    ehr = system_caller(smart)
    pid = ok(ehr("post", "/Patient", json={"resourceType": "Patient", "name": [{"family": "Sys"}]}), 201)["id"]
    oid = ok(ehr("post", "/Observation", json={"resourceType": "Observation", "status": "final",
                                               "code": {"text": "x"}, "subject": {"reference": f"Patient/{pid}"}}),
             201)["id"]
    history = ok(ehr.get("/_history"))
    assert history["type"] == "history"
    assert {e["fullUrl"].split("/fhir/")[1] for e in history["entry"]} >= {f"Patient/{pid}", f"Observation/{oid}"}
    found = ok(ehr.get("?_type=Patient"))
    assert [(r["resourceType"], r["id"]) for r in matches(found)] == [("Patient", pid)]
    both = ok(ehr.get("?_type=Patient,Observation&_lastUpdated=gt2000-01-01"))
    assert {(r["resourceType"], r["id"]) for r in matches(both)} == {("Patient", pid), ("Observation", oid)}
    assert {("Patient", pid), ("Observation", oid)} <= {(r["resourceType"], r["id"]) for r in matches(ok(ehr.get("")))}


def test_3_system_level_interactions_are_confined_by_the_scopes(smart: Any) -> None:
    ehr = system_caller(smart)
    pid = ok(ehr("post", "/Patient", json={"resourceType": "Patient"}), 201)["id"]
    other = ok(ehr("post", "/Patient", json={"resourceType": "Patient"}), 201)["id"]
    mine = smart.observation(pid)
    smart.observation(other)
    narrow = system_caller(smart, "system/Patient.rs")
    is_outcome(narrow.get("?_type=Observation"), 403)
    assert {r["resourceType"] for r in matches(ok(narrow.get("?_count=100")))} == {"Patient"}
    assert {e["fullUrl"].split("/fhir/")[1].split("/")[0] for e in ok(narrow.get("/_history"))["entry"]} == {"Patient"}
    app = patient_caller(smart, pid)
    found = ok(app.get("?_type=Observation,Patient&_count=100"))
    assert {(r["resourceType"], r["id"]) for r in matches(found)} == {("Observation", mine), ("Patient", pid)}
    is_outcome(app.get("/_history"), 403)  # a patient's app reads its history per resource or with $everything


# ---- 4. the base with and without its trailing slash ----
def test_4_the_base_answers_with_a_trailing_slash(smart: Any) -> None:
    ehr = system_caller(smart)
    tx = {"resourceType": "Bundle", "type": "transaction",
          "entry": [{"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient"},
                     "request": {"method": "POST", "url": "Patient"}}]}
    reply = ok(ehr("post", "/", json=tx))
    assert reply["type"] == "transaction-response" and reply["entry"][0]["response"]["status"].startswith("201")
    pid = reply["entry"][0]["response"]["location"].split("/")[1]
    assert ok(ehr("post", "/", json={**tx, "type": "batch"}))["type"] == "batch-response"
    assert any(r["id"] == pid for r in matches(ok(ehr.get("/?_type=Patient&_count=100"))))
    assert ok(ehr.get("/_history/"))["type"] == "history"
    assert ok(ehr.get("/metadata/"))["resourceType"] == "CapabilityStatement"
    assert ok(smart.client.get("/fhir/metadata/"))["resourceType"] == "CapabilityStatement"
    assert ok(ehr.get("/Patient/"))["type"] == "searchset"
    assert ok(ehr.get(f"/Patient/{pid}/"))["id"] == pid
    assert ok(ehr.get(f"/Patient/{pid}/_history/"))["type"] == "history"


# ---- 6. _elements keeps the mandatory elements ----
def test_6_elements_returns_the_mandatory_elements_too(smart: Any) -> None:
    ehr = system_caller(smart)
    pid = ok(ehr("post", "/Patient", json={"resourceType": "Patient"}), 201)["id"]
    smart.observation(pid)
    bundle = ok(ehr.get(f"/Observation?patient={pid}&_elements=code,subject"))
    observations = matches(bundle)
    assert len(observations) == 1
    for o in observations:
        assert set(o) == {"resourceType", "id", "meta", "status", "code", "subject"}, o
        assert any(t["code"] == "SUBSETTED" for t in o["meta"]["tag"])
    med = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
           "medicationCodeableConcept": {"text": "aspirin"}, "subject": {"reference": f"Patient/{pid}"},
           "_status": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}, "note": [{"text": "n"}]}
    mid = ok(ehr("post", "/MedicationRequest", json=med), 201)["id"]
    shaped = ok(ehr.get(f"/MedicationRequest/{mid}?_elements=note"))
    assert set(shaped) == {"resourceType", "id", "meta", "status", "_status", "intent", "medicationCodeableConcept",
                           "subject", "note"}, shaped
    assert any(t["code"] == "SUBSETTED" for t in shaped["meta"]["tag"])


# ---- 7. hostile Bundles and deep _has: a 400 with an OperationOutcome, nothing stored ----
def _tx(kind: str, **entry_fields: Any) -> dict[str, Any]:
    request = {"method": "POST", "url": "Patient", **entry_fields.pop("request", {})}
    return {"resourceType": "Bundle", "type": kind,
            "entry": [{"resource": {"resourceType": "Patient"}, "request": request, **entry_fields}]}


@pytest.mark.parametrize("kind", ["transaction", "batch"])
@pytest.mark.parametrize("bad", [
    {"fullUrl": 5}, {"fullUrl": {"a": 1}}, {"fullUrl": ["urn:uuid:x"]},
    {"request": {"ifNoneExist": 5}}, {"request": {"ifNoneExist": {"identifier": "x"}}},
    {"request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 5}},
    {"request": {"method": "PUT", "url": "Patient/p1", "ifMatch": ["W/\"1\""]}},
    {"request": {"ifNoneMatch": 1}}, {"request": {"ifModifiedSince": {}}},
], ids=lambda b: json.dumps(b))
def test_7_bundle_entries_with_non_string_fields_are_400(smart: Any, kind: str, bad: dict[str, Any]) -> None:
    ehr = system_caller(smart)
    body = _tx(kind, **json.loads(json.dumps(bad)))
    if "method" in body["entry"][0]["request"] and body["entry"][0]["request"]["method"] == "PUT":
        body["entry"][0]["resource"]["id"] = "p1"
    before = count(smart, "Patient")
    is_outcome(ehr("post", "", json=body), 400)
    assert count(smart, "Patient") == before


def test_7_duplicate_full_urls_in_a_transaction_are_400(smart: Any) -> None:
    ehr = system_caller(smart)
    entry = {"fullUrl": "urn:uuid:same", "resource": {"resourceType": "Patient"},
             "request": {"method": "POST", "url": "Patient"}}
    before = count(smart, "Patient")
    body = is_outcome(ehr("post", "", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}),
                      400)
    assert "urn:uuid:same" in body["issue"][0]["diagnostics"]
    assert count(smart, "Patient") == before


def test_7_has_nested_deeply_is_a_clear_400(smart: Any) -> None:
    ehr = system_caller(smart)
    pid = ok(ehr("post", "/Patient", json={"resourceType": "Patient"}), 201)["id"]
    smart.observation(pid)
    three = "_has:Observation:subject:_has:Observation:derived-from:_has:Observation:has-member:code=x"
    assert ok(ehr.get(f"/Patient?{three}"))["type"] == "searchset"
    assert ok(ehr.get("/Patient?_has:Observation:subject:code=2345-7"))["entry"]
    for depth in (4, 5, 12, 200):
        key = "_has:Observation:subject:" + "_has:Observation:derived-from:" * (depth - 1) + "code"
        body = is_outcome(ehr.get(f"/Patient?{key}=x"), 400)
        assert "nest" in body["issue"][0]["diagnostics"], body
    chained = "_has:Observation:subject:subject:Patient._has:Observation:subject:subject:Patient._has:Observation:subject:code"
    is_outcome(ehr.get(f"/Patient?{chained}=x"), 400)


def test_7_has_and_chains_without_a_value_are_ignored_like_any_empty_parameter(smart: Any) -> None:
    """Found by tests/functional/test_fuzz_fhir.py: an empty `_has` or chained value was a 500."""
    ehr = system_caller(smart)
    pid = ok(ehr("post", "/Patient", json={"resourceType": "Patient"}), 201)["id"]
    oid = smart.observation(pid)
    for query, want in (("Patient?_has:Observation:subject:code=", {("Patient", pid)}),
                        ("Patient?_has:Observation:subject:_has:Observation:derived-from:status=", {("Patient", pid)}),
                        ("Observation?subject:Patient.name=", {("Observation", oid)})):
        assert {(r["resourceType"], r["id"]) for r in matches(ok(ehr.get(f"/{query}")))} == want, query
