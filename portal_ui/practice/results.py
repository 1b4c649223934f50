"""Post result: a final laboratory Observation with its interpretation computed from the range; corrections
make a new version (`amended`) or withdraw it (`entered-in-error`), each with a note saying who and why."""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir_server import AccessContext, FhirError, FhirService, NotFound, PreconditionFailed, concept_text

from ..fhir_data import PortalError
from . import FormError, catalog
from .patients import _date

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory", "display": "Laboratory"}]}
INTERPRETATIONS = {"N": "Normal", "H": "High", "L": "Low", "HH": "Critical high", "LL": "Critical low"}
OTHER = "other"


def now_instant() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def interpretation(value: float, low: float | None, high: float | None, critical_low: float | None = None,
                   critical_high: float | None = None) -> str | None:
    """v3 ObservationInterpretation code: HH/LL at or beyond a critical limit, H/L outside the range, N inside;
    None when there is no range to judge by."""
    if critical_high is not None and value >= critical_high:
        return "HH"
    if critical_low is not None and value <= critical_low:
        return "LL"
    if high is not None and value > high:
        return "H"
    if low is not None and value < low:
        return "L"
    if low is None and high is None:
        return None
    return "N"


def _number(raw: str | None, field: str, what: str, errors: dict[str, str], required: bool = False) -> float | None:
    text = (raw or "").strip().replace(",", ".")
    if not text:
        if required:
            errors[field] = f"Enter the {what}."
        return None
    try:
        value = float(text)
    except ValueError:
        errors[field] = f"The {what} must be a number, like 5.4."
        return None
    if not math.isfinite(value) or abs(value) > 1e12:
        errors[field] = f"The {what} must be a number, like 5.4."
        return None
    return int(value) if value.is_integer() and "." not in text else value


@dataclass
class Measured:
    value: float
    unit: str
    low: float | None
    high: float | None
    code: str | None


def _measure(form: Mapping[str, str], test: catalog.LabTest | None, gender: str | None,
             errors: dict[str, str]) -> Measured | None:
    value = _number(form.get("value"), "value", "value", errors, required=True)
    unit = (form.get("unit") or "").strip() or (test.unit if test else "")
    if not unit:
        errors["unit"] = "Enter the unit, for example mg/dL."
    elif len(unit) > 40:
        errors["unit"] = "The unit is too long."
    low = _number(form.get("low"), "low", "low end of the range", errors)
    high = _number(form.get("high"), "high", "high end of the range", errors)
    same_unit = test is not None and unit == test.unit
    if low is None and high is None and same_unit and not (form.get("low") or form.get("high")):
        assert test is not None
        low, high = test.range_for(gender)
    if low is not None and high is not None and low > high:
        errors["high"] = "The high end of the range must not be below the low end."
    if value is None or errors:
        return None
    crit_low = test.critical_low if same_unit and test else None
    crit_high = test.critical_high if same_unit and test else None
    return Measured(value, unit, low, high, interpretation(value, low, high, crit_low, crit_high))


def _apply(obs: dict[str, Any], m: Measured, ucum: bool) -> None:
    q: dict[str, Any] = {"value": m.value, "unit": m.unit}
    if ucum:
        q.update(system=UCUM, code=m.unit)
    obs["valueQuantity"] = q
    rng: dict[str, Any] = {}
    if m.low is not None:
        rng["low"] = {k: v for k, v in q.items() if k != "value"} | {"value": m.low}
    if m.high is not None:
        rng["high"] = {k: v for k, v in q.items() if k != "value"} | {"value": m.high}
    obs.pop("referenceRange", None)
    if rng:
        obs["referenceRange"] = [rng]
    obs.pop("interpretation", None)
    if m.code:
        obs["interpretation"] = [{"coding": [{"system": INTERP, "code": m.code, "display": INTERPRETATIONS[m.code]}],
                                  "text": INTERPRETATIONS[m.code]}]


def post(svc: FhirService, ctx: AccessContext, patient_id: str, staff: tuple[str | None, str],
         form: Mapping[str, str], gender: str | None = None) -> str:
    """Store a final laboratory Observation; FormError names each field that is wrong."""
    errors: dict[str, str] = {}
    choice = (form.get("test") or "").strip()
    test = catalog.lab_test(choice) if choice and choice != OTHER else None
    code, display = "", ""
    if test is not None:
        code, display = test.code, test.display
    elif choice == OTHER or (form.get("loinc") or "").strip():
        code = (form.get("loinc") or "").strip()
        display = " ".join((form.get("test_name") or "").split())
        known = catalog.lab_test(code)
        if not catalog.valid_loinc(code):
            errors["loinc"] = "Enter a LOINC code such as 2345-7 (the last digit is a check digit)."
        elif known is not None:
            test, display = known, known.display
        elif not display:
            errors["test_name"] = "Enter the test's name as the laboratory reports it."
    else:
        errors["test"] = "Choose a test from the list, or choose \u201cOther LOINC code\u201d and enter the code."
    when = _date(form.get("date", ""), "date", errors, "date the sample was taken")
    m = _measure(form, test, gender, errors)
    if errors or m is None:
        raise FormError(errors)
    obs: dict[str, Any] = {
        "resourceType": "Observation", "status": "final", "category": [CATEGORY],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": test.name if test else display},
        "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": when, "issued": now_instant()}
    if staff[0]:
        obs["performer"] = [{"reference": staff[0], "display": staff[1]}]
    _apply(obs, m, ucum=test is not None and m.unit == test.unit)
    try:
        return svc.create(ctx, "Observation", obs).stored.id
    except FhirError as err:
        raise FormError({"value": "The result could not be stored: " + err.diagnostics}) from err


