"""The FHIR REST interactions on single resources: create, read, vread, update, delete and their headers."""
from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from typing import Any

from tests.support.fhirapi import count_type, create, ok

PATIENT = {"resourceType": "Patient", "name": [{"family": "Crud", "given": ["Carla"]}], "gender": "female",
           "identifier": [{"system": "urn:mrn", "value": "C-1"}]}


def test_create_returns_201_location_etag_last_modified_and_the_stored_json(fhir_client: Any) -> None:
    """POST stores version 1 with server id and meta, and says where it is."""
    r = fhir_client.post("/fhir/Patient", json={**PATIENT, "id": "ignored"})
    body = ok(r, 201)
    assert body["id"] != "ignored" and body["meta"]["versionId"] == "1"
    assert r.headers["Location"] == f"http://localhost/fhir/Patient/{body['id']}/_history/1"
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    modified = parsedate_to_datetime(r.headers["Last-Modified"])
    assert modified.strftime("%Y-%m-%dT%H:%M:%S") == body["meta"]["lastUpdated"][:19]
    got = fhir_client.get(f"/fhir/Patient/{body['id']}")
    assert got.get_data(as_text=True) == json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def test_read_vread_and_if_none_match(fhir_client: Any) -> None:
    """read serves the current version, vread any version, If-None-Match on the current ETag is 304."""
    pid = create(fhir_client, PATIENT)["id"]
    ok(fhir_client.put(f"/fhir/Patient/{pid}", json={**PATIENT, "id": pid, "gender": "other"}))
    assert ok(fhir_client.get(f"/fhir/Patient/{pid}"))["gender"] == "other"
    v1 = ok(fhir_client.get(f"/fhir/Patient/{pid}/_history/1"))
    assert v1["gender"] == "female" and v1["meta"]["versionId"] == "1"
    assert ok(fhir_client.get(f"/fhir/Patient/{pid}/_history/2"))["gender"] == "other"
    ok(fhir_client.get(f"/fhir/Patient/{pid}/_history/3"), 404)
    ok(fhir_client.get(f"/fhir/Patient/{pid}/_history/x"), 404)
    r = fhir_client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"2"'})
    assert r.status_code == 304 and r.get_data() == b""
    assert fhir_client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status_code == 200


def test_update_bumps_version_and_if_match_mismatch_is_412(fhir_client: Any) -> None:
    """PUT with a stale If-Match is refused and changes nothing; the right one succeeds."""
    pid = create(fhir_client, PATIENT)["id"]
    r = fhir_client.put(f"/fhir/Patient/{pid}", json={**PATIENT, "id": pid, "active": True},
                        headers={"If-Match": 'W/"1"'})
    assert ok(r)["meta"]["versionId"] == "2" and r.headers["ETag"] == 'W/"2"'
    stale = fhir_client.put(f"/fhir/Patient/{pid}", json={**PATIENT, "id": pid, "active": False},
                            headers={"If-Match": 'W/"1"'})
    assert ok(stale, 412)["resourceType"] == "OperationOutcome"
    assert ok(fhir_client.get(f"/fhir/Patient/{pid}"))["active"] is True
    ok(fhir_client.put(f"/fhir/Patient/{pid}", json={**PATIENT, "id": "other"}), 400)


def test_update_as_create_with_a_client_id(fhir_client: Any) -> None:
    """PUT to a new id creates it (201, version 1); an invalid id is a 400."""
    r = fhir_client.put("/fhir/Patient/client-chosen.1", json={**PATIENT, "id": "client-chosen.1"})
    assert ok(r, 201)["meta"]["versionId"] == "1"
    assert r.headers["Location"].endswith("/Patient/client-chosen.1/_history/1")
    assert ok(fhir_client.get("/fhir/Patient/client-chosen.1"))["id"] == "client-chosen.1"
    ok(fhir_client.put("/fhir/Patient/bad_id!", json={**PATIENT, "id": "bad_id!"}), 400)
    ok(fhir_client.put(f"/fhir/Patient/{'x' * 65}", json={**PATIENT, "id": "x" * 65}), 400)
    assert count_type(fhir_client, "Patient") == 1


