"""R4 validation rules, checked on the validator directly (no database)."""
from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import BadRequest, FhirError, Unprocessable
from fhir_server.r4.validation import MAX_ISSUES, is_valid_id, validate_resource
from tests.support.synthea import patients


def issues(resource: Any, rtype: str | None = None) -> list[dict[str, Any]]:
    """The issues validation raises for `resource` ([] when valid)."""
    try:
        validate_resource(resource, rtype)
    except Unprocessable as err:
        assert err.status == 422
        return err.issues or []
    return []


def where(resource: Any) -> list[str]:
    return [x for i in issues(resource) for x in i["expression"]]


def test_every_synthea_resource_is_valid_r4() -> None:
    """Real-world R4 data nobody on the project wrote passes: no false positives."""
    bad = [(e.type, where(e.resource)) for p in patients() for e in p.entries if issues(e.resource)]
    assert bad == []


@pytest.mark.parametrize("resource,element", [
    ({"resourceType": "Observation", "code": {"text": "x"}}, "Observation.status"),
    ({"resourceType": "Bundle"}, "Bundle.type"),
    ({"resourceType": "Communication"}, "Communication.status"),
    ({"resourceType": "Patient", "extension": [{"valueString": "x"}]}, "Patient.extension[0].url"),
    ({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"display": "x"}},
     "MedicationRequest.medication[x]"),
    ({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "component": [{"valueString": "x"}]},
     "Observation.component[0].code"),
])
def test_required_elements_the_json_schema_cannot_express_are_enforced(resource: dict[str, Any], element: str) -> None:
    """1..1 primitives (status), required choices (medication[x]) and nested required elements are checked."""
    found = issues(resource)
    assert [i["expression"] for i in found] == [[element]]
    assert found[0]["code"] == "required"


def test_a_required_primitive_may_come_as_extension_only_and_a_choice_in_any_type() -> None:
    """`_status` with an extension satisfies status; medicationReference satisfies medication[x]."""
    ext = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}
    assert issues({"resourceType": "Observation", "_status": ext, "code": {"text": "x"}}) == []
    assert issues({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                   "subject": {"display": "x"}, "medicationReference": {"reference": "Medication/1"}}) == []


@pytest.mark.parametrize("patch,element", [
    ({"birthDate": "1990-02-30x"}, "Patient.birthDate"), ({"birthDate": "90-01-01"}, "Patient.birthDate"),
    ({"deceasedDateTime": "2020-01-01T10:00"}, "Patient.deceasedDateTime"),
    ({"meta": {"lastUpdated": "2020-01-01"}}, "Patient.meta.lastUpdated"),
    ({"id": "has space"}, "Patient.id"), ({"id": "x" * 65}, "Patient.id"),
    ({"gender": " male"}, "Patient.gender"), ({"gender": "robot"}, "Patient.gender"),
    ({"active": 1}, "Patient.active"), ({"multipleBirthInteger": 1.5}, "Patient.multipleBirthInteger"),
    ({"multipleBirthInteger": True}, "Patient.multipleBirthInteger"),
    ({"photo": [{"size": -1}]}, "Patient.photo[0].size"), ({"name": []}, "Patient.name"),
    ({"name": [{"given": "Ann"}]}, "Patient.name[0].given"), ({"name": None}, "Patient.name"),
    ({"implicitRules": "not a uri"}, "Patient.implicitRules"),
    ({"telecom": [{"system": "beeper", "value": "1"}]}, "Patient.telecom[0].system"),
    ({"meta": {"project": "x"}}, "Patient.meta.project"),
    ({"managingOrganization": {"resource": {}}}, "Patient.managingOrganization.resource"),
    ({"contained": [{"resourceType": "Observation", "status": "final"}]}, "Patient.contained[0].code"),
    ({"contained": [{"resourceType": "Project"}]}, "Patient.contained[0]"),
    ({"valueString": "x"}, "Patient.valueString"),
])
def test_each_violation_names_its_element(patch: dict[str, Any], element: str) -> None:
    """Formats, types, cardinality, bindings, vendor elements and contained resources are all checked."""
    body = {k: v for k, v in {"resourceType": "Patient", **patch}.items()}
    assert element in where(body), where(body)


def test_primitive_arrays_may_hold_nulls_paired_with_extensions() -> None:
    """`given: [null, "B"]` with `_given: [{...}, null]` is the R4 JSON form of an extension-only item."""
    name = {"given": [None, "B"], "_given": [{"extension": [{"url": "http://x", "valueString": "y"}]}, None]}
    assert issues({"resourceType": "Patient", "name": [name]}) == []


def test_issue_count_is_capped_and_all_are_errors() -> None:
    """A resource with hundreds of problems gets at most MAX_ISSUES issues, every one an error."""
    found = issues({"resourceType": "Patient", **{f"bad{n}": n for n in range(300)}})
    assert len(found) == MAX_ISSUES and {i["severity"] for i in found} == {"error"}


@pytest.mark.parametrize("body,rtype", [([], None), ("Patient", None), (None, None),
                                        ({"resourceType": "Patient"}, "Observation"), ({"name": []}, "Patient")])
def test_non_objects_and_type_mismatch_are_400(body: Any, rtype: str | None) -> None:
    """Not a JSON object, or a resourceType other than the URL's, is a bad request, not 422."""
    with pytest.raises(BadRequest):
        validate_resource(body, rtype)


@pytest.mark.parametrize("rtype,accepted", [("MedicinalProduct", True), ("EffectEvidenceSynthesis", True),
                                            ("SubstanceSpecification", True), ("SubscriptionTopic", False),
                                            ("Citation", False), ("Bot", False), ("Project", False),
                                            ("ClientApplication", False)])
def test_r4_only_types_accepted_and_r4b_or_vendor_types_refused(rtype: str, accepted: bool) -> None:
    """Types R4B dropped are R4 and valid; R4B/R5 additions and vendor types are not R4."""
    ref = {"display": "x"}
    body: dict[str, Any] = {"resourceType": rtype, **{
        "MedicinalProduct": {"name": [{"productName": "x"}]},
        "EffectEvidenceSynthesis": {"status": "active", "population": ref, "exposure": ref,
                                    "exposureAlternative": ref, "outcome": ref}}.get(rtype, {})}
    try:
        validate_resource(body)
        ok = True
    except FhirError:
        ok = False
    assert ok is accepted


@pytest.mark.parametrize("value,valid", [("a", True), ("A-1.b", True), ("x" * 64, True), ("x" * 65, False),
                                         ("", False), ("a_b", False), ("a b", False), ("a/b", False)])
def test_is_valid_id(value: str, valid: bool) -> None:
    """Logical ids are 1-64 of [A-Za-z0-9-.]."""
    assert is_valid_id(value) is valid
