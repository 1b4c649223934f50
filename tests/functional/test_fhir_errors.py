"""Validation and error handling over HTTP: the right status, an OperationOutcome, and nothing stored."""
from __future__ import annotations

from typing import Any

import pytest

from tests.support.fhirapi import count_type, ok
from tests.support.r4_minimal import minimal, r4_resource_types

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
INVALID = [
    ("Patient", {"gender": "robot"}, "Patient.gender"),
    ("Patient", {"birthDate": "1990-13-45"}, "Patient.birthDate"),
    ("Patient", {"foo": 1}, "Patient.foo"),
    ("Patient", {"name": {"family": "x"}}, "Patient.name"),
    ("Patient", {"active": "yes"}, "Patient.active"),
    ("Patient", {"name": [{}]}, "Patient.name[0]"),
    ("Patient", {"meta": {"project": "p1"}}, "Patient.meta.project"),
    ("Patient", {"extension": [{"valueString": "no url"}]}, "Patient.extension[0].url"),
    ("Patient", {"contained": [{"resourceType": "Bot", "id": "b"}]}, "Patient.contained[0]"),
    ("Patient", {"communication": [{"preferred": True}]}, "Patient.communication[0].language"),
    ("Observation", {"status": None}, "Observation.status"),
    ("Observation", {"code": {"coding": [{"system": 5}]}}, "Observation.code.coding[0].system"),
    ("Observation", {"valueQuantity": {"value": "12"}}, "Observation.valueQuantity.value"),
    ("Observation", {"component": [{"valueString": "no code"}]}, "Observation.component[0].code"),
    ("MedicationRequest", {}, "MedicationRequest.medication"),
]


def _body(rtype: str, patch: dict[str, Any]) -> dict[str, Any]:
    base = {"resourceType": rtype, **(OBS if rtype == "Observation" else {})}
    if rtype == "MedicationRequest":
        base.update({"status": "active", "intent": "order", "subject": {"reference": "Patient/1"}})
    body = {**base, **patch}
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize("rtype,patch,element", INVALID, ids=[e for _, _, e in INVALID])
def test_invalid_resources_are_422_naming_the_element_and_store_nothing(fhir_client: Any, rtype: str,
                                                                        patch: dict[str, Any], element: str) -> None:
    """Each R4 violation is a 422 OperationOutcome whose issue expression points at the element."""
    body = _body(rtype, patch)
    for resp in (fhir_client.post(f"/fhir/{rtype}", json=body),
                 fhir_client.put(f"/fhir/{rtype}/p1", json={**body, "id": "p1"})):
        oo = ok(resp, 422)
        assert oo["resourceType"] == "OperationOutcome"
        expressions = [x for issue in oo["issue"] for x in issue.get("expression", [])]
        assert any(x.startswith(element) for x in expressions), expressions
        assert all(i["severity"] == "error" for i in oo["issue"])
    assert count_type(fhir_client, rtype) == 0
    assert ok(fhir_client.get("/fhir/_history")).get("entry") is None


def test_malformed_json_is_400(fhir_client: Any) -> None:
    """Bodies that are not JSON objects are 400, whatever the interaction."""
    for raw in (b'{"resourceType": "Patient",', b"", b"[]", b"\xff\xfe", b'"Patient"', b"null"):
        for method, url in (("POST", "/fhir/Patient"), ("PUT", "/fhir/Patient/a"), ("POST", "/fhir")):
            resp = fhir_client.open(url, method=method, data=raw, content_type="application/fhir+json")
            assert ok(resp, 400)["resourceType"] == "OperationOutcome", (raw, url)
    assert count_type(fhir_client, "Patient") == 0


def test_wrong_content_type_is_415(fhir_client: Any) -> None:
    """XML, text and form bodies are refused with 415 before anything is parsed or stored."""
    for ctype in ("application/xml", "text/plain", "application/fhir+xml", "application/x-www-form-urlencoded"):
        for method, url in (("POST", "/fhir/Patient"), ("PUT", "/fhir/Patient/a"), ("POST", "/fhir")):
            resp = fhir_client.open(url, method=method, data=b'{"resourceType":"Patient"}', content_type=ctype)
            assert ok(resp, 415)["issue"][0]["code"] == "not-supported", (ctype, url)
    resp = fhir_client.post("/fhir/Patient/_search", data=b'{"name":"x"}', content_type="application/fhir+json")
    ok(resp, 415)
    assert count_type(fhir_client, "Patient") == 0


