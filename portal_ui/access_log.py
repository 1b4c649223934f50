"""The Access log: who viewed or changed a patient's record, read from AuditEvent.

The search runs with a trusted context but is always confined to `patient=<id>`, so a viewer only
ever sees the events of the record they are allowed to open.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server import AccessContext, FhirService

from .fhir_data import search_page, when_text

PAGE_SIZE = 50
_ACTIONS = {"R": "Viewed", "E": "Looked up", "C": "Added", "U": "Changed", "D": "Deleted"}
_SUBTYPES = {"read": "Viewed", "search": "Looked up", "create": "Added", "update": "Changed", "delete": "Deleted",
             "login": "Signed in", "execute": "Ran"}


@dataclass
class Entry:
    when: str
    who: str
    role: str
    action: str
    what: str
    ok: bool

    @property
    def when_text(self) -> str:
        return when_text(self.when)


def _what(ev: dict[str, Any], patient_id: str) -> str:
    counts: Counter[str] = Counter()
    notes = []
    for ent in ev.get("entity", []):
        ref = (ent.get("what") or {}).get("reference", "")
        if ref == f"Patient/{patient_id}":
            continue
        if ref:
            counts[ref.split("/", 1)[0]] += 1
        elif ent.get("description"):
            notes.append(str(ent["description"]))
    parts = [f"{t} ×{n}" if n > 1 else t for t, n in sorted(counts.items())]
    return "; ".join(parts + notes[:1]) or "The record"


def entries(svc: FhirService, patient_id: str, name_of: Callable[[str], str], viewer_ref: str | None,
            cursor: str | None) -> tuple[list[Entry], str | None]:
    """One page of the patient's AuditEvents, newest first, with people named and roles spelled out."""
    ctx = AccessContext.system("access-log")
    events, nxt, _ = search_page(svc, ctx, "AuditEvent", [("patient", f"Patient/{patient_id}"),
                                                          ("_sort", "-date"), ("_count", str(PAGE_SIZE))], cursor)
    out = []
    for ev in events:
        who, role = _agent(ev, patient_id, name_of, viewer_ref)
        subtype = next((c.get("code") for c in ev.get("subtype", []) if c.get("code")), "")
        action = _SUBTYPES.get(subtype) or _ACTIONS.get(ev.get("action", ""), "Accessed")
        out.append(Entry(ev.get("recorded", ""), who, role, action, _what(ev, patient_id), ev.get("outcome") in (None, "0")))
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
