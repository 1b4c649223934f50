"""Compartment search (R4 http.html#search, `GET [base]/Patient/[id]/[type]`): a search of one type within one
patient's compartment, with the same parameters, paging, scopes and audit as any search."""
from __future__ import annotations

from typing import Any

from tests.support.backend import backend_token
from tests.support.fhirapi import link, matches, ok
from tests.support.smart import two_patients


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {r["id"] for r in matches(bundle)}


def _get(smart: Any, path: str, token: str, status: int = 200) -> dict[str, Any]:
    return ok(smart.get(path, token), status)


def test_only_that_patients_resources_with_the_other_parameters(smart: Any) -> None:
    mine, other, own_obs, other_obs, _ = two_patients(smart)
    vital = smart.observation(mine, category="vital-signs", code="8867-4")
    token = backend_token(smart, "system/*.rs")
    assert _ids(_get(smart, f"Patient/{mine}/Observation", token)) == {own_obs, vital}
    assert _ids(_get(smart, f"Patient/{other}/Observation", token)) == {other_obs}
    assert _ids(_get(smart, f"Patient/{mine}/Observation?category=vital-signs", token)) == {vital}
    assert _ids(_get(smart, f"Patient/{mine}/Observation?patient={other}", token)) == set()
    post = smart.client.post(f"/fhir/Patient/{mine}/Observation/_search", data={"code": "8867-4"},
                             headers={"Authorization": f"Bearer {token}"})
    assert _ids(ok(post)) == {vital}


def test_pages_stay_in_the_compartment(smart: Any) -> None:
    mine, other, *_ = two_patients(smart)
    made = {smart.observation(mine, code=f"1000-{i}") for i in range(5)} | set(
        _ids(_get(smart, f"Patient/{mine}/Observation", backend_token(smart, "system/*.rs"))))
    token = backend_token(smart, "system/*.rs")
    seen: set[str] = set()
    page = _get(smart, f"Patient/{mine}/Observation?_count=2", token)
    while True:
        seen |= _ids(page)
        nxt = link(page, "next")
        if not nxt:
            break
        assert f"/fhir/Patient/{mine}/Observation?" in nxt
        page = _get(smart, nxt.split("/fhir/", 1)[1], token)
    assert seen == made


def test_a_patients_token_reaches_only_its_own_compartment(smart: Any) -> None:
    mine, other, own_obs, _, token = two_patients(smart)
    assert _ids(_get(smart, f"Patient/{mine}/Observation", token)) == {own_obs}
    assert _ids(_get(smart, f"Patient/{other}/Observation", token)) == set()


def test_types_outside_the_compartment_and_unknown_types(smart: Any) -> None:
    mine, *_ = two_patients(smart)
    token = backend_token(smart, "system/*.rs")
    outcome = _get(smart, f"Patient/{mine}/Organization", token, 400)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "not in the Patient compartment" in outcome["issue"][0]["diagnostics"]
    assert _get(smart, f"Patient/{mine}/NoSuchType", token, 404)["resourceType"] == "OperationOutcome"
    assert _get(smart, "Patient/bad$id/Observation", token, 404)["resourceType"] == "OperationOutcome"