def test_oversize_body_is_413_from_environ_or_config(app: Any, fhir_client: Any) -> None:
    """A body over the limit (request environ or FHIR_MAX_BODY) is 413 and nothing is stored."""
    body = {"resourceType": "Patient", "name": [{"text": "x" * 2000}]}
    resp = fhir_client.post("/fhir/Patient", json=body, environ_overrides={"carespace.max_body": 1000})
    assert ok(resp, 413)["resourceType"] == "OperationOutcome"
    app.config["FHIR_MAX_BODY"] = 1500
    ok(fhir_client.post("/fhir/Patient", json=body), 413)
    ok(fhir_client.post("/fhir", json={"resourceType": "Bundle", "type": "batch",
                                       "entry": [{"resource": body, "request": {"method": "POST", "url": "Patient"}}]}),
       413)
    assert count_type(fhir_client, "Patient") == 0
    ok(fhir_client.post("/fhir/Patient", json={"resourceType": "Patient"}), 201)
    ok(fhir_client.post("/fhir/Patient/_search", data={"name": "x" * 2000}), 413)
    ok(fhir_client.post("/fhir/Patient/_search", data={"name": "x"}), 200)


def test_every_r4_resource_type_is_accepted(fhir_client: Any) -> None:
    """A minimal valid instance of each of the R4 types (per fhirclient's R4 models) stores and reads back."""
    types = sorted(r4_resource_types())
    assert len(types) == 146
    for rtype in types:
        body = minimal(rtype)
        stored = ok(fhir_client.post(f"/fhir/{rtype}", json=body), 201)
        assert {k: v for k, v in stored.items() if k not in ("id", "meta")} == body, rtype
        assert ok(fhir_client.get(f"/fhir/{rtype}?_id={stored['id']}"))["total"] == 1, rtype


@pytest.mark.parametrize("rtype", ["Bot", "Project", "AccessPolicy", "SubscriptionTopic", "Citation"])
def test_non_r4_types_are_rejected(fhir_client: Any, rtype: str) -> None:
    """Vendor types of the shipped schema (Bot, Project, ...) and R4B/R5-only types are not R4 resources."""
    body = {"resourceType": rtype, "name": "x"}
    ok(fhir_client.post(f"/fhir/{rtype}", json=body), 404)
    ok(fhir_client.get(f"/fhir/{rtype}"), 404)
    ok(fhir_client.put(f"/fhir/{rtype}/a", json={**body, "id": "a"}), 404)
    ok(fhir_client.post("/fhir/Patient", json=body), 400)
    tx = {"resourceType": "Bundle", "type": "transaction",
          "entry": [{"resource": body, "request": {"method": "POST", "url": rtype}}]}
    assert ok(fhir_client.post("/fhir", json=tx), 400)["resourceType"] == "OperationOutcome"
    assert ok(fhir_client.get("/fhir/_history")).get("entry") is None


GARBAGE = [
    "/fhir/Observation?date=2015-13-01", "/fhir/Observation?date=notadate", "/fhir/Observation?date=gt",
    "/fhir/Observation?date=ge2015-02-30", "/fhir/Observation?date=2015-01-01T25:00",
    "/fhir/Observation?value-quantity=abc", "/fhir/Observation?value-quantity=gt",
    "/fhir/Observation?value-quantity=NaN", "/fhir/Observation?value-quantity=Infinity",
    "/fhir/Observation?value-quantity=1e999", "/fhir/RiskAssessment?probability=ge1..2",
    "/fhir/Observation?_count=abc", "/fhir/Observation?_count=-1", "/fhir/Observation?_count=1.5",
    "/fhir/Observation?_sort=nonsense", "/fhir/Observation?_sort=-", "/fhir/Observation?_sort=code:x",
    "/fhir/Observation?_include=Nonsense", "/fhir/Observation?_include=Observation:code",
    "/fhir/Observation?_include=Observation", "/fhir/Observation?_revinclude=:::",
    "/fhir/Observation?patient=Foo/1", "/fhir/Observation?patient=Observation/1", "/fhir/Observation?patient=a/b/c",
    "/fhir/Observation?subject:Nonsense=1", "/fhir/Observation?patient.nonsense=x",
    "/fhir/Observation?patient:Patient.organization.name=x", "/fhir/Observation?subject.name=x",
    "/fhir/Patient?_has:Foo:bar:baz=1", "/fhir/Patient?_has:Observation=1", "/fhir/Patient?_has:Observation:nope:code=1",
    "/fhir/Patient?_summary=bogus", "/fhir/Patient?name:bogus=x", "/fhir/Observation?code:below=x",
    "/fhir/Observation?date:exact=2015", "/fhir/Patient?_lastUpdated=garbage", "/fhir/Patient?_total=bogus",
    "/fhir/Patient/_history?_since=garbage", "/fhir/Patient/_history?_count=abc", "/fhir?_type=Bogus",
    "/fhir/Patient/p1/$everything?start=garbage", "/fhir/Patient/p1/$everything?_count=x",
    "/fhir/Patient/p1/$everything?_since=2015-99", "/fhir/Patient/p1/$everything?_type=Bogus",
    "/fhir/Patient/p1/$everything?_cursor=abc",
]


