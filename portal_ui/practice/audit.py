"""The practice's audit trail: AuditEvents filtered by person, patient, action and date, in plain words."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir_server import AccessContext, FhirService

from ..access_log import describe
from ..fhir_data import ref_id, search_page, when_text
from . import FormError
from .patients import _date

PAGE_SIZE = 50
ACTIONS = {"read": "Viewed a record", "search": "Searched records", "create": "Added", "update": "Changed",
           "delete": "Deleted", "login": "Sign-in", "invite": "Invitation", "register": "Registration",
           "grant": "Shared access granted", "revoke": "Shared access ended", "disable": "Staff account disabled",
           "reset": "Password reset"}


@dataclass
class Row:
    when: str
    who: str
    role: str
    what: str
    patient: str
    patient_id: str
    ok: bool

    @property
    def when_text(self) -> str:
        return when_text(self.when)


def _role(ref: str, app: bool) -> str:
    if app:
        return "App"
    if ref.startswith("Practitioner/"):
        return "Practice staff"
    if ref.startswith("Patient/"):
        return "Patient"
    if ref.startswith("RelatedPerson/"):
        return "Family or friend"
    return "System"


def to_row(ev: dict[str, Any], names: Mapping[str, str]) -> Row:
    agents = ev.get("agent", [])
    app = any(((a.get("who") or {}).get("identifier") or {}).get("system") == "urn:carespace:client" for a in agents)
    person = next((a for a in agents if not ((a.get("who") or {}).get("identifier"))), agents[0] if agents else {})
    ref = (person.get("who") or {}).get("reference") or ""
    who = (names.get(ref, "") if ref else "") or (person.get("who") or {}).get("display") or "CareSpace"
    pid = next((ref_id(e.get("what"), "Patient") for e in ev.get("entity", [])
                if ref_id(e.get("what"), "Patient")), None) or ""
    return Row(ev.get("recorded", ""), who, _role(ref, app), describe(ev, pid, False),
               names.get(f"Patient/{pid}", pid) if pid else "", pid, ev.get("outcome") in (None, "0"))


def trail(svc: FhirService, ctx: AccessContext, names: Mapping[str, str], filters: Mapping[str, str],
          cursor: str | None) -> tuple[list[Row], str | None, str]:
    """One page of AuditEvents, newest first; (rows, next cursor, a note when a filter matched nothing)."""
    errors: dict[str, str] = {}
    items: list[tuple[str, str]] = [("_sort", "-date"), ("_count", str(PAGE_SIZE))]
    person = (filters.get("person") or "").strip()
    if person:
        if not person.startswith(("Practitioner/", "Patient/", "RelatedPerson/")):
            errors["person"] = "Choose a staff member from the list."
        items.append(("agent", person))
    action = (filters.get("action") or "").strip()
    if action:
        if action not in ACTIONS:
            errors["action"] = "Choose an action from the list."
        items.append(("subtype", action))
    for key, prefix, label in (("from", "ge", "start date"), ("to", "le", "end date")):
        if (filters.get(key) or "").strip():
            items.append(("date", prefix + _date(filters[key], key, errors, label)))
    name = " ".join((filters.get("patient") or "").split())
    if errors:
        raise FormError(errors)
    if name:
        _, page = svc.search(ctx, "Patient", [*(("name", p) for p in name.split()[:4]), ("_count", "50")])
        ids = [i for _t, i, _x in page.matches]
        if not ids:
            return [], None, f"No patient is called \u201c{name}\u201d."
        items.append(("patient", ",".join(f"Patient/{i}" for i in ids)))
    events, nxt, _prev = search_page(svc, ctx, "AuditEvent", items, cursor)
    return [to_row(e, names) for e in events], nxt, ""


def staff_options(rows: list[Any]) -> list[tuple[str, str]]:
    return [(r.practitioner, r.name) for r in rows if r.practitioner]


def client_summary(new: Any) -> dict[str, Any]:
    """What the admin page shows once after registering an app (the secret is never shown again)."""
    return {"client_id": new.client_id, "name": new.row.name, "auth": new.row.auth_method,
            "secret": new.client_secret, "redirect_uris": new.row.redirect_uris.split(),
            "grant_types": new.row.grant_types.split(), "scope": new.row.scope,
            "json": json.dumps({"client_id": new.client_id, **({"client_secret": new.client_secret}
                                                             if new.client_secret else {})})}
