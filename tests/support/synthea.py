"""Expected answers computed straight from the Synthea JSON files, never from the server's output.

Everything here reads the 12 transaction Bundles as they are (urn:uuid references) and applies the
FHIR rules with its own small implementations (dates, references, compartment membership), so a
search total the server returns can be compared with an answer it had no part in computing.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from tests.conftest import ROOT, synthea_bundles, synthea_files

SYNTHEA_ID = "https://github.com/synthetichealth/synthea"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

# Where each (type, compartment parameter) of the types Synthea uses points in the JSON: written from
# the R4 spec's parameter definitions by hand, so compartment membership is not the server's code.
COMPARTMENT_PATHS: dict[tuple[str, str], list[list[str]]] = {
    ("Encounter", "subject"): [["subject"]],
    ("Observation", "subject"): [["subject"]], ("Observation", "performer"): [["performer"]],
    ("Condition", "patient"): [["subject"]], ("Condition", "asserter"): [["asserter"]],
    ("Claim", "patient"): [["patient"]], ("Claim", "payee"): [["payee", "party"]],
    ("ExplanationOfBenefit", "patient"): [["patient"]], ("ExplanationOfBenefit", "payee"): [["payee", "party"]],
    ("Procedure", "patient"): [["subject"]], ("Procedure", "performer"): [["performer", "actor"]],
    ("MedicationRequest", "subject"): [["subject"]],
    ("DiagnosticReport", "subject"): [["subject"]],
    ("Immunization", "patient"): [["patient"]],
    ("CarePlan", "patient"): [["subject"]], ("CarePlan", "performer"): [["activity", "detail", "performer"]],
    ("Goal", "patient"): [["subject"]],
    ("ImagingStudy", "patient"): [["subject"]],
    ("Patient", "link"): [["link", "other"]],
}
# The clinical date of each type, for $everything start/end (R4 "date" semantics of each resource).
CLINICAL_DATE: dict[str, list[str]] = {
    "Encounter": ["period"], "Observation": ["effectiveDateTime", "effectivePeriod"],
    "Condition": ["onsetDateTime", "onsetPeriod"], "Procedure": ["performedDateTime", "performedPeriod"],
    "MedicationRequest": ["authoredOn"], "Immunization": ["occurrenceDateTime"],
    "DiagnosticReport": ["effectiveDateTime", "effectivePeriod"],
}


def values_at(node: Any, keys: list[str]) -> Iterator[Any]:
    """Every value at a key path, flattening arrays (a tiny FHIRPath for simple paths)."""
    if not keys:
        yield from (node if isinstance(node, list) else [node])
        return
    if isinstance(node, list):
        for item in node:
            yield from values_at(item, keys)
    elif isinstance(node, dict) and keys[0] in node:
        yield from values_at(node[keys[0]], keys[1:])


def codings(resource: dict[str, Any], element: str) -> list[dict[str, Any]]:
    """All Codings of a CodeableConcept (or array of them) element."""
    return [c for cc in values_at(resource, [element]) for c in cc.get("coding", [])]


def has_code(resource: dict[str, Any], element: str, code: str, system: str | None = None) -> bool:
    return any(c.get("code") == code and (system is None or c.get("system") == system)
               for c in codings(resource, element))


def instant(value: str) -> tuple[datetime, datetime]:
    """[start, end) of a FHIR date/dateTime by its precision (UTC when no zone), computed independently."""
    if len(value) == 4:
        start = datetime(int(value), 1, 1, tzinfo=UTC)
        return start, start.replace(year=start.year + 1)
    if len(value) == 7:
        y, m = int(value[:4]), int(value[5:7])
        start = datetime(y, m, 1, tzinfo=UTC)
        return start, datetime(y + m // 12, m % 12 + 1, 1, tzinfo=UTC)
    if len(value) == 10:
        start = datetime.fromisoformat(value).replace(tzinfo=UTC)
        return start, start + timedelta(days=1)
    dt = datetime.fromisoformat(value)
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return dt, dt + timedelta(seconds=1)


def date_matches(prefix: str, target: tuple[datetime, datetime], param: str) -> bool:
    """R4 search semantics of a date prefix between a target range and a parameter's range."""
    t0, t1 = target
    p0, p1 = instant(param)
    return {
        "eq": t0 >= p0 and t1 <= p1, "ne": not (t0 >= p0 and t1 <= p1),
        "gt": t1 > p1, "lt": t0 < p0, "ge": t1 > p0 and (t1 > p1 or t0 >= p0), "le": t0 < p1 and (t0 < p0 or t1 <= p1),
        "sa": t0 >= p1, "eb": t1 <= p0,
    }[prefix]


@dataclass
class Entry:
    full_url: str
    resource: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.resource["resourceType"])