def test_conditional_create_with_zero_one_and_two_matches(fhir_client: Any) -> None:
    """If-None-Exist: no match creates (201), one match returns it (200), two matches are 412."""
    head = {"If-None-Exist": "identifier=urn:mrn|C-1"}
    first = ok(fhir_client.post("/fhir/Patient", json=PATIENT, headers=head), 201)
    again = fhir_client.post("/fhir/Patient", json=PATIENT, headers=head)
    assert ok(again, 200)["id"] == first["id"]
    assert count_type(fhir_client, "Patient") == 1
    create(fhir_client, PATIENT)
    ok(fhir_client.post("/fhir/Patient", json=PATIENT, headers=head), 412)
    assert count_type(fhir_client, "Patient") == 2
    ok(fhir_client.post("/fhir/Patient", json=PATIENT, headers={"If-None-Exist": "nonsense=1"}), 400)


def test_conditional_update_with_zero_one_and_two_matches(fhir_client: Any) -> None:
    """PUT Type?criteria creates when nothing matches, updates the one match, refuses several (412)."""
    url = "/fhir/Patient?identifier=urn:mrn|C-1"
    created = ok(fhir_client.put(url, json=PATIENT), 201)
    updated = ok(fhir_client.put(url, json={**PATIENT, "gender": "male"}), 200)
    assert updated["id"] == created["id"] and updated["meta"]["versionId"] == "2"
    create(fhir_client, PATIENT)
    ok(fhir_client.put(url, json={**PATIENT, "gender": "other"}), 412)
    assert ok(fhir_client.get(f"/fhir/Patient/{created['id']}"))["gender"] == "male"


def test_delete_then_read_is_410_and_history_keeps_every_version(fhir_client: Any) -> None:
    """A deleted resource reads as 410 Gone, its old versions stay readable, and a PUT revives it."""
    pid = create(fhir_client, PATIENT)["id"]
    ok(fhir_client.delete(f"/fhir/Patient/{pid}"))
    gone = ok(fhir_client.get(f"/fhir/Patient/{pid}"), 410)
    assert gone["issue"][0]["code"] == "deleted"
    assert ok(fhir_client.get(f"/fhir/Patient/{pid}/_history/1"))["id"] == pid
    ok(fhir_client.get(f"/fhir/Patient/{pid}/_history/2"), 410)
    assert fhir_client.delete(f"/fhir/Patient/{pid}").status_code == 200  # idempotent
    assert count_type(fhir_client, "Patient") == 0
    revived = ok(fhir_client.put(f"/fhir/Patient/{pid}", json={**PATIENT, "id": pid}), 201)
    assert revived["meta"]["versionId"] == "3"
    ok(fhir_client.delete("/fhir/Patient/never-was"), 404)


def test_conditional_delete(fhir_client: Any) -> None:
    """DELETE Type?criteria removes the single match; several matches are 412."""
    pid = create(fhir_client, PATIENT)["id"]
    ok(fhir_client.delete("/fhir/Patient?identifier=urn:mrn|C-1"))
    ok(fhir_client.get(f"/fhir/Patient/{pid}"), 410)
    create(fhir_client, PATIENT)
    create(fhir_client, PATIENT)
    ok(fhir_client.delete("/fhir/Patient?identifier=urn:mrn|C-1"), 412)
    assert count_type(fhir_client, "Patient") == 2


