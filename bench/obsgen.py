"""Synthetic but realistic patients and lab / vital-sign Observations, so search can be timed at scale."""
from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
GLUCOSE = "2339-0"

# (LOINC code, display, UCUM unit, typical low, typical high): panels drawn as a lab would order them.
PANELS: dict[str, list[tuple[str, str, str, float, float]]] = {
    "metabolic": [
        (GLUCOSE, "Glucose [Mass/volume] in Blood", "mg/dL", 65, 140),
        ("6299-2", "Urea nitrogen [Mass/volume] in Blood", "mg/dL", 7, 25),
        ("38483-4", "Creatinine [Mass/volume] in Blood", "mg/dL", 0.6, 1.4),
        ("49765-1", "Calcium [Mass/volume] in Blood", "mg/dL", 8.5, 10.5),
        ("2947-0", "Sodium [Moles/volume] in Blood", "mmol/L", 134, 146),
        ("6298-4", "Potassium [Moles/volume] in Blood", "mmol/L", 3.4, 5.2),
        ("2069-3", "Chloride [Moles/volume] in Blood", "mmol/L", 96, 109),
        ("20565-8", "Carbon dioxide, total [Moles/volume] in Blood", "mmol/L", 21, 31),
    ],
    "lipids": [
        ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 260),
        ("2571-8", "Triglycerides", "mg/dL", 60, 250),
        ("18262-6", "Low Density Lipoprotein Cholesterol", "mg/dL", 60, 180),
        ("2085-9", "High Density Lipoprotein Cholesterol", "mg/dL", 35, 80),
    ],
    "cbc": [
        ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 11.5, 17.5),
        ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3.8, 11),
        ("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", 3.9, 5.8),
        ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150, 420),
    ],
    "a1c": [("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.5, 9.5)],
}
VITALS: list[tuple[str, str, str, float, float]] = [
    ("8302-2", "Body Height", "cm", 150, 195),
    ("29463-7", "Body Weight", "kg", 50, 120),
    ("39156-5", "Body Mass Index", "kg/m2", 18, 38),
    ("8867-4", "Heart rate", "/min", 55, 100),
    ("9279-1", "Respiratory rate", "/min", 12, 20),
]
FAMILIES = ["Smith", "Johnson", "Garcia", "Nguyen", "Okafor", "Müller", "Rossi", "Kowalski", "Tanaka", "Dubois"]
GIVEN = ["Ana", "Ben", "Chloé", "Dmitri", "Eve", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kai", "Lena"]


@dataclass
class Batch:
    """Resources to store together: new patients first, then their Observations."""

    patients: list[dict[str, Any]]
    observations: list[dict[str, Any]]

    def resources(self) -> list[dict[str, Any]]:
        return self.patients + self.observations


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _category(code: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": CATEGORY_SYSTEM, "code": code, "display": code.replace("-", " ").title()}]}]


def _quantity(rng: random.Random, unit: str, low: float, high: float) -> dict[str, Any]:
    span = high - low
    value = round(rng.uniform(low - 0.1 * span, high + 0.1 * span), 1 if high < 50 else 0)
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def observation(rng: random.Random, patient_id: str, category: str, item: tuple[str, str, str, float, float],
                when: datetime) -> dict[str, Any]:
    """One final Observation shaped like those an EHR pushes (and Synthea writes)."""
    code, display, unit, low, high = item
    stamp = when.isoformat(timespec="seconds")
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": _uuid(rng), "status": "final", "category": _category(category),
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": stamp, "issued": stamp,
        "valueQuantity": _quantity(rng, unit, low, high),
    }
    if category == "laboratory":
        obs["referenceRange"] = [{"low": {"value": low, "unit": unit, "system": UCUM, "code": unit},
                                  "high": {"value": high, "unit": unit, "system": UCUM, "code": unit}}]
    return obs


def patient(rng: random.Random) -> dict[str, Any]:
    pid = _uuid(rng)
    born = datetime(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 60))
    return {"resourceType": "Patient", "id": pid, "active": True,
            "identifier": [{"system": "urn:carespace:bench:mrn", "value": pid[:13]}],
            "name": [{"use": "official", "family": rng.choice(FAMILIES), "given": [rng.choice(GIVEN)]}],
            "gender": rng.choice(["female", "male"]), "birthDate": born.date().isoformat()}


def patient_observations(rng: random.Random, pid: str, count: int) -> list[dict[str, Any]]:
    """About `count` Observations from visits spread over ~12 years: vitals, then the labs ordered."""
    out: list[dict[str, Any]] = []
    when = datetime(2012, 1, 1, 8, tzinfo=timezone(timedelta(hours=-5))) + timedelta(days=rng.randrange(0, 400))
    visit_gap = max(2, int(12 * 365 * 15 / max(count, 1)))  # ~15 results a visit, spread over ~12 years
    while len(out) < count:
        when += timedelta(days=rng.randrange(visit_gap // 2, visit_gap * 3 // 2 + 1), minutes=rng.randrange(0, 600))
        for item in VITALS:
            out.append(observation(rng, pid, "vital-signs", item, when))
        for name in rng.sample(sorted(PANELS), k=rng.randint(2, 4)):
            lab_time = when + timedelta(hours=1)
            for item in PANELS[name]:
                out.append(observation(rng, pid, "laboratory", item, lab_time))
    return out[:count]


def batches(seed: int, target: int, size: int = 20000, per_patient: tuple[int, int] = (200, 1000)) -> Iterator[Batch]:
    """Deterministic batches totalling exactly `target` Observations, each patient whole inside a batch."""
    rng = random.Random(seed)
    made = 0
    batch = Batch([], [])
    while made < target:
        p = patient(rng)
        n = min(rng.randint(*per_patient), target - made)
        batch.patients.append(p)
        batch.observations += patient_observations(rng, p["id"], n)
        made += n
        if len(batch.observations) >= size:
            yield batch
            batch = Batch([], [])
    if batch.patients:
        yield batch
