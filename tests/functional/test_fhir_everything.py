"""Patient/$everything equals the patient compartment (compartment_patient.json applied to the Synthea JSON)."""
from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.support.fhirapi import link, matches, ok, q
from tests.support.synthea import (
    CLINICAL_DATE,
    SYNTHEA_ID,
    PatientBundle,
    bundle_fingerprints,
    instant,
    patients,
    server_fingerprint,
)

DATED = sorted(CLINICAL_DATE)


@pytest.fixture(scope="module")
def ids(synthea_client: Any) -> dict[str, str]:
    out = {}
    for p in patients():
        body = ok(synthea_client.get(f"/fhir/Patient?identifier={q(SYNTHEA_ID + '|' + p.identifier)}"))
        out[p.name] = matches(body)[0]["id"]
    return out


def everything(client: Any, url: str) -> tuple[list[dict[str, Any]], int]:
    """All resources of a $everything, following next links; fails on a resource repeated across pages."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    pages = 0
    next_url: str | None = url
    while next_url:
        bundle = ok(client.get(next_url))
        assert bundle["type"] == "searchset"
        for r in matches(bundle):
            key = (r["resourceType"], r["id"])
            assert key not in seen, f"{key} repeated on page {pages + 1}"
            seen.add(key)
            out.append(r)
        next_url = link(bundle, "next")
        pages += 1
    return out, pages


def expected(p: PatientBundle, types: list[str] | None = None) -> list[dict[str, Any]]:
    members = p.compartment()
    found = members + p.referenced_outside(members)
    return [r for r in found if types is None or r["resourceType"] in types]


def clinical_range(r: dict[str, Any]) -> tuple[Any, Any] | None:
    for key in CLINICAL_DATE.get(r["resourceType"], []):
        v = r.get(key)
        if isinstance(v, str):
            return instant(v)
        if isinstance(v, dict):
            return instant(v["start"])[0], instant(v["end"])[1]
    return None


def test_everything_is_the_compartment_plus_what_it_references_for_every_patient(
        synthea_client: Any, ids: dict[str, str]) -> None:
    """For each of the 12 patients the resources returned equal the expected set, exactly once each."""
    for p in patients():
        got, _ = everything(synthea_client, f"/fhir/Patient/{ids[p.name]}/$everything")
        want = expected(p)
        assert Counter(server_fingerprint(r) for r in got) == bundle_fingerprints(p, want), p.name
        assert len(got) == len(want) == len(p.entries)  # Synthea bundles hold exactly one patient's record


def test_count_pages_through_next_links_without_repeats_or_gaps(synthea_client: Any, ids: dict[str, str]) -> None:
    """_count=50 splits the largest record into pages whose union is the expected set."""
    p = max(patients(), key=lambda b: len(b.entries))
    got, pages = everything(synthea_client, f"/fhir/Patient/{ids[p.name]}/$everything?_count=50")
    assert Counter(server_fingerprint(r) for r in got) == bundle_fingerprints(p, expected(p))
    assert pages >= len(p.compartment()) // 50


def test_type_filter_keeps_only_the_listed_types(synthea_client: Any, ids: dict[str, str]) -> None:
    """_type=Observation,Organization returns those types only (Organizations the record references)."""
    p = patients()[0]
    types = ["Observation", "Organization"]
    got, _ = everything(synthea_client, f"/fhir/Patient/{ids[p.name]}/$everything?_type={','.join(types)}&_count=7")
    assert {r["resourceType"] for r in got} == set(types)
    assert Counter(server_fingerprint(r) for r in got) == bundle_fingerprints(p, expected(p, types))


@pytest.mark.parametrize("bounds", ["start-end", "start", "end"])
def test_start_and_end_select_by_clinical_date(synthea_client: Any, ids: dict[str, str], bounds: str) -> None:
    """start/end keep resources whose clinical date overlaps [start, end] (dated types only here)."""
    p = max(patients(), key=lambda b: len(b.of_type("Observation")))
    days = sorted(clinical_range(r)[0].date().isoformat() for r in expected(p, DATED))  # type: ignore[index]
    first, second = days[len(days) // 3], days[2 * len(days) // 3]
    start = {"start-end": first, "start": second[:7], "end": None}[bounds]
    end = {"start-end": second, "start": None, "end": first[:4]}[bounds]
    lo = instant(start)[0] if start else None
    hi = instant(end)[1] if end else None

    def inside(r: dict[str, Any]) -> bool:
        rng = clinical_range(r)
        assert rng is not None, r["resourceType"]
        return (lo is None or rng[1] > lo) and (hi is None or rng[0] < hi)
    want = [r for r in expected(p, DATED) if inside(r)]
    params = f"_type={','.join(DATED)}" + (f"&start={start}" if start else "") + (f"&end={end}" if end else "")
    got, _ = everything(synthea_client, f"/fhir/Patient/{ids[p.name]}/$everything?{params}")
    assert Counter(server_fingerprint(r) for r in got) == bundle_fingerprints(p, want)
    assert 0 < len(want) < len(expected(p, DATED))


def test_since_returns_only_what_changed(synthea_client: Any, ids: dict[str, str]) -> None:
    """_since after the import returns only the resource rewritten since (same content, new version)."""
    p = patients()[1]
    pid = ids[p.name]
    before, _ = everything(synthea_client, f"/fhir/Patient/{pid}/$everything?_type=Condition")
    target = before[0]
    stored = ok(synthea_client.put(f"/fhir/Condition/{target['id']}", json=target))
    since = stored["meta"]["lastUpdated"]
    got, _ = everything(synthea_client, f"/fhir/Patient/{pid}/$everything?_since={q(since).replace('+', '%2B')}")
    assert [(r["resourceType"], r["id"], r["meta"]["versionId"]) for r in got] == [("Condition", target["id"], "2")]


def test_unknown_patient_is_404_and_other_patients_never_leak(synthea_client: Any, ids: dict[str, str]) -> None:
    """$everything of an unknown id is 404; no patient's result holds another patient's resources."""
    ok(synthea_client.get("/fhir/Patient/not-a-patient/$everything"), 404)
    a, b = patients()[2], patients()[3]
    got, _ = everything(synthea_client, f"/fhir/Patient/{ids[a.name]}/$everything")
    refs = {x["subject"]["reference"] for x in got if "subject" in x and "Patient/" in x["subject"]["reference"]}
    assert refs == {f"Patient/{ids[a.name]}"} and f"Patient/{ids[b.name]}" not in refs


def test_only_compartment_types_are_members(synthea_client: Any, ids: dict[str, str]) -> None:
    """A Binary whose securityContext is the patient is not in the R4 compartment, so not in $everything."""
    p = patients()[4]
    pid = ids[p.name]
    ok(synthea_client.post("/fhir/Binary", json={"resourceType": "Binary", "contentType": "text/plain", "data": "aGk=",
                                                 "securityContext": {"reference": f"Patient/{pid}"}}), 201)
    got, _ = everything(synthea_client, f"/fhir/Patient/{pid}/$everything")
    assert "Binary" not in {r["resourceType"] for r in got}
    assert Counter(server_fingerprint(r) for r in got) == bundle_fingerprints(p, expected(p))
