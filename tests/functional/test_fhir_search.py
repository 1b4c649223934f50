"""Search parameter types on a small hand-made data set whose every expected answer is written out."""
from __future__ import annotations

from typing import Any

import pytest

from tests.support.fhirapi import create, matches, ok, q, total

PLACES = [("Zoë", "Brontë", "Łódź"), ("Zoe", "Bronte", "Lodz"), ("ZOEY", "Ibrahim", "Paris"), ("Anna", "Zoelle", "Rome")]


@pytest.fixture(scope="module")
def data(module_client: Any) -> dict[str, Any]:
    """Patients with accented names, Encounters with periods, RiskAssessments, ValueSets and references."""
    c = module_client
    pats = [create(c, {"resourceType": "Patient", "name": [{"given": [g], "family": f}],
                       "address": [{"city": city}], "birthDate": f"19{70 + i}-0{i + 1}-15",
                       "identifier": [{"system": "urn:mrn", "value": f"MRN-{i}"}]})["id"]
            for i, (g, f, city) in enumerate(PLACES)]
    periods = [("2020-03-01T23:00:00Z", "2020-03-02T01:00:00Z"),  # straddles midnight into 2 March
               ("2020-03-02T10:00:00Z", "2020-03-02T11:00:00Z"),  # inside 2 March
               ("2020-03-02T23:30:00Z", "2020-03-03T00:30:00Z"),  # straddles midnight out of 2 March
               ("2020-02-20T10:00:00Z", "2020-03-10T10:00:00Z"),  # contains 2 March
               ("2020-03-05T00:00:00Z", None)]  # open ended
    encs = []
    for n, (start, end) in enumerate(periods):
        period = {"start": start, **({"end": end} if end else {})}
        encs.append(create(c, {"resourceType": "Encounter", "status": "finished", "period": period,
                               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                               "subject": {"reference": f"Patient/{pats[n % 2]}"}})["id"])
    risks = [create(c, {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": f"Patient/{pats[0]}"},
                        "prediction": [{"probabilityDecimal": p}]})["id"] for p in (0.02, 0.25, 0.5, 0.75)]
    sets = [create(c, {"resourceType": "ValueSet", "status": "active", "url": url})["id"] for url in (
        "http://example.org/fhir/ValueSet/colors", "http://example.org/fhir/ValueSet/colors/warm",
        "http://example.org/fhir/ValueSet", "http://other.org/ValueSet/colors")]
    foreign = create(c, {"resourceType": "Observation", "status": "final", "code": {"text": "remote"},
                         "subject": {"reference": "http://elsewhere.example/fhir/Patient/77"}})["id"]
    return {"patients": pats, "encounters": encs, "risks": risks, "valuesets": sets, "foreign": foreign}


def ids(client: Any, url: str) -> list[str]:
    return sorted(r["id"] for r in matches(ok(client.get(url + ("&" if "?" in url else "?") + "_count=100"))))


def test_string_search_folds_case_and_accents_unless_exact(module_client: Any, data: dict[str, Any]) -> None:
    """'zoe' finds Zoë, Zoe and ZOEY by prefix; :exact keeps the accent and case; :contains finds Zoelle."""
    c, p = module_client, data["patients"]
    assert ids(c, "/fhir/Patient?given=zoe") == sorted(p[:3])
    assert ids(c, "/fhir/Patient?given=ZOË") == sorted(p[:3])
    assert ids(c, f"/fhir/Patient?given:exact={q('Zoë')}") == [p[0]]
    assert ids(c, "/fhir/Patient?given:exact=zoe") == []
    assert ids(c, "/fhir/Patient?name=zoe") == sorted(p)  # name covers family Zoelle too
    assert ids(c, "/fhir/Patient?family:contains=ONT") == sorted(p[:2])
    assert ids(c, f"/fhir/Patient?address-city={q('ŁÓDŹ')}") == [p[0]]  # Ł is a letter, not an accented L
    assert ids(c, "/fhir/Patient?address-city=lodz") == [p[1]]
    assert ids(c, "/fhir/Patient?family=ront") == []


def test_string_and_token_missing(module_client: Any, data: dict[str, Any]) -> None:
    """:missing=true finds resources without any value of the parameter."""
    c = module_client
    assert ids(c, "/fhir/Patient?phone:missing=true") == sorted(data["patients"])
    assert ids(c, "/fhir/Patient?family:missing=false") == sorted(data["patients"])
    assert ids(c, "/fhir/Patient?address-state:missing=false") == []


@pytest.mark.parametrize("prefix,expected", [
    ("eq", [1]), ("", [1]), ("ne", [0, 2, 3, 4]), ("gt", [2, 3, 4]), ("lt", [0, 3]), ("ge", [1, 2, 3, 4]),
    ("le", [0, 1, 3]), ("sa", [4]), ("eb", []),
])
def test_date_prefixes_on_periods(module_client: Any, data: dict[str, Any], prefix: str,
                                  expected: list[int]) -> None:
    """The R4 range rules on Periods, including ones straddling the day's boundaries and open ends."""
    want = sorted(data["encounters"][i] for i in expected)
    assert ids(module_client, f"/fhir/Encounter?date={prefix}2020-03-02") == want


