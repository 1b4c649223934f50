"""A human-readable summary of a patient Bundle (the printable Download view), by kind and newest first."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server import concept_text
from fhir_server import human_name as person_name

from .builder import KINDS, clinical_date, kind_of

_TITLE_KEYS = ["code", "vaccineCode", "medicationCodeableConcept", "type", "category", "class", "description",
               "name", "modality", "procedureCode"]


@dataclass
class Row:
    date: str
    title: str
    detail: str


@dataclass
class Section:
    kind: str
    rows: list[Row] = field(default_factory=list)


@dataclass
class Summary:
    patient_name: str
    birth_date: str
    gender: str
    notes: list[str]
    sections: list[Section]


def value_text(res: dict[str, Any]) -> str:
    """An Observation's value (quantity with unit, concept, string) or its components."""
    q = res.get("valueQuantity")
    if isinstance(q, dict) and "value" in q:
        return f"{q['value']} {q.get('unit') or q.get('code') or ''}".strip()
    for key in ("valueCodeableConcept", "valueString", "valueBoolean", "valueInteger", "valueDateTime"):
        if key in res:
            return concept_text(res[key]) if key == "valueCodeableConcept" else str(res[key])
    parts = [f"{concept_text(c.get('code'))}: {value_text(c)}" for c in res.get("component", []) or []]
    return "; ".join(p for p in parts if not p.endswith(": "))


def title_of(res: dict[str, Any]) -> str:
    if res.get("resourceType") in ("Organization", "Practitioner", "RelatedPerson", "Location"):
        return person_name(res) or res["resourceType"]
    if res.get("resourceType") == "DocumentReference":
        for c in res.get("content", []) or []:
            title = (c.get("attachment") or {}).get("title")
            if title:
                return str(title)
    if res.get("resourceType") == "Communication":
        return concept_text(res.get("topic")) or concept_text(res.get("category")) or "Message"
    for key in _TITLE_KEYS:
        text = concept_text(res.get(key))
        if text:
            return text
    return str(res.get("resourceType", ""))


def detail_of(res: dict[str, Any]) -> str:
    rtype = res.get("resourceType")
    if rtype == "Observation":
        return value_text(res)
    if rtype == "Communication":
        return " ".join(str(p.get("contentString", "")) for p in res.get("payload", []) or [])[:300]
    if rtype == "DocumentReference":
        return concept_text(res.get("type")) if res.get("content") else ""
    if rtype == "DiagnosticReport":
        return concept_text(res.get("conclusion")) or f"{len(res.get('result', []) or [])} results"
    return concept_text(res.get("clinicalStatus")) or str(res.get("status", ""))


def summarize(bundle: dict[str, Any]) -> Summary:
    """The sections a person reads: patient details, notes, then each kind with its rows newest first."""
    resources = [e.get("resource") or {} for e in bundle.get("entry", []) or []]
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
    notes = [str(p.get("contentString", "")) for r in resources if r.get("resourceType") == "Communication"
             and any(c.get("text") == "Notes for the recipient" for c in r.get("category", []) or [])
             for p in r.get("payload", []) or []]
    by_kind: dict[str, list[Row]] = {}
    for r in resources:
        if r.get("resourceType") == "Patient" or any(
                c.get("text") == "Notes for the recipient" for c in r.get("category", []) or []):
            continue
        by_kind.setdefault(kind_of(r), []).append(Row(clinical_date(r)[:10], title_of(r), detail_of(r)))
    sections = [Section(k, sorted(by_kind[k], key=lambda row: row.date, reverse=True)) for k in KINDS if k in by_kind]
    return Summary(person_name(patient), str(patient.get("birthDate", "")), str(patient.get("gender", "")), notes,
                   sections)