@dataclass
class PatientBundle:
    """One Synthea file: its entries, and its Patient's identifier to find it on the server."""

    name: str
    entries: list[Entry]
    patient: Entry

    @property
    def identifier(self) -> str:
        return next(i["value"] for i in self.patient.resource["identifier"] if i.get("system") == SYNTHEA_ID)

    @property
    def family(self) -> str:
        return str(self.patient.resource["name"][0]["family"])

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return [e.resource for e in self.entries if e.type == rtype]

    def type_of(self, ref: str) -> str:
        """The resource type a urn:uuid reference of this bundle points at."""
        return next((e.type for e in self.entries if e.full_url == ref), ref)

    def refers_to_patient(self, resource: dict[str, Any], keys: list[str]) -> bool:
        return any(isinstance(v, dict) and v.get("reference") == self.patient.full_url
                   for v in values_at(resource, keys))

    def compartment(self) -> list[dict[str, Any]]:
        """The patient compartment per compartment_patient.json, applied with COMPARTMENT_PATHS."""
        definition = compartment_definition()
        out = []
        for e in self.entries:
            if e is self.patient:
                out.append(e.resource)
                continue
            params = definition.get(e.type, [])
            paths = [p for name in params for p in COMPARTMENT_PATHS.get((e.type, name), [])]
            if params and not paths:
                raise AssertionError(f"tests know no element path for {e.type}'s compartment params {params}")
            if any(self.refers_to_patient(e.resource, p) for p in paths):
                out.append(e.resource)
        return out

    def referenced_outside(self, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Resources that compartment members reference and that are in no compartment (Organization...)."""
        definition = compartment_definition()
        urls = {r for m in members for r in _references(m)}
        return [e.resource for e in self.entries if e.full_url in urls and e.type not in definition
                and e.type != "Patient"]


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                yield v
            else:
                yield from _references(v)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


@lru_cache(maxsize=1)
def compartment_definition() -> dict[str, list[str]]:
    return json.loads((ROOT / "fhir_server" / "r4" / "data" / "compartment_patient.json").read_text())  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def patients() -> tuple[PatientBundle, ...]:
    """The 12 Synthea files as PatientBundles (cached: read-only)."""
    out = []
    for path, bundle in zip(synthea_files(), synthea_bundles(), strict=True):
        entries = [Entry(e["fullUrl"], e["resource"]) for e in bundle["entry"]]
        patient = next(e for e in entries if e.type == "Patient")
        out.append(PatientBundle(path.stem, entries, patient))
    return tuple(out)


def all_resources(rtype: str) -> list[dict[str, Any]]:
    return [r for p in patients() for r in p.of_type(rtype)]


def type_counts() -> Counter[str]:
    return Counter(e.type for p in patients() for e in p.entries)


def fingerprint(resource: dict[str, Any], type_of: Callable[[str], str]) -> str:
    """Content identity independent of ids: no id/meta, references reduced to their target type."""
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (type_of(v) if k == "reference" and isinstance(v, str) and not v.startswith("#") else strip(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [strip(x) for x in node]
        return node
    body = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    return json.dumps(strip(body), sort_keys=True)


def server_fingerprint(resource: dict[str, Any]) -> str:
    """fingerprint() of a resource as the server returns it (references are Type/id)."""
    return fingerprint(resource, lambda ref: ref.split("/")[-2] if "/" in ref else ref)


def bundle_fingerprints(p: PatientBundle, resources: list[dict[str, Any]]) -> Counter[str]:
    return Counter(fingerprint(r, p.type_of) for r in resources)


# The care date of each Synthea type, from the R4 definition of its date search parameter
# ($everything start/end: "care dates, not record currency dates"). Goal (no startDate in Synthea)
# and Patient have none: a record without a care date is always sent.
CARE_DATE: dict[str, list[str]] = {**CLINICAL_DATE, "Claim": ["created"], "ExplanationOfBenefit": ["created"],
                                   "CarePlan": ["period"], "ImagingStudy": ["started"],
                                   "Condition": ["onsetDateTime", "onsetPeriod", "recordedDate"]}
FAR = datetime(9999, 12, 31, tzinfo=UTC)


def care_interval(resource: dict[str, Any]) -> tuple[datetime, datetime] | None:
    for key in CARE_DATE.get(resource["resourceType"], []):
        value = resource.get(key)
        if isinstance(value, str):
            return instant(value)
        if isinstance(value, dict) and (value.get("start") or value.get("end")):
            low = instant(value["start"])[0] if value.get("start") else datetime.min.replace(tzinfo=UTC)
            high = instant(value["end"])[1] if value.get("end") else FAR
            return low, high
    return None


def expected(p: PatientBundle, start: str, end: str) -> list[dict[str, Any]]:
    """Compartment members whose care interval meets [start, end] (or that have none), plus what they
    reference outside any compartment (the practice's Organization and Practitioner)."""
    lo = datetime.fromisoformat(start).replace(tzinfo=UTC)
    hi = datetime.fromisoformat(end).replace(tzinfo=UTC) + timedelta(days=1)
    members = []
    for r in p.compartment():
        span = care_interval(r)
        if span is None or (span[0] < hi and span[1] > lo):
            members.append(r)
    return members + p.referenced_outside(members)