def test_date_at_second_precision_and_timezones(module_client: Any, data: dict[str, Any]) -> None:
    """A dateTime with an offset is the same instant as its UTC form."""
    e = data["encounters"]
    assert ids(module_client, "/fhir/Encounter?date=" + q("ge2020-03-02T12:00:00+02:00") + "&date=lt2020-03-02T11:00:00Z") \
        == sorted([e[1], e[3]])
    assert ids(module_client, "/fhir/Encounter?date=" + q("eb2020-03-02T01:00:02Z")) == [e[0]]


@pytest.mark.parametrize("value,expected", [
    ("0.5", [2]), ("eq0.50", [2]), ("0.3", [1]), ("gt0.25", [2, 3]), ("ge0.25", [1, 2, 3]), ("lt0.5", [0, 1]),
    ("le0.5", [0, 1, 2]), ("ne0.5", [0, 1, 3]), ("0.02,0.75", [0, 3]), ("eq1e-2", []),
])
def test_number_prefixes_and_precision(module_client: Any, data: dict[str, Any], value: str,
                                       expected: list[int]) -> None:
    """number parameters honour prefixes and the implicit precision of the value (0.3 covers 0.25..0.35)."""
    want = sorted(data["risks"][i] for i in expected)
    assert ids(module_client, f"/fhir/RiskAssessment?probability={q(value)}") == want


def test_uri_exact_below_and_above(module_client: Any, data: dict[str, Any]) -> None:
    """uri matches exactly, :below matches descendants, :above matches ancestors."""
    c, v = module_client, data["valuesets"]
    assert ids(c, "/fhir/ValueSet?url=http://example.org/fhir/ValueSet/colors") == [v[0]]
    assert ids(c, "/fhir/ValueSet?url:below=http://example.org/fhir/ValueSet/colors") == sorted(v[:2])
    assert ids(c, "/fhir/ValueSet?url:above=http://example.org/fhir/ValueSet/colors/warm/x") == sorted(v[:3])
    assert ids(c, "/fhir/ValueSet?url=http://example.org/fhir/ValueSet/color") == []


def test_reference_forms_are_equivalent(module_client: Any, data: dict[str, Any]) -> None:
    """patient=id, patient=Patient/id, the absolute local URL and subject:Patient=id are the same search."""
    c, p, e = module_client, data["patients"], data["encounters"]
    want = sorted([e[0], e[2], e[4]])
    for form in (p[0], f"Patient/{p[0]}", f"http://localhost/fhir/Patient/{p[0]}"):
        assert ids(c, f"/fhir/Encounter?patient={q(form)}") == want
        assert ids(c, f"/fhir/Encounter?subject={q(form)}") == want
    assert ids(c, f"/fhir/Encounter?subject:Patient={p[0]}") == want
    assert ids(c, f"/fhir/Encounter?patient={p[0]},{p[1]}") == sorted(e)
    assert ids(c, "/fhir/Observation?subject=" + q("http://elsewhere.example/fhir/Patient/77")) == [data["foreign"]]
    assert ids(c, f"/fhir/Encounter?subject:Group={p[0]}") == []
    assert ids(c, "/fhir/Observation?patient=77") == []  # a remote Patient/77 is not the local one


def test_identifier_token_and_lastupdated_instant(module_client: Any, data: dict[str, Any]) -> None:
    """identifier system|value selects one; _lastUpdated=eq<meta.lastUpdated> finds the resource itself."""
    c = module_client
    assert ids(c, "/fhir/Patient?identifier=urn:mrn|MRN-2") == [data["patients"][2]]
    assert ids(c, "/fhir/Patient?identifier=MRN-2,MRN-3") == sorted(data["patients"][2:])
    for pid in data["patients"]:
        stamp = ok(c.get(f"/fhir/Patient/{pid}"))["meta"]["lastUpdated"]
        assert pid in ids(c, f"/fhir/Patient?_lastUpdated={q(stamp)}")
        assert pid not in ids(c, f"/fhir/Patient?_lastUpdated={q('gt' + stamp)}")


def test_sort_is_stable_and_total_counts(module_client: Any, data: dict[str, Any]) -> None:
    """_sort on strings folds accents (ties go to the next key); -_lastUpdated is newest first."""
    c = module_client
    fam = [r["name"][0]["family"] for r in matches(ok(c.get("/fhir/Patient?_sort=family,-birthdate")))]
    assert fam == ["Bronte", "Brontë", "Ibrahim", "Zoelle"]
    newest = [r["id"] for r in matches(ok(c.get("/fhir/Patient?_sort=-_lastUpdated")))]
    assert newest == list(reversed(data["patients"]))
    assert total(c, "/fhir/Encounter?status=finished") == 5
