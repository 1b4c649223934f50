"""AuditEvent recording: every access by a person or app, and every security event, as FHIR AuditEvent.

Audit rows are written in their own short transaction so that a failed request is still audited.
"""
from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from .access import AccessContext
from .dates import now_instant

if TYPE_CHECKING:
    from .service import FhirService

log = logging.getLogger("carespace.audit")

_RESTFUL = "http://hl7.org/fhir/restful-interaction"
_RESTFUL_CODES = {"read", "vread", "update", "patch", "delete", "history", "history-instance", "history-type",
                  "history-system", "create", "search", "search-type", "search-system", "capabilities",
                  "transaction", "batch", "operation"}
_LOCAL_SUBTYPES = "urn:carespace:audit-subtype"  # logins, invitations, token events: no HL7 code exists
_ACTIONS = {"read": "R", "search": "E", "create": "C", "update": "U", "delete": "D", "login": "E", "execute": "E"}
_REST = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
         "display": "RESTful Operation"}
_SECURITY = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110113", "display": "Security Alert"}
_USER_AUTH = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114",
              "display": "User Authentication"}


def audit_event(*, action: str, subtype: str, agent_ref: str | None, agent_display: str, patient_id: str | None,
                entities: list[str], ok: bool, kind: str = "rest", client_id: str | None = None,
                detail: str | None = None) -> dict[str, Any]:
    """Build an R4 AuditEvent (type rest / security / user-authentication)."""
    stamp, _ = now_instant()
    etype = {"rest": _REST, "security": _SECURITY, "auth": _USER_AUTH}[kind]
    who: dict[str, Any] = {"display": agent_display or "unknown"}
    if agent_ref:
        who["reference"] = agent_ref
    agents: list[dict[str, Any]] = [{"who": who, "requestor": True}]
    if client_id:
        agents.append({"who": {"identifier": {"system": "urn:carespace:client", "value": client_id},
                               "display": f"app {client_id}"}, "requestor": False})
    ents: list[dict[str, Any]] = []
    if patient_id:
        ents.append({"what": {"reference": f"Patient/{patient_id}"},
                     "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1",
                              "display": "Person"}})
    for ref in entities[:20]:
        if ref != f"Patient/{patient_id}":
            ents.append({"what": {"reference": ref}})
    if detail:
        ents.append({"what": {"display": "detail"}, "description": detail[:500]})
    ev: dict[str, Any] = {
        "resourceType": "AuditEvent", "type": etype,
        "subtype": [{"system": _RESTFUL if subtype in _RESTFUL_CODES else _LOCAL_SUBTYPES, "code": subtype}],
        "action": _ACTIONS.get(subtype, "E"), "recorded": stamp, "outcome": "0" if ok else "4",
        "agent": agents, "source": {"observer": {"display": "CareSpace"}},
    }
    if ents:
        ev["entity"] = ents
    return ev


class AuditLog:
    """Writes AuditEvents through the FHIR store (trusted), never failing the caller's request."""

    def __init__(self, svc: "FhirService") -> None:
        self.svc = svc

    def record(self, event: dict[str, Any]) -> None:
        try:
            with self.svc.unit(write=True) as repo:
                event = dict(event, id=str(uuid.uuid4()))
                repo.write(event, None, "POST")
        except Exception:  # noqa: BLE001 - auditing must not break the audited action; it is logged instead
            log.exception("could not record AuditEvent %s", event.get("subtype"))

    def access(self, ctx: AccessContext, action: str, rtype: str, refs: list[str], ok: bool) -> None:
        """FhirService hook: one AuditEvent per interaction of a person or app."""
        patients = sorted(ctx.patient_ids) if ctx.patient_ids else [
            r.split("/", 1)[1] for r in refs if r.startswith("Patient/")][:1]
        self.record(audit_event(action=action, subtype=action, agent_ref=ctx.user,
                                agent_display=ctx.label or ctx.user or "app", patient_id=patients[0] if patients else None,
                                entities=refs, ok=ok, client_id=ctx.client_id))