@dataclass
class Version:
    version: int
    status: str
    value: str
    interpretation: str
    updated: str
    note: str


@dataclass
class Result:
    id: str
    name: str
    code: str
    status: str
    date: str
    value: str
    unit: str
    low: float | None
    high: float | None
    interpretation: str
    version: int
    notes: list[str]
    raw: dict[str, Any]


def _shown(obs: dict[str, Any]) -> tuple[str, str, str]:
    q = obs.get("valueQuantity") or {}
    v = q.get("value")
    value = "" if v is None else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    interp = next((c.get("code", "") for i in obs.get("interpretation", []) for c in i.get("coding", [])), "")
    return value, q.get("unit", ""), interp


def to_result(obs: dict[str, Any]) -> Result:
    value, unit, interp = _shown(obs)
    rr = (obs.get("referenceRange") or [{}])[0]
    code = next((c.get("code", "") for c in (obs.get("code") or {}).get("coding", []) if c.get("system") == LOINC), "")
    return Result(obs.get("id", ""), concept_text(obs.get("code")) or "Test", code, obs.get("status", ""),
                  obs.get("effectiveDateTime", "")[:10], value, unit, (rr.get("low") or {}).get("value"),
                  (rr.get("high") or {}).get("value"), interp, int((obs.get("meta") or {}).get("versionId", 1)),
                  [n.get("text", "") for n in obs.get("note", []) if n.get("text")], obs)


def get(svc: FhirService, ctx: AccessContext, patient_id: str, obs_id: str) -> Result:
    try:
        obs = svc.read(ctx, "Observation", obs_id).json()
    except (NotFound, FhirError):
        raise PortalError("There is no such result for this patient.", 404) from None
    if (obs.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
        raise PortalError("There is no such result for this patient.", 404)
    return to_result(obs)


def versions(svc: FhirService, ctx: AccessContext, result: Result) -> list[Version]:
    """Every version of the result, newest first: what was posted and each correction."""
    out = []
    for n in range(result.version, 0, -1):
        try:
            obs = svc.vread(ctx, "Observation", result.id, str(n)).json()
        except FhirError:
            continue
        value, unit, interp = _shown(obs)
        notes = [x.get("text", "") for x in obs.get("note", []) if x.get("text")]
        out.append(Version(n, obs.get("status", ""), f"{value} {unit}".strip(), interp,
                           (obs.get("meta") or {}).get("lastUpdated", ""), notes[-1] if notes else ""))
    return out


def _note(staff: tuple[str | None, str], what: str, reason: str) -> dict[str, Any]:
    note: dict[str, Any] = {"text": f"{what} on {dt.date.today().isoformat()} by {staff[1]}: {reason}",
                            "time": now_instant()}
    if staff[0]:
        note["authorReference"] = {"reference": staff[0], "display": staff[1]}
    return note


def _save(svc: FhirService, ctx: AccessContext, result: Result, body: dict[str, Any]) -> None:
    body.pop("meta", None)
    try:
        svc.update(ctx, "Observation", result.id, body, if_match=f'W/"{result.version}"')
    except PreconditionFailed:
        raise PortalError("Someone changed this result while you were correcting it. Open it again to see the "
                          "current version, then correct it.", 409) from None


def correct(svc: FhirService, ctx: AccessContext, patient_id: str, obs_id: str, staff: tuple[str | None, str],
            form: Mapping[str, str], gender: str | None = None) -> None:
    """A corrected value: a new version with status `amended`, the interpretation recomputed, and a note."""
    result = get(svc, ctx, patient_id, obs_id)
    if result.status == "entered-in-error":
        raise PortalError("This result was marked as entered in error; post a new result instead.", 422)
    errors: dict[str, str] = {}
    reason = " ".join((form.get("reason") or "").split())
    if not reason:
        errors["reason"] = "Say why the result is corrected; the patient sees this note."
    test = catalog.lab_test(result.code)
    m = _measure(form, test, gender, errors)
    if errors or m is None:
        raise FormError(errors)
    body = dict(result.raw, status="amended", issued=now_instant())
    _apply(body, m, ucum=test is not None and m.unit == test.unit)
    body["note"] = [*body.get("note", []), _note(staff, "Corrected", reason)]
    _save(svc, ctx, result, body)


def withdraw(svc: FhirService, ctx: AccessContext, patient_id: str, obs_id: str, staff: tuple[str | None, str],
             reason: str) -> None:
    """Mark the result `entered-in-error` (a new version; the earlier ones stay in its history)."""
    result = get(svc, ctx, patient_id, obs_id)
    reason = " ".join((reason or "").split())
    if not reason:
        raise FormError({"withdraw_reason": "Say why this result was entered in error; the patient sees this note."})
    if result.status == "entered-in-error":
        return
    body = dict(result.raw, status="entered-in-error")
    body["note"] = [*body.get("note", []), _note(staff, "Marked as entered in error", reason)]
    _save(svc, ctx, result, body)


def patient_results(svc: FhirService, ctx: AccessContext, patient_id: str, limit: int = 20) -> list[Result]:
    """The patient's most recent laboratory results, every status, newest first."""
    from ..fhir_data import search_all
    found = search_all(svc, ctx, "Observation", [("patient", f"Patient/{patient_id}"), ("category", "laboratory"),
                                                 ("_sort", "-date")], limit=limit)
    return [to_result(o) for o in found]