def test_delete_of_a_referenced_resource_is_409(fhir_client: Any) -> None:
    """Deleting a Patient that an Observation points at is a conflict; after the Observation goes, it works."""
    pid = create(fhir_client, PATIENT)["id"]
    oid = create(fhir_client, {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                               "subject": {"reference": f"Patient/{pid}"}})["id"]
    conflict = ok(fhir_client.delete(f"/fhir/Patient/{pid}"), 409)
    assert f"Observation/{oid}" in conflict["issue"][0]["diagnostics"]
    ok(fhir_client.get(f"/fhir/Patient/{pid}"))
    ok(fhir_client.delete(f"/fhir/Observation/{oid}"))
    ok(fhir_client.delete(f"/fhir/Patient/{pid}"))


def test_prefer_return_minimal_representation_and_operationoutcome(fhir_client: Any) -> None:
    """Prefer: return=minimal has no body, representation the resource, OperationOutcome an outcome."""
    r = fhir_client.post("/fhir/Patient", json=PATIENT, headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.get_data() == b"" and "/Patient/" in r.headers["Location"]
    pid = r.headers["Location"].split("/Patient/")[1].split("/")[0]
    r = fhir_client.put(f"/fhir/Patient/{pid}", json={**PATIENT, "id": pid},
                        headers={"Prefer": "return=OperationOutcome"})
    assert ok(r)["resourceType"] == "OperationOutcome" and r.headers["ETag"] == 'W/"2"'
    r = fhir_client.post("/fhir/Patient", json=PATIENT, headers={"Prefer": "return=representation"})
    assert ok(r, 201)["resourceType"] == "Patient"


def test_history_instance_type_since_and_paging(fhir_client: Any) -> None:
    """Instance and type history list every version newest first; _since and _count narrow them."""
    pid = create(fhir_client, PATIENT)["id"]
    for g in ("male", "other"):
        ok(fhir_client.put(f"/fhir/Patient/{pid}", json={**PATIENT, "id": pid, "gender": g}))
    ok(fhir_client.delete(f"/fhir/Patient/{pid}"))
    other = create(fhir_client, PATIENT)
    inst = ok(fhir_client.get(f"/fhir/Patient/{pid}/_history"))
    assert inst["type"] == "history"
    assert [e["request"]["method"] for e in inst["entry"]] == ["DELETE", "PUT", "PUT", "POST"]
    assert [e["response"]["etag"] for e in inst["entry"]] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in inst["entry"][0] and inst["entry"][1]["resource"]["gender"] == "other"
    typ = ok(fhir_client.get("/fhir/Patient/_history"))
    assert len(typ["entry"]) == 5 and typ["entry"][0]["resource"]["id"] == other["id"]
    since = ok(fhir_client.get("/fhir/Patient/_history?_since=" + other["meta"]["lastUpdated"].replace("+", "%2B")))
    assert [e["resource"]["id"] for e in since["entry"]] == [other["id"]]
    page = ok(fhir_client.get("/fhir/Patient/_history?_count=2"))
    rest = ok(fhir_client.get(next(x["url"] for x in page["link"] if x["relation"] == "next")))
    assert len(page["entry"]) == 2 and len(rest["entry"]) == 2
    ok(fhir_client.get("/fhir/Patient/nope/_history"), 404)


def test_unsupported_methods_are_405_and_unknown_targets_404(fhir_client: Any) -> None:
    """Methods the server does not offer are 405 OperationOutcomes; unknown types and ids are 404."""
    pid = create(fhir_client, PATIENT)["id"]
    for method, url in (("PATCH", f"/fhir/Patient/{pid}"), ("POST", f"/fhir/Patient/{pid}"), ("DELETE", "/fhir"),
                        ("PUT", "/fhir/metadata"), ("DELETE", f"/fhir/Patient/{pid}/_history/1"),
                        ("POST", "/fhir/metadata")):
        r = fhir_client.open(url, method=method, json=PATIENT)
        assert ok(r, 405)["resourceType"] == "OperationOutcome", (method, url)
    for url in ("/fhir/Patient/unknown-id", "/fhir/Bot/1", "/fhir/Bot", "/fhir/patient/1", "/fhir/Patient/1/x/y"):
        assert ok(fhir_client.get(url), 404)["resourceType"] == "OperationOutcome", url
