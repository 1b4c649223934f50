"""The bundle builder shared by Download and Send Record: a patient's records in a date range as an R4 Bundle.

No Flask here: the caller passes the FhirService and the AccessContext of the person asking, so every
read is enforced and audited exactly as the FHIR API would do it.
"""
from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from fhir_server import AccessContext, EverythingRequest, FhirError, FhirService, now_instant

# Access records are about the record, not part of it: never sent or downloaded.
EXCLUDED_TYPES = {"AuditEvent"}
# Kinds shown in previews and summaries, in this order.
KINDS = ["Labs", "Vital signs", "Other observations", "Reports", "Documents", "Messages", "Conditions",
         "Medications", "Allergies", "Immunizations", "Procedures", "Encounters", "Care plans and goals",
         "Imaging", "Billing and insurance", "Care team and practice", "Other"]
_KIND_OF_TYPE = {
    "DiagnosticReport": "Reports", "DocumentReference": "Documents", "Media": "Documents",
    "Communication": "Messages", "Condition": "Conditions", "MedicationRequest": "Medications",
    "MedicationStatement": "Medications", "MedicationAdministration": "Medications",
    "MedicationDispense": "Medications", "Medication": "Medications", "AllergyIntolerance": "Allergies",
    "Immunization": "Immunizations", "Procedure": "Procedures", "Encounter": "Encounters",
    "CarePlan": "Care plans and goals", "Goal": "Care plans and goals", "CareTeam": "Care team and practice",
    "ImagingStudy": "Imaging", "Claim": "Billing and insurance", "ExplanationOfBenefit": "Billing and insurance",
    "Coverage": "Billing and insurance", "Organization": "Care team and practice",
    "Practitioner": "Care team and practice", "PractitionerRole": "Care team and practice",
    "Location": "Care team and practice", "RelatedPerson": "Care team and practice",
}
_DATE_PATHS = ["effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued", "occurrenceDateTime",
               "performedDateTime", "performedPeriod.start", "onsetDateTime", "onsetPeriod.start", "recordedDate",
               "authoredOn", "period.start", "started", "date", "created", "sent", "billablePeriod.start"]
NOTES_CATEGORY = {"text": "Notes for the recipient"}


