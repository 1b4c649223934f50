"""/fhir/metadata is a valid R4 CapabilityStatement, checked both ways against what the server does."""
from __future__ import annotations

from typing import Any

import pytest
from fhirclient.models.capabilitystatement import CapabilityStatement

from fhir_server.service import APPEND_ONLY
from tests.support.fhirapi import create, included, matches, ok, outcomes, total
from tests.support.r4_minimal import minimal

SAMPLE = ["Patient", "Observation", "Encounter", "Condition", "MedicationRequest", "DocumentReference",
          "Communication", "RelatedPerson", "Practitioner", "Organization", "AuditEvent", "Binary", "RiskAssessment",
          "ValueSet", "MolecularSequence", "Bundle"]
VALUES = {"token": "x", "string": "x", "date": "ge2020-01-01", "reference": "x", "quantity": "1", "number": "1",
          "uri": "http://example.org/x"}


@pytest.fixture(scope="module")
def cs(module_client: Any) -> dict[str, Any]:
    return ok(module_client.get("/fhir/metadata"))


def resource(cs: dict[str, Any], rtype: str) -> dict[str, Any]:
    return next(r for r in cs["rest"][0]["resource"] if r["type"] == rtype)


def test_metadata_parses_as_r4_and_is_completed_at_run_time(cs: dict[str, Any]) -> None:
    """fhirclient's strict R4 model accepts it; version, url, software and date are filled in."""
    parsed = CapabilityStatement(cs, strict=True)
    assert parsed.fhirVersion == "4.0.1" and parsed.kind == "instance" and parsed.status == "active"
    assert cs["url"] == "http://localhost/fhir/metadata" and cs["software"]["name"] == "CareSpace"
    assert cs["date"][:4] >= "2025" and "json" in cs["format"]
    assert len(cs["rest"][0]["resource"]) == 146


def test_server_search_params_and_types_are_all_advertised(cs: dict[str, Any]) -> None:
    """Every (type, search parameter) the server indexes is in the statement, and nothing else is."""
    from fhir_server.r4.tables import resource_types, search_params
    advertised = {r["type"]: {p["name"]: p["type"] for p in r["searchParam"]} for r in cs["rest"][0]["resource"]}
    assert set(advertised) == set(resource_types())
    for rtype, params in search_params().items():
        assert advertised[rtype] == {name: spec["type"] for name, spec in params.items()}, rtype


def _interactions_from_routes(app: Any) -> set[str]:
    """The interactions the FHIR blueprint actually routes, named as CapabilityStatement codes."""
    names = {("GET", "/fhir/<rtype>/<fid>"): "read", ("GET", "/fhir/<rtype>/<fid>/_history/<vid>"): "vread",
             ("PUT", "/fhir/<rtype>/<fid>"): "update", ("DELETE", "/fhir/<rtype>/<fid>"): "delete",
             ("GET", "/fhir/<rtype>/<fid>/_history"): "history-instance", ("GET", "/fhir/<rtype>/_history"): "history-type",
             ("POST", "/fhir/<rtype>"): "create", ("GET", "/fhir/<rtype>"): "search-type",
             ("POST", "/fhir/<rtype>/_search"): "search-type", ("GET", "/fhir"): "search-system",
             ("GET", "/fhir/_history"): "history-system", ("POST", "/fhir"): "transaction",
             ("PUT", "/fhir/<rtype>"): "conditional-update", ("DELETE", "/fhir/<rtype>"): "conditional-delete",
             ("GET", "/fhir/metadata"): "capabilities", ("GET", "/fhir/Patient/<fid>/$everything"): "everything",
             ("POST", "/fhir/Patient/<fid>/$everything"): "everything",
             ("GET", "/fhir/Patient/<fid>/_history"): "history-instance",
             ("GET", "/fhir/Patient/<fid>/<rtype>"): "search-compartment",
             ("POST", "/fhir/Patient/<fid>/<rtype>/_search"): "search-compartment",
             **{(m, path): "export" for m in ("GET", "POST")
                for path in ("/fhir/$export", "/fhir/Patient/$export", "/fhir/Group/<fid>/$export")},
             **{(m, "/fhir/$export-status/<job_id>"): "export" for m in ("GET", "DELETE")},
             ("GET", "/fhir/$export-file/<job_id>/<name>"): "export"}
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("fhir.") and rule.endpoint not in ("fhir.metadata_write", "fhir.openapi"):
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                assert (method, rule.rule) in names, f"unadvertised route {method} {rule.rule}"
                found.add(names[(method, rule.rule)])
    return found


