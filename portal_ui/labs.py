"""The Labs table: one row per test (grouped by LOINC or code), latest result first, with its history."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from fhir_server import AccessContext, FhirService, concept_text

from . import charts
from .fhir_data import day, parse_when, search_all

LOINC = "http://loinc.org"
# v3 ObservationInterpretation codes -> (short flag, words shown beside it)
_INTERP = {"H": ("H", "High"), "HU": ("H", "High"), "L": ("L", "Low"), "LU": ("L", "Low"),
           "HH": ("HH", "Critical high"), "LL": ("LL", "Critical low"), "AA": ("!!", "Critical"),
           "A": ("A", "Abnormal"), "POS": ("A", "Positive"), "DET": ("A", "Detected")}
CRITICAL = {"HH", "LL", "!!"}


@dataclass
class LabResult:
    """One result of a test, as shown in a table row."""

    observation_id: str
    when: str  # FHIR dateTime
    value: float | None
    display: str
    unit: str
    low: float | None
    high: float | None
    range_text: str
    flag: str  # "", H, L, HH, LL, !!, A
    flag_text: str
    status: str = "final"  # amended / corrected: a correction; entered-in-error: withdrawn, kept in the history
    note: str = ""  # the last note (the practice's reason for a correction)

    @property
    def withdrawn(self) -> bool:
        return self.status == "entered-in-error"

    @property
    def corrected(self) -> bool:
        return self.status in ("amended", "corrected")

    @property
    def date(self) -> str:
        return day(self.when)

    @property
    def critical(self) -> bool:
        return self.flag in CRITICAL


@dataclass
class LabTest:
    """A test with its results, newest first."""

    key: str
    name: str
    results: list[LabResult] = field(default_factory=list)

    @property
    def latest(self) -> LabResult:
        """The newest result that counts (withdrawn ones stay in the history only)."""
        return next((r for r in self.results if not r.withdrawn), self.results[0])

    @property
    def slug(self) -> str:
        return "".join(ch if ch.isalnum() else "-" for ch in self.key).strip("-") or "test"

    def chart_svg(self) -> str:
        return charts.trend_svg(self.name, [(r.date, r.value) for r in self.results
                                            if r.value is not None and not r.withdrawn],
                                self.latest.low, self.latest.high, self.latest.unit)


def test_key(obs: dict[str, Any]) -> str:
    """Group results by LOINC code, else the first system|code, else the code's text."""
    codings = (obs.get("code") or {}).get("coding", [])
    for c in codings:
        if c.get("system") == LOINC and c.get("code"):
            return f"loinc:{c['code']}"
    for c in codings:
        if c.get("code"):
            return f"{c.get('system', '')}|{c['code']}"
    return "text:" + concept_text(obs.get("code")).lower()


def _value(obs: dict[str, Any]) -> tuple[float | None, str, str]:
    if "valueQuantity" in obs:
        q = obs["valueQuantity"]
        v = q.get("value")
        unit = q.get("unit") or q.get("code") or ""
        shown = f"{q.get('comparator', '')}{_num(v)}" if v is not None else ""
        return (float(v) if isinstance(v, (int, float)) else None), shown, unit
    if "valueCodeableConcept" in obs:
        return None, concept_text(obs["valueCodeableConcept"]), ""
    for key in ("valueString", "valueInteger", "valueBoolean"):
        if key in obs:
            v = obs[key]
            return (float(v) if key == "valueInteger" else None), str(v), ""
    if obs.get("dataAbsentReason"):
        return None, concept_text(obs["dataAbsentReason"]) or "No value", ""
    return None, "", ""


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _range(obs: dict[str, Any], unit: str) -> tuple[float | None, float | None, str]:
    for rr in obs.get("referenceRange", []):
        low = (rr.get("low") or {}).get("value")
        high = (rr.get("high") or {}).get("value")
        if rr.get("text"):
            text = str(rr["text"])
        elif low is not None and high is not None:
            text = f"{_num(low)}–{_num(high)} {unit}".strip()
        elif low is not None:
            text = f"≥ {_num(low)} {unit}".strip()
        elif high is not None:
            text = f"≤ {_num(high)} {unit}".strip()
        else:
            text = ""
        return low, high, text
    return None, None, ""


def _flag(obs: dict[str, Any], value: float | None, low: float | None, high: float | None) -> tuple[str, str]:
    for interp in obs.get("interpretation", []):
        for c in interp.get("coding", []):
            if c.get("code") in _INTERP:
                return _INTERP[c["code"]]
    if value is not None and high is not None and value > high:
        return "H", "High"
    if value is not None and low is not None and value < low:
        return "L", "Low"
    return "", ""


def to_result(obs: dict[str, Any]) -> LabResult:
    when = obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start") or obs.get("issued") or ""
    value, shown, unit = _value(obs)
    low, high, range_text = _range(obs, unit)
    flag, flag_text = _flag(obs, value, low, high)
    notes = [n.get("text", "") for n in obs.get("note", []) if isinstance(n, dict) and n.get("text")]
    return LabResult(obs.get("id", ""), when, value, shown, unit, low, high, range_text, flag, flag_text,
                     obs.get("status", "final"), notes[-1] if notes else "")


def lab_tests(svc: FhirService, ctx: AccessContext, patient_id: str) -> list[LabTest]:
    """The patient's laboratory results grouped per test, most recently measured test first."""
    observations = search_all(svc, ctx, "Observation", [("patient", f"Patient/{patient_id}"),
                                                        ("category", "laboratory")])
    tests: dict[str, LabTest] = {}
    for obs in observations:
        if obs.get("status") == "cancelled":
            continue
        key = test_key(obs)
        test = tests.setdefault(key, LabTest(key, concept_text(obs.get("code")) or "Test"))
        test.results.append(to_result(obs))
    for test in tests.values():
        test.results.sort(key=lambda r: _ts(r.when), reverse=True)
    shown = [t for t in tests.values() if any(not r.withdrawn for r in t.results)]
    return sorted(shown, key=lambda t: (-_ts(t.latest.when), t.name.lower()))


def _ts(when: str) -> float:
    dt = parse_when(when)
    if dt is None:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
