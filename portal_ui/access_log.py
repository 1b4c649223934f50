"""The Access log: who viewed or changed a patient's record, read from AuditEvent.

The search runs with a trusted context but is always confined to `patient=<id>`, so a viewer only
ever sees the events of the record they are allowed to open.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server import AccessContext, FhirService

from .fhir_data import search_page, when_text

PAGE_SIZE = 50
# What each kind of FHIR resource is, in the words of the record's owner (plural, then one).
_NOUNS = {"Observation": ("lab results", "a lab result"), "DocumentReference": ("documents", "a document"),
          "Binary": ("documents", "a document"), "Communication": ("messages", "a message"),
          "Patient": ("personal details", "personal details"), "RelatedPerson": ("shared access", "shared access"),
          "DiagnosticReport": ("test reports", "a test report"), "Condition": ("health conditions", "a condition"),
          "MedicationRequest": ("medicines", "a medicine"), "MedicationStatement": ("medicines", "a medicine"),
          "AllergyIntolerance": ("allergies", "an allergy"), "Immunization": ("immunizations", "an immunization"),
          "Encounter": ("visits", "a visit"), "Procedure": ("procedures", "a procedure"),
          "CarePlan": ("care plans", "a care plan"), "AuditEvent": ("access log", "the access log"),
          "Claim": ("billing records", "a billing record"),
          "ExplanationOfBenefit": ("billing records", "a billing record")}
_VERBS = {"read": "viewed", "vread": "viewed", "search": "viewed", "create": "added", "update": "changed",
          "delete": "deleted", "history": "viewed the history of"}
_ACTION_CODES = {"R": "read", "E": "search", "C": "create", "U": "update", "D": "delete"}
_SUBTYPES = {"login": "Signed in", "execute": "Ran", "invite": "Invitation", "register": "Registered",
             "grant": "Shared access", "revoke": "Ended shared access", "reset": "Password reset"}
_SPECIAL = {("create", "messages"): "sent {you_obj}a message", ("update", "messages"): "updated a message",
            ("create", "lab results"): "added a lab result to {your}record",
            ("update", "lab results"): "changed a lab result", ("create", "documents"): "added a document",
            ("update", "personal details"): "changed {your}personal details",
            ("create", "personal details"): "created {your}record"}


@dataclass
class Entry:
    when: str
    who: str
    role: str
    action: str  # what they did, in plain words
    what: str
    ok: bool

    @property
    def when_text(self) -> str:
        return when_text(self.when)


def describe(ev: dict[str, Any], patient_id: str, you: bool) -> str:
    """What happened, in plain words: "Viewed your lab results", "Sent you a message"."""
    subtype = next((c.get("code") for c in ev.get("subtype", []) if c.get("code")), "")
    notes = [str(e["description"]) for e in ev.get("entity", []) if e.get("description")]
    if subtype in _SUBTYPES:
        return _SUBTYPES[subtype] + (f": {notes[0]}" if notes else "")
    action = subtype if subtype in _VERBS else _ACTION_CODES.get(ev.get("action", ""), "")
    types = []
    for ent in ev.get("entity", []):
        ref = (ent.get("what") or {}).get("reference", "")
        rtype = ref.split("/", 1)[0] if "/" in ref else ""
        if not ref and (ent.get("role") or {}).get("code") == "24":  # the query: what was looked through
            rtype = (ent.get("type") or {}).get("code", "")
        if rtype and (rtype != "Patient" or ref != f"Patient/{patient_id}" or len(ev.get("entity", [])) == 1):
            if rtype not in types:
                types.append(rtype)
    your = "your " if you else "the "
    words = {"your": your, "you_obj": "you " if you else ""}
    nouns: list[str] = []
    for t in types:
        noun = _NOUNS.get(t, ("health records", "a health record"))[0]
        if noun not in nouns:
            nouns.append(noun)
    if len(nouns) == 1 and (action, nouns[0]) in _SPECIAL:
        text = _SPECIAL[(action, nouns[0])].format(**words)
    else:
        what = " and ".join([", ".join(nouns[:-1]), nouns[-1]] if len(nouns) > 1 else nouns) or "record"
        verb = _VERBS.get(action, "opened")
        text = f"{verb} {your}{what}" if action != "search" or types else f"looked through {your}record"
    return text[0].upper() + text[1:]


def entries(svc: FhirService, patient_id: str, name_of: Callable[[str], str], viewer_ref: str | None,
            cursor: str | None) -> tuple[list[Entry], str | None]:
    """One page of the patient's AuditEvents, newest first, with people named and roles spelled out."""
    ctx = AccessContext.system("access-log")
    events, nxt, _ = search_page(svc, ctx, "AuditEvent", [("patient", f"Patient/{patient_id}"),
                                                          ("_sort", "-date"), ("_count", str(PAGE_SIZE))], cursor)
    out = []
    for ev in events:
        who, role = _agent(ev, patient_id, name_of, viewer_ref)
        you = bool(viewer_ref) and viewer_ref == f"Patient/{patient_id}"
        out.append(Entry(ev.get("recorded", ""), who, role, describe(ev, patient_id, you), "",
                         ev.get("outcome") in (None, "0")))
    return out, nxt


def _agent(ev: dict[str, Any], patient_id: str, name_of: Callable[[str], str],
           viewer_ref: str | None) -> tuple[str, str]:
    agents = ev.get("agent", [])
    app = next((a for a in agents if ((a.get("who") or {}).get("identifier") or {}).get("system") == "urn:carespace:client"),
               None)
    person = next((a for a in agents if a is not app), None) or {}
    ref = (person.get("who") or {}).get("reference") or ""
    display = (person.get("who") or {}).get("display") or ""
    name = name_of(ref) if ref else ""
    if ref == f"Patient/{patient_id}":
        who, role = name or "The patient", "Patient"
    elif ref.startswith("RelatedPerson/"):
        who, role = name or "A family member or friend", "Family or friend (shared access)"
    elif ref.startswith(("Practitioner/", "PractitionerRole/")):
        who, role = name or display or "Practice staff", "Practice staff"
    elif ref:
        who, role = name or display or ref, ref.split("/", 1)[0]
    else:
        who, role = display or "CareSpace", "System"
    if ref and ref == viewer_ref:
        who += " (you)"
    if app is not None:
        client = ((app.get("who") or {}).get("identifier") or {}).get("value", "")
        app_name = name_of(f"client:{client}") or (app.get("who") or {}).get("display") or client
        who = f"{app_name} on behalf of {who}" if ref else app_name
        role = "App"
    return who, role