@dataclass
class BuiltBundle:
    """The Bundle and how many resources of each kind it holds (the Patient itself is not counted)."""

    bundle: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def json_bytes(self) -> bytes:
        return json.dumps(self.bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def kind_of(resource: dict[str, Any]) -> str:
    """The preview kind of a resource (labs are Observations in the laboratory category)."""
    rtype = resource.get("resourceType", "")
    if rtype == "Observation":
        cats = {c.get("code") for cc in resource.get("category", []) or [] for c in cc.get("coding", []) or []}
        if "laboratory" in cats:
            return "Labs"
        return "Vital signs" if "vital-signs" in cats else "Other observations"
    return _KIND_OF_TYPE.get(rtype, "Other")


def count_kinds(resources: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(kind_of(r) for r in resources if r.get("resourceType") != "Patient")
    return {k: counts[k] for k in KINDS if counts.get(k)}


def clinical_date(resource: dict[str, Any]) -> str:
    """The date a person would file this resource under (first of the usual clinical date elements)."""
    for path in _DATE_PATHS:
        node: Any = resource
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and node:
            return node
    return ""


def _binary_id(url: Any, base_url: str) -> str | None:
    if not isinstance(url, str):
        return None
    if url.startswith(base_url + "/"):
        url = url[len(base_url) + 1:]
    if url.startswith("Binary/") and "/" not in url[7:] and url[7:]:
        return url[7:]
    return None


def _attachments(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Attachments whose content may live in a Binary (documents, report forms, media, message files)."""
    rtype = resource.get("resourceType")
    found: list[Any] = []
    if rtype == "DocumentReference":
        found = [c.get("attachment") for c in resource.get("content", []) or []]
    elif rtype == "DiagnosticReport":
        found = list(resource.get("presentedForm", []) or [])
    elif rtype == "Media":
        found = [resource.get("content")]
    elif rtype == "Communication":
        found = [p.get("contentAttachment") for p in resource.get("payload", []) or []]
    return [a for a in found if isinstance(a, dict)]


def inline_attachments(svc: FhirService, ctx: AccessContext, resources: list[dict[str, Any]]) -> int:
    """Replace Binary/<id> attachment URLs by the Binary's data (read under ctx); returns how many."""
    done = 0
    cache: dict[str, dict[str, Any] | None] = {}
    for res in resources:
        for att in _attachments(res):
            bid = _binary_id(att.get("url"), svc.base_url)
            if bid is None or att.get("data"):
                continue
            if bid not in cache:
                try:
                    cache[bid] = svc.read(ctx, "Binary", bid).json()
                except FhirError:
                    cache[bid] = None
            binary = cache[bid]
            if binary is None or not binary.get("data"):
                continue
            att["data"] = binary["data"]
            att.setdefault("contentType", binary.get("contentType"))
            att.pop("url", None)
            done += 1
    return done


def notes_communication(patient_id: str, notes: str, sender_ref: str | None, sender_name: str,
                        recipient: str, sent: str) -> dict[str, Any]:
    """The patient's notes for the recipient, as a completed Communication inside the Bundle."""
    sender: dict[str, Any] = {"display": sender_name}
    if sender_ref:
        sender["reference"] = sender_ref
    return {"resourceType": "Communication", "id": str(uuid.uuid4()), "status": "completed",
            "category": [NOTES_CATEGORY], "subject": {"reference": f"Patient/{patient_id}"}, "sent": sent,
            "sender": sender, "recipient": [{"display": recipient}], "payload": [{"contentString": notes}]}


def _records(svc: FhirService, ctx: AccessContext, patient_id: str, start: str | None, end: str | None,
             kinds: Collection[str] | None) -> list[dict[str, Any]]:
    """The compartment in [start, end] without access records; with kinds, only those kinds (and the Patient)."""
    page = svc.everything(ctx, EverythingRequest(patient_id, start or None, end or None, count=None))
    resources = [json.loads(text) for rtype, _, text in page.entries if rtype not in EXCLUDED_TYPES]
    if kinds:
        resources = [r for r in resources if r.get("resourceType") == "Patient" or kind_of(r) in kinds]
    return resources


def build(svc: FhirService, ctx: AccessContext, patient_id: str, start: str | None = None, end: str | None = None,
          *, notes: dict[str, Any] | None = None, inline: bool = True,
          kinds: Collection[str] | None = None) -> BuiltBundle:
    """The patient's records whose clinical date falls in [start, end] as an R4 `collection` Bundle.

    `notes` is a Communication from notes_communication(); `kinds` (of KINDS) narrows it, empty or None is
    every kind.  The Patient comes first, then the records in the order the store holds them.  FhirError
    propagates (403/404 when ctx may not see the patient).
    """
    resources = _records(svc, ctx, patient_id, start, end, kinds)
    resources.sort(key=lambda r: 0 if (r.get("resourceType"), r.get("id")) == ("Patient", patient_id) else 1)
    if inline:
        inline_attachments(svc, ctx, resources)
    counts = count_kinds(resources)
    stamp, _ = now_instant()
    entries = [{"fullUrl": f"{svc.base_url}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]
    if notes is not None:
        entries.append({"fullUrl": f"urn:uuid:{notes['id']}", "resource": notes})
    bundle_id = str(uuid.uuid4())
    bundle = {"resourceType": "Bundle", "id": bundle_id, "meta": {"lastUpdated": stamp},
              "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{bundle_id}"},
              "type": "collection", "timestamp": stamp, "entry": entries}
    return BuiltBundle(bundle, counts)


def preview(svc: FhirService, ctx: AccessContext, patient_id: str, start: str | None, end: str | None,
            kinds: Collection[str] | None = None) -> dict[str, int]:
    """Counts by kind of what build() would include (attachments are not read)."""
    return count_kinds(_records(svc, ctx, patient_id, start, end, kinds))
