"""Search answers on the 12 imported Synthea patients equal answers computed from the Synthea JSON."""
from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from tests.support.fhirapi import included, link, matches, ok, q, search_all, total
from tests.support.synthea import (
    LOINC,
    OBS_CATEGORY,
    SYNTHEA_ID,
    PatientBundle,
    all_resources,
    bundle_fingerprints,
    codings,
    date_matches,
    has_code,
    instant,
    patients,
    server_fingerprint,
)

BASE = "http://localhost/fhir"


@pytest.fixture(scope="module")
def ids(synthea_client: Any) -> dict[str, str]:
    """Bundle name -> server id of its Patient, found by the Synthea identifier."""
    out = {}
    for p in patients():
        body = ok(synthea_client.get(f"/fhir/Patient?identifier={q(SYNTHEA_ID + '|' + p.identifier)}"))
        assert body["total"] == 1
        out[p.name] = matches(body)[0]["id"]
    return out


def biggest() -> PatientBundle:
    return max(patients(), key=lambda p: len(p.of_type("Observation")))


def test_lab_counts_per_patient_equal_bundle_counts_in_every_reference_form(synthea_client: Any,
                                                                              ids: dict[str, str]) -> None:
    """category=laboratory per patient equals the bundle's lab Observations, whatever the reference form."""
    for p in patients():
        pid = ids[p.name]
        want = sum(has_code(o, "category", "laboratory", OBS_CATEGORY) for o in p.of_type("Observation"))
        for ref in (pid, f"Patient/{pid}", f"{BASE}/Patient/{pid}"):
            assert total(synthea_client, f"/fhir/Observation?patient={q(ref)}&category=laboratory") == want
        assert total(synthea_client, f"/fhir/Observation?subject={q('Patient/' + pid)}"
                                     f"&category={q(OBS_CATEGORY + '|laboratory')}") == want
        assert total(synthea_client, f"/fhir/Observation?subject:Patient={pid}&category=laboratory") == want


def test_token_forms_system_code_bare_code_no_system_and_system_only(synthea_client: Any) -> None:
    """system|code, code, |code (no system) and system| count exactly what the JSON holds."""
    obs = all_resources("Observation")
    glucose = sum(has_code(o, "code", "2339-0", LOINC) for o in obs)
    assert glucose > 0
    assert total(synthea_client, f"/fhir/Observation?code={q(LOINC + '|2339-0')}") == glucose
    assert total(synthea_client, "/fhir/Observation?code=2339-0") == glucose
    no_system = sum(any(c.get("code") == "2339-0" and "system" not in c for c in codings(o, "code")) for o in obs)
    assert total(synthea_client, "/fhir/Observation?code=|2339-0") == no_system == 0
    loinc = sum(any(c.get("system") == LOINC for c in codings(o, "code")) for o in obs)
    assert total(synthea_client, f"/fhir/Observation?code={q(LOINC + '|')}") == loinc == len(obs)
    assert total(synthea_client, "/fhir/Observation?code=http://snomed.info/sct|") == 0


def test_token_not_text_and_missing_modifiers(synthea_client: Any) -> None:
    """:not keeps resources without the code, :text searches display/text case-insensitively, :missing."""
    obs = all_resources("Observation")
    labs = sum(has_code(o, "category", "laboratory") for o in obs)
    assert total(synthea_client, "/fhir/Observation?category:not=laboratory") == len(obs) - labs
    word = "cholesterol"
    want = sum(any(word in (t or "").lower() for t in [o["code"].get("text")] + [c.get("display") for c in
                                                                                 codings(o, "code")]) for o in obs)
    assert want > 0
    assert total(synthea_client, "/fhir/Observation?code:text=CHOLESTEROL") == want
    no_qty = sum("valueQuantity" not in o and "valueSampledData" not in o for o in obs)
    assert total(synthea_client, "/fhir/Observation?value-quantity:missing=true") == no_qty
    assert total(synthea_client, "/fhir/Observation?value-quantity:missing=false") == len(obs) - no_qty
    dead = sum("deceasedDateTime" in p.patient.resource or p.patient.resource.get("deceasedBoolean") is True
               for p in patients())
    assert total(synthea_client, "/fhir/Patient?deceased=true") == dead
    assert total(synthea_client, "/fhir/Patient?deceased=false") == len(patients()) - dead