def test_every_routed_interaction_is_advertised(module_app: Any, cs: dict[str, Any]) -> None:
    """Each route of the FHIR API maps to an interaction, flag or operation the statement lists."""
    rest = cs["rest"][0]
    system = {i["code"] for i in rest["interaction"]}
    for code in _interactions_from_routes(module_app):
        for r in rest["resource"]:
            type_level = {i["code"] for i in r["interaction"]}
            if r["type"] in APPEND_ONLY and code in ("update", "delete", "conditional-update", "conditional-delete"):
                continue  # refused with 405 on these types (test_unadvertised_changes_of_append_only_types_are_405)
            if code in ("read", "vread", "update", "delete", "history-instance", "history-type", "create",
                        "search-type"):
                assert code in type_level, (r["type"], code)
            elif code == "conditional-update":
                assert r["conditionalUpdate"] is True
            elif code == "conditional-delete":
                assert r["conditionalDelete"] in ("single", "multiple")
        if code in ("search-system", "history-system", "transaction"):
            assert code in system and "batch" in system
        if code == "search-compartment":
            assert rest["compartment"] == ["http://hl7.org/fhir/CompartmentDefinition/patient"]
        if code == "everything":
            assert [o["name"] for o in resource(cs, "Patient")["operation"]] == ["everything", "export"]
        if code == "export":  # Bulk Data 2.0: system, Patient and Group $export
            bulk = "http://hl7.org/fhir/uv/bulkdata"
            assert cs["instantiates"] == [f"{bulk}/CapabilityStatement/bulk-data"]
            assert rest["operation"] == [{"name": "export", "definition": f"{bulk}/OperationDefinition/export"}]
            assert resource(cs, "Group")["operation"] == [
                {"name": "export", "definition": f"{bulk}/OperationDefinition/group-export"}]


def test_unadvertised_changes_of_append_only_types_are_405(module_client: Any, cs: dict[str, Any]) -> None:
    """The types listed without update and delete (the audit trail) refuse both, conditional ones too."""
    refused = [r for r in cs["rest"][0]["resource"] if not {"update", "delete"} & {i["code"] for i in r["interaction"]}]
    assert [r["type"] for r in refused] == sorted(APPEND_ONLY)
    for r in refused:
        assert r["conditionalUpdate"] is False and r["conditionalDelete"] == "not-supported" and not r["updateCreate"]
        rid = create(module_client, minimal(r["type"]))["id"]
        for resp in (module_client.put(f"/fhir/{r['type']}/{rid}", json={**minimal(r["type"]), "id": rid}),
                     module_client.delete(f"/fhir/{r['type']}/{rid}"),
                     module_client.put(f"/fhir/{r['type']}?_id={rid}", json=minimal(r["type"])),
                     module_client.delete(f"/fhir/{r['type']}?_id={rid}")):
            assert ok(resp, 405)["issue"][0]["code"] == "not-supported"
        assert ok(module_client.get(f"/fhir/{r['type']}/{rid}"))["meta"]["versionId"] == "1"


