"""Access contexts: who is asking (system, a patient's app, a user) and what their scopes allow.

The SMART layer builds an AccessContext from a token (scopes, patient, user); the portal builds one
for the signed-in user.  Every fhir_server service call takes one and enforcement happens here and
in the service layer, never in HTTP routes.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from ..errors import Forbidden
from ..r4.tables import compartment_params

# interaction -> the SMART v2 permission letter it needs
PERMISSION = {"create": "c", "read": "r", "vread": "r", "history": "r", "update": "u", "patch": "u",
              "delete": "d", "search": "s"}
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)(\?.*)?$")


@dataclass(frozen=True)
class ScopeGrant:
    """One parsed resource scope such as patient/Observation.rs?category=laboratory."""

    level: str  # patient | user | system
    resource_type: str  # a type or '*'
    permissions: frozenset[str]
    filters: tuple[tuple[str, str], ...] = ()

    def covers(self, resource_type: str, permission: str) -> bool:
        return (self.resource_type in ("*", resource_type)) and permission in self.permissions


def parse_scope(scope: str) -> ScopeGrant | None:
    """Parse a SMART v1 or v2 resource scope; None for non-resource or malformed scopes."""
    m = _SCOPE.match(scope)
    if not m or not m.group(3):
        return None
    level, rtype, perm, query = m.groups()
    perms = _V1.get(perm, perm)
    filters = tuple(parse_qsl(query[1:])) if query else ()
    return ScopeGrant(level, rtype, frozenset(perms), filters)


@dataclass(frozen=True)
class AccessContext:
    """The caller of a service function and what it may touch."""

    kind: str  # system | patient | user
    grants: tuple[ScopeGrant, ...] = ()
    patient_ids: frozenset[str] | None = None  # None: not limited to a compartment
    user: str | None = None  # FHIR reference of the acting person, e.g. Patient/1, RelatedPerson/7
    client_id: str | None = None
    trusted: bool = False  # in-process callers acting with full rights (CLI, import, tests)
    label: str = ""
    scopes: tuple[str, ...] = field(default=())
    # Patients a user/ scope reaches for this person (a patient or proxy); None: unconfined (staff).
    user_patient_ids: frozenset[str] | None = None
    notify: bool = True  # False: writes tell nobody (imports of historical data, demo data)

    @classmethod
    def system(cls, label: str = "system", notify: bool = True) -> "AccessContext":
        """Full access, for the command line, imports and the practice's own processes."""
        return cls(kind="system", trusted=True, label=label, notify=notify)

    @classmethod
    def from_scopes(cls, scopes: Iterable[str], *, patient_id: str | None = None, user: str | None = None,
                    client_id: str | None = None, patient_ids: Iterable[str] | None = None,
                    user_patient_ids: Iterable[str] | None = None) -> "AccessContext":
        """Build a context from granted SMART scopes and the launch context.

        `user_patient_ids` confines user/ scopes to the patients the person may act for (a patient
        or proxy); leave it None only for practice staff, whose user/ scopes reach every record.
        """
        scope_list = tuple(scopes)
        grants = tuple(g for g in (parse_scope(s) for s in scope_list) if g)
        limited = None
        if any(g.level == "patient" for g in grants):
            ids = set(patient_ids or ())
            if patient_id:
                ids.add(patient_id)
            limited = frozenset(ids)
        kind = "system" if grants and all(g.level == "system" for g in grants) else (
            "patient" if limited is not None else "user")
        return cls(kind=kind, grants=grants, patient_ids=limited, user=user, client_id=client_id,
                   scopes=scope_list, label=client_id or user or "",
                   user_patient_ids=None if user_patient_ids is None else frozenset(user_patient_ids))

    def grants_for(self, resource_type: str, permission: str) -> list[ScopeGrant]:
        """The grants that allow `permission` on `resource_type` (empty: forbidden)."""
        return [g for g in self.grants if g.covers(resource_type, permission)]

    def require(self, resource_type: str, interaction: str) -> list[ScopeGrant]:
        """Raise Forbidden unless some scope allows the interaction; return the allowing grants."""
        if self.trusted:
            return []
        permission = PERMISSION[interaction]
        grants = self.grants_for(resource_type, permission)
        if not grants:
            raise Forbidden(f"The granted scopes do not allow {interaction} on {resource_type}")
        return grants

    def confinement(self, grants: list[ScopeGrant]) -> frozenset[str] | None:
        """The patients a caller using `grants` is confined to, whatever the type (None: unconfined)."""
        if self.trusted:
            return None
        levels = {g.level for g in grants}
        if "system" in levels:
            return None
        return self.user_patient_ids if "user" in levels else self.patient_ids

    def compartment_limit(self, resource_type: str, grants: list[ScopeGrant]) -> frozenset[str] | None:
        """Patient ids the request is confined to for this type, or None when unconfined.

        Types outside the Patient compartment (Practitioner, Organization, Medication, ...) are the
        practice's shared data: readable by any caller whose scopes allow it, writable only by unconfined
        callers (fhir_server.access.guard). Binary is outside R4's compartment but holds documents: it is
        confined through its securityContext.
        """
        limit = self.confinement(grants)
        if limit is None:
            return None
        if resource_type not in ("Patient", "Binary") and not compartment_params(resource_type):
            return None
        return limit

    @staticmethod
    def filters(grants: list[ScopeGrant]) -> list[tuple[tuple[str, str], ...]] | None:
        """OR-list of scope query filters; None when some grant is unfiltered."""
        if not grants or any(not g.filters for g in grants):
            return None
        return [g.filters for g in grants]