def test_garbage_inputs_are_400_outcomes_never_500(fhir_client: Any) -> None:
    """Bad dates, numbers, _count, _sort, _include, references and the like are client errors."""
    ok(fhir_client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}), 201)
    wrong = []
    for url in GARBAGE:
        resp = fhir_client.get(url)
        body = resp.get_json(silent=True) or {}
        if resp.status_code != 400 or body.get("resourceType") != "OperationOutcome":
            wrong.append((url, resp.status_code))
    assert wrong == [], "\n".join(f"{u} -> {s}" for u, s in wrong)


HOSTILE = [
    (b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":NaN}}', 422),
    (b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e400}}', 422),
    (b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":' + b"9" * 400
     + b"}}", 422),
    (b'{"resourceType":"Patient","multipleBirthInteger":99999999999999999999}', 422),
    (b'{"resourceType":"Patient","name":[{"family":"a\\u0000b"}]}', 422),
    (b'{"resourceType":"Patient","name":[{"family":"\\ud800"}]}', 422),
    (b'{"resourceType":"Patient","extension":[' + b'{"url":"http://x","extension":[' * 5000 + b"]}" * 5000 + b"]}", 400),
    (b'{"resourceType":"Patient","extension":[' + b'{"url":"http://x","extension":[' * 150
     + b'{"url":"http://x","valueString":"x"}' + b"]}" * 150 + b"]}", 422),
]


def test_hostile_bodies_are_client_errors_and_store_nothing(fhir_client: Any) -> None:
    """Non-finite or huge numbers, NUL, lone surrogates and absurd nesting never reach storage or a 500."""
    for raw, status in HOSTILE:
        resp = fhir_client.post("/fhir/Patient" if b'"Patient"' in raw else "/fhir/Observation", data=raw,
                                content_type="application/fhir+json")
        assert ok(resp, status)["resourceType"] == "OperationOutcome", raw[:80]
    assert ok(fhir_client.get("/fhir/_history")).get("entry") is None
    for url, status in (("/fhir/Patient?name=a%00b", 400), ("/fhir/Patient/a%00b", 404),
                        ("/fhir/Patient/a%20b/_history", 404), ("/fhir/Patient/x/_history/99999999999999999999", 404)):
        assert ok(fhir_client.get(url), status)["resourceType"] == "OperationOutcome", url


def test_values_wider_than_the_index_columns_are_stored_and_searchable(fhir_client: Any) -> None:
    """Very long references, systems and units are kept whole in the resource and cut only in the index."""
    long_ref = "Patient/" + "y" * 600
    body = {"resourceType": "Observation", "status": "final", "subject": {"reference": long_ref},
            "code": {"coding": [{"system": "http://example.org/" + "s" * 400, "code": "c" * 400}]},
            "valueQuantity": {"value": 1, "system": "http://example.org/" + "u" * 300, "code": "u" * 300}}
    stored = ok(fhir_client.post("/fhir/Observation", json=body), 201)
    assert stored["subject"]["reference"] == long_ref
    assert ok(fhir_client.get("/fhir/Observation?code=" + "c" * 400)).get("resourceType") == "Bundle"
    assert ok(fhir_client.get("/fhir/Observation?subject=" + long_ref)).get("resourceType") == "Bundle"