@pytest.mark.parametrize("rtype", SAMPLE)
def test_every_advertised_search_param_of_sampled_types_filters(module_client: Any, cs: dict[str, Any],
                                                                 rtype: str) -> None:
    """For each advertised param, :missing=true and :missing=false split the type's resources (not ignored)."""
    create(module_client, minimal(rtype))
    n = total(module_client, f"/fhir/{rtype}")
    for p in resource(cs, rtype)["searchParam"]:
        name = p["name"]
        if name in ("_id", "_lastUpdated"):
            continue
        strict = {"Prefer": "handling=strict"}
        yes = ok(module_client.get(f"/fhir/{rtype}?{name}:missing=true&_summary=count", headers=strict))["total"]
        no = ok(module_client.get(f"/fhir/{rtype}?{name}:missing=false&_summary=count", headers=strict))["total"]
        assert yes + no == n, (rtype, name, yes, no)
        body = ok(module_client.get(f"/fhir/{rtype}?{name}={VALUES[p['type']]}"))
        assert not outcomes(body), (rtype, name)


def test_all_advertised_params_of_all_types_are_accepted_strictly(module_client: Any, cs: dict[str, Any]) -> None:
    """One strict search per type naming every advertised parameter is a 200, never 'unknown'."""
    for r in cs["rest"][0]["resource"]:
        query = "&".join(f"{p['name']}={VALUES[p['type']]}" for p in r["searchParam"] if p["name"] != "_id")
        resp = module_client.get(f"/fhir/{r['type']}?{query}", headers={"Prefer": "handling=strict"})
        assert resp.status_code == 200, (r["type"], resp.get_json())


@pytest.mark.parametrize("rtype", ["Patient", "Observation", "Encounter", "Communication", "Organization"])
def test_advertised_interactions_and_includes_work(module_client: Any, cs: dict[str, Any], rtype: str) -> None:
    """Each type-level interaction and each searchInclude value of the sampled types succeeds."""
    c = module_client
    rid = create(c, minimal(rtype))["id"]
    for code in (i["code"] for i in resource(cs, rtype)["interaction"]):
        if code == "read":
            ok(c.get(f"/fhir/{rtype}/{rid}"))
        elif code == "vread":
            ok(c.get(f"/fhir/{rtype}/{rid}/_history/1"))
        elif code == "update":
            ok(c.put(f"/fhir/{rtype}/{rid}", json={**minimal(rtype), "id": rid}))
        elif code == "history-instance":
            assert len(ok(c.get(f"/fhir/{rtype}/{rid}/_history"))["entry"]) >= 2
        elif code == "history-type":
            assert ok(c.get(f"/fhir/{rtype}/_history"))["entry"]
        elif code == "create":
            create(c, minimal(rtype))
        elif code == "search-type":
            assert rid in [x["id"] for x in matches(ok(c.get(f"/fhir/{rtype}?_id={rid}")))]
        elif code == "delete":
            pass  # below, after the includes
        else:
            raise AssertionError(f"untested interaction {code}")
    for inc in resource(cs, rtype)["searchInclude"]:
        assert not outcomes(ok(c.get(f"/fhir/{rtype}?_id={rid}&_include={inc}"))), inc
    ok(c.delete(f"/fhir/{rtype}/{rid}"))
    ok(c.get(f"/fhir/{rtype}/{rid}"), 410)


def test_revinclude_star_and_system_interactions(module_client: Any, cs: dict[str, Any]) -> None:
    """_revinclude=* brings every resource that points at a match; system search and history answer."""
    c = module_client
    pid = create(c, {"resourceType": "Patient", "name": [{"family": "Star"}]})["id"]
    oid = create(c, {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                     "subject": {"reference": f"Patient/{pid}"}})["id"]
    assert resource(cs, "Patient")["searchRevInclude"] == ["*"]
    body = ok(c.get(f"/fhir/Patient?_id={pid}&_revinclude=*"))
    assert [(r["resourceType"], r["id"]) for r in included(body)] == [("Observation", oid)]
    assert ok(c.get(f"/fhir?_type=Patient&_id={pid}"))["entry"][0]["resource"]["id"] == pid
    assert ok(c.get("/fhir/_history?_count=1"))["type"] == "history"
    assert ok(c.get(f"/fhir/Patient/{pid}/$everything"))["total"] == 2
