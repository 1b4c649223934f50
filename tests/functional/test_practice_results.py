"""Post result: a final laboratory Observation from the packaged LOINC list or any LOINC code, its
interpretation (H/L, critical beyond the list's limits) computed from the range, seen in Health at once;
corrections make an `amended` version or mark it `entered-in-error`, and the patient's history shows it."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from portal_ui.practice import catalog, results
from tests.conftest import ROOT
from tests.support import portal_data as pd
from tests.support import practice as pr

LAB = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.fixture
def world(app, client, fhir):
    staff_uid, dr = pr.add_staff(app, fhir)
    pid = pr.patient(fhir, email="pat@example.com", gender="female")
    patient_uid = pd.add_user(app, "pat@example.com", "Pat Portal", "1970-05-04", pid)
    pd.sign_in(app, client, staff_uid)
    return {"pid": pid, "dr": dr, "patient": patient_uid, "staff": staff_uid}


def post(client, pid, **form):
    path = f"/practice/patients/{pid}/results/new"
    return client.post(path, data={"csrf_token": pr.token(client, path), **form})


def obs_of(resp, fhir):
    assert resp.status_code == 302, resp.get_data(as_text=True)[-3000:]
    return fhir.read(pd.SYS, "Observation", resp.headers["Location"].rsplit("/", 1)[1]).json()


def interp(obs):
    return obs.get("interpretation", [{}])[0].get("coding", [{}])[0].get("code")


def test_packaged_list_is_what_the_committed_script_makes():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_lab_tests.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    tests = catalog.lab_tests()
    assert len(tests) >= 30 and all(catalog.valid_loinc(t.code) for t in tests)
    k = catalog.lab_test("2823-3")
    assert (k.unit, k.low, k.high, k.critical_low, k.critical_high) == ("mmol/L", 3.5, 5.1, 2.5, 6.5)
    assert catalog.lab_test("718-7").range_for("female") == (12, 16)
    assert len(catalog.document_types()) >= 10
    assert not catalog.valid_loinc("2345-8") and catalog.valid_loinc("2345-7")


@pytest.mark.parametrize("value,expected", [(4.2, "N"), (5.2, "H"), (3.4, "L"), (6.5, "HH"), (2.5, "LL")])
def test_interpretation_from_range_and_critical_limits(value, expected):
    assert results.interpretation(value, 3.5, 5.1, 2.5, 6.5) == expected


def test_post_from_the_list_is_a_final_lab_observation_the_patient_sees_at_once(app, client, fhir, world):
    obs = obs_of(post(client, world["pid"], test="2823-3", value="6.8", date="2025-03-01"), fhir)
    assert obs["status"] == "final" and obs["category"][0]["coding"][0] == {"system": LAB, "code": "laboratory",
                                                                            "display": "Laboratory"}
    assert obs["code"]["coding"][0] == {"system": "http://loinc.org", "code": "2823-3",
                                        "display": "Potassium [Moles/volume] in Serum or Plasma"}
    assert obs["subject"] == {"reference": f"Patient/{world['pid']}"} and obs["effectiveDateTime"] == "2025-03-01"
    assert obs["valueQuantity"] == {"value": 6.8, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                                    "code": "mmol/L"}
    assert obs["referenceRange"][0]["low"]["value"] == 3.5 and obs["referenceRange"][0]["high"]["value"] == 5.1
    assert interp(obs) == "HH"
    assert obs["performer"][0]["reference"] == f"Practitioner/{world['dr']}"
    patient = app.test_client()
    pd.sign_in(app, patient, world["patient"])
    html = patient.get("/health").get_data(as_text=True)
    assert "Potassium" in html and "6.8" in html and "Critical high" in html


def test_range_typed_in_wins_and_sex_specific_default(client, fhir, world):
    obs = obs_of(post(client, world["pid"], test="718-7", value="12.5", date="2025-03-01"), fhir)
    assert (obs["referenceRange"][0]["low"]["value"], obs["referenceRange"][0]["high"]["value"]) == (12, 16)
    assert interp(obs) == "N"
    obs = obs_of(post(client, world["pid"], test="718-7", value="12.5", low="13", high="17", date="2025-03-01"), fhir)
    assert interp(obs) == "L"
    # another unit: no default range, no critical limits from the list
    obs = obs_of(post(client, world["pid"], test="2823-3", value="99", unit="mg/dL", date="2025-03-01"), fhir)
    assert "referenceRange" not in obs and "interpretation" not in obs
    assert obs["valueQuantity"] == {"value": 99, "unit": "mg/dL"}


def test_any_loinc_code(client, fhir, world):
    obs = obs_of(post(client, world["pid"], test="other", loinc="14647-2", test_name="Cholesterol [Moles/volume]",
                      value="7.1", unit="mmol/L", high="5.2", date="2025-02-01"), fhir)
    assert obs["code"]["coding"][0]["code"] == "14647-2" and interp(obs) == "H"
    assert "system" not in obs["valueQuantity"]


@pytest.mark.parametrize("form,message", [
    ({}, "Choose a test from the list"),
    ({"test": "other", "loinc": "2345-8", "test_name": "x", "value": "1", "unit": "u", "date": "2025-01-01"},
     "the last digit is a check digit"),
    ({"test": "other", "loinc": "14647-2", "value": "1", "unit": "u", "date": "2025-01-01"}, "Enter the test"),
    ({"test": "2345-7", "value": "high", "date": "2025-01-01"}, "must be a number"),
    ({"test": "2345-7", "value": "", "date": "2025-01-01"}, "Enter the value"),
    ({"test": "2345-7", "value": "90", "date": "2999-01-01"}, "not in the future"),
    ({"test": "2345-7", "value": "90", "date": "2025-01-01", "low": "100", "high": "50"}, "must not be below"),
    ({"test": "2345-7", "value": "nan", "date": "2025-01-01"}, "must be a number"),
])
def test_bad_input_names_the_field_and_stores_nothing(client, fhir, world, form, message):
    r = post(client, world["pid"], **form)
    assert r.status_code == 422 and message in r.get_data(as_text=True)
    assert pr.search(fhir, "Observation") == []


def test_correction_is_an_amended_version_and_the_patient_history_shows_it(app, client, fhir, world):
    obs = obs_of(post(client, world["pid"], test="2345-7", value="250", date="2025-03-01"), fhir)
    page = f"/practice/patients/{world['pid']}/results/{obs['id']}"
    r = client.post(page + "/correct", data={"csrf_token": pr.token(client, page), "value": "95",
                                             "unit": "mg/dL", "low": "70", "high": "110", "reason": "Typo: 95"})
    assert r.status_code == 302
    cur = fhir.read(pd.SYS, "Observation", obs["id"]).json()
    assert cur["status"] == "amended" and cur["meta"]["versionId"] == "2"
    assert cur["valueQuantity"]["value"] == 95 and interp(cur) == "N"
    assert "Corrected on" in cur["note"][-1]["text"] and "Typo: 95" in cur["note"][-1]["text"]
    assert fhir.vread(pd.SYS, "Observation", obs["id"], "1").json()["valueQuantity"]["value"] == 250
    html = client.get(page).get_data(as_text=True)
    assert "History of this result" in html and "amended" in html and "250 mg/dL" in html
    patient = app.test_client()
    pd.sign_in(app, patient, world["patient"])
    health = patient.get("/health").get_data(as_text=True)
    assert "<strong>95</strong>" in health and "Corrected</span>" in health and "Typo: 95" in health
    bad = client.post(page + "/correct", data={"csrf_token": pr.token(client, page), "value": "95"})
    assert bad.status_code == 422 and "Say why" in bad.get_data(as_text=True)


def test_entered_in_error_leaves_the_latest_and_stays_in_the_history(app, client, fhir, world):
    good = obs_of(post(client, world["pid"], test="2345-7", value="92", date="2025-01-01"), fhir)
    wrong = obs_of(post(client, world["pid"], test="2345-7", value="480", date="2025-03-01"), fhir)
    page = f"/practice/patients/{world['pid']}/results/{wrong['id']}"
    assert client.post(page + "/withdraw", data={"csrf_token": pr.token(client, page)}).status_code == 422
    r = client.post(page + "/withdraw", data={"csrf_token": pr.token(client, page),
                                              "withdraw_reason": "Wrong patient"})
    assert r.status_code == 302
    assert fhir.read(pd.SYS, "Observation", wrong["id"]).json()["status"] == "entered-in-error"
    assert "Correct result" not in client.get(page).get_data(as_text=True)
    patient = app.test_client()
    pd.sign_in(app, patient, world["patient"])
    health = patient.get("/health").get_data(as_text=True)
    latest = re.search(r'<td data-label="Result">(.*?)</td>', health).group(1)
    assert "<strong>92</strong>" in latest
    assert "<del>480 mg/dL</del>" in health and "Withdrawn: entered in error" in health and "Wrong patient" in health
    assert good["id"] != wrong["id"]


def test_concurrent_correction_is_refused_with_a_page(client, fhir, world):
    obs = obs_of(post(client, world["pid"], test="2345-7", value="250", date="2025-03-01"), fhir)
    page = f"/practice/patients/{world['pid']}/results/{obs['id']}"
    token = pr.token(client, page)
    body = fhir.read(pd.SYS, "Observation", obs["id"]).json()
    body.pop("meta")
    fhir.update(pd.SYS, "Observation", obs["id"], dict(body, issued="2025-03-02T00:00:00Z"))
    # the form the staff member opened was for version 1; results.correct re-reads, so simulate the race:
    from portal_ui.practice.results import Result, _save
    stale = Result(obs["id"], "", "", "final", "", "", "", None, None, "", 1, [], body)
    from portal_ui.fhir_data import PortalError
    with pytest.raises(PortalError) as err:
        _save(fhir, pd.SYS, stale, dict(body))
    assert err.value.status == 409 and "changed this result" in err.value.message
    assert token