def test_string_default_exact_and_contains(synthea_client: Any) -> None:
    """Strings match by case-insensitive prefix by default, exactly with :exact, anywhere with :contains."""
    pats = [p.patient.resource for p in patients()]

    def fam(pred: Any) -> int:
        return sum(any(pred(n.get("family", "")) for n in r["name"]) for r in pats)
    assert total(synthea_client, "/fhir/Patient?family=mc") == fam(lambda f: f.lower().startswith("mc")) > 0
    assert total(synthea_client, "/fhir/Patient?family:exact=McDermott") == fam(lambda f: f == "McDermott") == 1
    assert total(synthea_client, "/fhir/Patient?family:exact=mcdermott") == 0
    assert total(synthea_client, "/fhir/Patient?family:contains=ER") == fam(lambda f: "er" in f.lower()) > 1
    prefixed = sum(any("Mrs." in n.get("prefix", []) for n in r["name"]) for r in pats)
    assert total(synthea_client, "/fhir/Patient?name=mrs") == prefixed > 0
    assert total(synthea_client, "/fhir/Patient?address-city=taunton") == sum(
        r["address"][0]["city"] == "Taunton" for r in pats)


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"])
def test_date_prefixes_on_partial_dates(synthea_client: Any, ids: dict[str, str], prefix: str) -> None:
    """Each date prefix on year, month and day values matches the R4 rules applied to the JSON."""
    p = biggest()
    obs = p.of_type("Observation")
    days = sorted(o["effectiveDateTime"][:10] for o in obs)
    day = days[len(days) // 2]
    for value in (day[:4], day[:7], day):
        want = sum(date_matches(prefix, instant(o["effectiveDateTime"]), value) for o in obs)
        got = total(synthea_client, f"/fhir/Observation?patient={ids[p.name]}&date={prefix}{value}")
        assert got == want, (prefix, value)
    encounters = [e for b in patients() for e in b.of_type("Encounter")]
    for value in (day[:7], day):
        want = sum(date_matches(prefix, (instant(e["period"]["start"])[0], instant(e["period"]["end"])[1]), value)
                   for e in encounters)
        assert total(synthea_client, f"/fhir/Encounter?date={prefix}{value}") == want, (prefix, value)
    births = [b.patient.resource["birthDate"] for b in patients()]
    for value in ("1970", "1971-12", "1971-12-07"):
        want = sum(date_matches(prefix, instant(b), value) for b in births)
        assert total(synthea_client, f"/fhir/Patient?birthdate={prefix}{value}") == want, (prefix, value)


@pytest.mark.parametrize("prefix", ["", "eq", "ne", "gt", "lt", "ge", "le"])
def test_quantity_prefixes_and_units(synthea_client: Any, prefix: str) -> None:
    """value-quantity with prefixes, implicit precision of eq, and unit code/system filters."""
    obs = [o for o in all_resources("Observation") if has_code(o, "code", "2339-0")]
    values = sorted(Decimal(str(o["valueQuantity"]["value"])) for o in obs)
    mid = values[len(values) // 2].quantize(Decimal(1))

    def want(v: Decimal, unit: str = "mg/dL") -> int:
        lo, hi = v - Decimal("0.5"), v + Decimal("0.5")
        cmp = {"": lambda x: lo <= x < hi, "eq": lambda x: lo <= x < hi, "ne": lambda x: not (lo <= x < hi),
               "gt": lambda x: x > v, "lt": lambda x: x < v, "ge": lambda x: x >= v, "le": lambda x: x <= v}[prefix]
        return sum(cmp(Decimal(str(o["valueQuantity"]["value"]))) and o["valueQuantity"]["code"] == unit for o in obs)
    url = "/fhir/Observation?code=2339-0&value-quantity="
    assert total(synthea_client, url + f"{prefix}{mid}") == want(mid)
    assert total(synthea_client, url + q(f"{prefix}{mid}|http://unitsofmeasure.org|mg/dL")) == want(mid)
    assert total(synthea_client, url + q(f"{prefix}{mid}||mg/dL")) == want(mid)
    assert total(synthea_client, url + q(f"{prefix}{mid}|http://unitsofmeasure.org|mmol/L")) == 0


def test_or_by_comma_and_and_by_repetition(synthea_client: Any) -> None:
    """Comma-separated values are ORed; a repeated parameter is ANDed."""
    obs = all_resources("Observation")
    either = sum(has_code(o, "code", "2339-0") or has_code(o, "code", "6299-2") for o in obs)
    assert total(synthea_client, "/fhir/Observation?code=2339-0,6299-2") == either
    between = sum("2010" <= o["effectiveDateTime"][:4] < "2013" for o in obs)
    assert total(synthea_client, "/fhir/Observation?date=ge2010&date=lt2013") == between
    assert total(synthea_client, "/fhir/Observation?code=2339-0&code=6299-2") == 0


def test_chaining_and_has(synthea_client: Any, ids: dict[str, str]) -> None:
    """subject:Patient.name= (one level of chaining) and _has select through references."""
    p = next(b for b in patients() if b.family == "Castellanos")
    n_obs = len(p.of_type("Observation"))
    assert total(synthea_client, "/fhir/Observation?subject:Patient.name=castellanos") == n_obs
    assert total(synthea_client, "/fhir/Observation?patient.family=Castellanos") == n_obs
    assert total(synthea_client, "/fhir/Encounter?subject:Patient.birthdate=1991-06-08") == len(
        p.of_type("Encounter"))
    with_code = sorted(ids[b.name] for b in patients()
                       if any(has_code(o, "code", "2339-0") for o in b.of_type("Observation")))
    body = ok(synthea_client.get("/fhir/Patient?_has:Observation:patient:code=2339-0&_count=50"))
    assert sorted(r["id"] for r in matches(body)) == with_code


def test_include_revinclude_and_iterate(synthea_client: Any, ids: dict[str, str]) -> None:
    """_include adds the referenced Patient, _revinclude the Observations of Encounters, :iterate goes on."""
    p = biggest()
    pid = ids[p.name]
    body = ok(synthea_client.get(f"/fhir/Observation?patient={pid}&code=8302-2&_include=Observation:patient"))
    assert [(r["resourceType"], r["id"]) for r in included(body)] == [("Patient", pid)]
    encs = ok(synthea_client.get(f"/fhir/Encounter?patient={pid}&_count=1000&_revinclude=Observation:encounter"))
    assert len(matches(encs)) == len(p.of_type("Encounter"))
    assert sorted(r["resourceType"] for r in included(encs)) == ["Observation"] * sum(
        "encounter" in o for o in p.of_type("Observation"))
    reqs = ok(synthea_client.get(f"/fhir/MedicationRequest?patient={pid}&_count=5&_include=MedicationRequest:encounter"
                                 "&_include:iterate=Encounter:service-provider"))
    kinds = {r["resourceType"] for r in included(reqs)}
    assert kinds == {"Encounter", "Organization"}
    no_iter = ok(synthea_client.get(f"/fhir/MedicationRequest?patient={pid}&_count=5"
                                    "&_include=MedicationRequest:encounter&_include=Encounter:service-provider"))
    assert {r["resourceType"] for r in included(no_iter)} == {"Encounter"}


def test_sort_by_several_keys_with_descending(synthea_client: Any, ids: dict[str, str]) -> None:
    """_sort=code,-date orders by code ascending, then newest first, across every page."""
    p = biggest()
    got = search_all(synthea_client, f"/fhir/Observation?patient={ids[p.name]}&_sort=code,-date&_count=37")
    keys = [(o["code"]["coding"][0]["code"], o["effectiveDateTime"]) for o in got]
    want = sorted(((o["code"]["coding"][0]["code"], o["effectiveDateTime"]) for o in p.of_type("Observation")),
                  key=lambda k: (k[0], [-ord(c) for c in k[1]]))
    assert keys == want
    dates = [o["birthDate"] for o in search_all(synthea_client, "/fhir/Patient?_sort=-birthdate&_count=5")]
    assert dates == sorted((b.patient.resource["birthDate"] for b in patients()), reverse=True)


def test_summary_count_true_elements_and_total(synthea_client: Any) -> None:
    """_summary=count has no entries, _summary=true and _elements trim and tag, _total=accurate counts."""
    n = len(all_resources("Encounter"))
    body = ok(synthea_client.get("/fhir/Encounter?_summary=count"))
    assert body["total"] == n and "entry" not in body
    body = ok(synthea_client.get("/fhir/Encounter?_total=accurate&_count=3"))
    assert body["total"] == n and len(matches(body)) == 3
    summary = matches(ok(synthea_client.get("/fhir/Patient?_summary=true&_count=1")))[0]
    assert "text" not in summary and "extension" not in summary and "birthDate" in summary
    assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    trimmed = matches(ok(synthea_client.get("/fhir/Patient?_elements=gender,birthDate&_count=1")))[0]
    assert set(trimmed) == {"resourceType", "id", "meta", "gender", "birthDate"}


def test_post_search_equals_get(synthea_client: Any, ids: dict[str, str]) -> None:
    """POST _search with a form body returns what the same GET returns."""
    pid = ids[biggest().name]
    get = ok(synthea_client.get(f"/fhir/Observation?patient={pid}&category=laboratory&_count=500"))
    post = ok(synthea_client.post("/fhir/Observation/_search", data={"patient": pid, "category": "laboratory",
                                                                     "_count": "500"}))
    assert [r["id"] for r in matches(post)] == [r["id"] for r in matches(get)] != []


def test_id_lastupdated_and_unknown_parameters(synthea_client: Any, ids: dict[str, str]) -> None:
    """_id and _lastUpdated select; unknown params are reported (lenient) or refused (strict)."""
    some = sorted(ids.values())[:3]
    assert total(synthea_client, f"/fhir/Patient?_id={','.join(some)}") == 3
    assert total(synthea_client, f"/fhir/Patient?_id:not={some[0]}") == len(ids) - 1
    assert total(synthea_client, "/fhir/Patient?_lastUpdated=gt2000-01-01") == len(ids)
    assert total(synthea_client, "/fhir/Patient?_lastUpdated=lt2000-01-01") == 0
    lenient = ok(synthea_client.get("/fhir/Patient?foo=bar&_count=100"))
    assert len(matches(lenient)) == len(ids)
    assert "foo" in lenient["entry"][-1]["resource"]["issue"][0]["diagnostics"]
    strict = ok(synthea_client.get("/fhir/Patient?foo=bar", headers={"Prefer": "handling=strict"}), 400)
    assert strict["resourceType"] == "OperationOutcome"


def test_paging_next_and_previous_cover_the_expected_set_once(synthea_client: Any, ids: dict[str, str]) -> None:
    """next links reach every Observation of the patient exactly once; previous links walk back the same pages."""
    p = biggest()
    url = f"/fhir/Observation?patient={ids[p.name]}&_count=13"
    got = search_all(synthea_client, url)
    assert bundle_fingerprints(p, p.of_type("Observation")) == Counter(server_fingerprint(r) for r in got)
    pages: list[list[str]] = []
    bundle = ok(synthea_client.get(url))
    while True:
        pages.append([r["id"] for r in matches(bundle)])
        nxt = link(bundle, "next")
        if not nxt:
            break
        bundle = ok(synthea_client.get(nxt))
    assert link(ok(synthea_client.get(url)), "previous") is None
    back: list[list[str]] = []
    while True:
        back.append([r["id"] for r in matches(bundle)])
        prev = link(bundle, "previous")
        if not prev:
            break
        bundle = ok(synthea_client.get(prev))
    assert back == list(reversed(pages))
    assert len(pages) == -(-len(got) // 13)
