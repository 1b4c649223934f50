"""Two patients' records and the practice's shared data, written as the practice writes them.

Alex is the hostile caller; Sam is the patient whose data must never reach her. Every id is fixed
(PUT as the trusted context), so the same world can be built in two databases and compared.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from fhir_server.access.context import AccessContext

SYS = AccessContext.system("tests")
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
HIV = "86406008"
GLUCOSE = "2345-7"


@dataclass
class World:
    """Ids of what was written, by owner."""

    alex: str = "alex"
    sam: str = "sam"
    chen: str = "chen"
    org: str = "org"
    location: str = "loc"
    alex_ids: set[tuple[str, str]] = field(default_factory=set)
    sam_ids: set[tuple[str, str]] = field(default_factory=set)
    shared_ids: set[tuple[str, str]] = field(default_factory=set)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put(fhir: Any, resource: dict[str, Any], owner: set[tuple[str, str]] | None = None) -> str:
    """Store `resource` with its id as the trusted context; remember it under `owner`."""
    stored = fhir.update(SYS, resource["resourceType"], resource["id"], resource).stored
    if owner is not None:
        owner.add((stored.resource_type, stored.id))
    return str(stored.id)


def observation(oid: str, pid: str, *, code: str = GLUCOSE, value: float = 5.4, category: str = "laboratory",
                **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "category": [{"coding": [{"system": OBS_CAT, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2024-03-01", "valueQuantity": {"value": value, "unit": "mmol/L"}, **extra}


def document(fhir: Any, did: str, pid: str, text: str, owner: set[tuple[str, str]]) -> str:
    """A Binary and the practice's DocumentReference pointing at it (the server files the Binary)."""
    bid = put(fhir, {"resourceType": "Binary", "id": f"bin-{did}", "contentType": "text/plain", "data": _b64(text)},
              owner)
    put(fhir, {"resourceType": "DocumentReference", "id": did, "status": "current",
               "subject": {"reference": f"Patient/{pid}"}, "author": [{"reference": "Practitioner/chen"}],
               "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/{bid}"}}]}, owner)
    return bid


def build(fhir: Any, *, with_sam: bool = True) -> World:
    """The practice, Alex's record and (unless `with_sam` is False) Sam's."""
    w = World()
    put(fhir, {"resourceType": "Practitioner", "id": w.chen, "name": [{"family": "Chen", "given": ["Maya"]}]},
        w.shared_ids)
    put(fhir, {"resourceType": "Organization", "id": w.org, "name": "Riverside Family Practice"}, w.shared_ids)
    put(fhir, {"resourceType": "Location", "id": w.location, "name": "Riverside clinic"}, w.shared_ids)
    put(fhir, {"resourceType": "Patient", "id": w.alex, "name": [{"family": "Alex", "given": ["Ada"]}],
               "birthDate": "1990-01-01", "generalPractitioner": [{"reference": "Practitioner/chen"}]}, w.alex_ids)
    put(fhir, observation("alex-glucose", w.alex), w.alex_ids)
    put(fhir, observation("alex-bp", w.alex, code="8480-6", value=120, category="vital-signs"), w.alex_ids)
    put(fhir, {"resourceType": "Encounter", "id": "alex-visit", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "subject": {"reference": f"Patient/{w.alex}"},
               "participant": [{"individual": {"reference": "Practitioner/chen"}}]}, w.alex_ids)
    put(fhir, {"resourceType": "Condition", "id": "alex-asthma", "subject": {"reference": f"Patient/{w.alex}"},
               "code": {"coding": [{"system": SNOMED, "code": "195967001"}]}}, w.alex_ids)
    document(fhir, "alex-doc", w.alex, "Alex's visit summary", w.alex_ids)
    if not with_sam:
        return w
    put(fhir, {"resourceType": "Patient", "id": w.sam, "name": [{"family": "Sam", "given": ["Sam"]}],
               "birthDate": "1985-05-05"}, w.sam_ids)
    put(fhir, observation("sam-glucose", w.sam, value=9.9), w.sam_ids)
    put(fhir, observation("sam-derived", w.sam, value=250.0), w.sam_ids)
    put(fhir, {"resourceType": "Encounter", "id": "sam-visit", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "subject": {"reference": f"Patient/{w.sam}"},
               "participant": [{"individual": {"reference": "Practitioner/chen"}}]}, w.sam_ids)
    put(fhir, {"resourceType": "Condition", "id": "sam-hiv", "subject": {"reference": f"Patient/{w.sam}"},
               "code": {"coding": [{"system": SNOMED, "code": HIV}]}}, w.sam_ids)
    put(fhir, {"resourceType": "Condition", "id": "sam-alcohol", "subject": {"reference": f"Patient/{w.sam}"},
               "code": {"coding": [{"system": SNOMED, "code": "7200002"}]}}, w.sam_ids)
    document(fhir, "sam-psych", w.sam, "Sam's psychiatry note", w.sam_ids)
    document(fhir, "sam-letter", w.sam, "Sam's referral letter", w.sam_ids)
    put(fhir, {"resourceType": "Communication", "id": "sam-msg", "status": "completed",
               "subject": {"reference": f"Patient/{w.sam}"}, "sender": {"reference": "Practitioner/chen"},
               "recipient": [{"reference": f"Patient/{w.sam}"}], "payload": [{"contentString": "Your results"}]},
        w.sam_ids)
    return w
