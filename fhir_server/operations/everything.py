"""Patient/$everything: the patient compartment (plus what it references), paged by keyset."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..access.context import AccessContext
from ..errors import BadRequest, NotFound
from ..r4.dates import parse_range
from ..r4.tables import compartment_params, patient_compartment, resource_types
from ..storage.repository import CompartmentFilter

if TYPE_CHECKING:
    from ..service import FhirService

DEFAULT_COUNT = 1000
MAX_COUNT = 5000


@dataclass
class EverythingRequest:
    patient_id: str
    start: str | None = None
    end: str | None = None
    since: str | None = None
    types: list[str] | None = None
    count: int | None = DEFAULT_COUNT  # None: everything at once (bundle builders)
    cursor: str | None = None


@dataclass
class EverythingPage:
    entries: list[tuple[str, str, str]] = field(default_factory=list)
    next_cursor: str | None = None
    total: int | None = None


def _bound(value: str | None, name: str, high: bool) -> int | None:
    if not value:
        return None
    rng = parse_range(value)
    if rng is None:
        raise BadRequest(f"{name} must be a FHIR date, not {value!r}", expression=[name])
    return rng[1] if high else rng[0]


def everything(svc: "FhirService", ctx: AccessContext, req: EverythingRequest) -> EverythingPage:
    """Compute one page of $everything under `ctx` (scopes and compartment enforced per type)."""
    unknown = [t for t in req.types or [] if t not in resource_types()]
    if unknown:
        raise BadRequest(f"_type names unknown resource types: {', '.join(unknown)}", expression=["_type"])
    svc.check_type("Patient", req.patient_id)
    if not req.types or "AuditEvent" in req.types:
        svc.settle_audit("AuditEvent")
    # Members are the types the R4 compartment definition lists (the index also files Binary documents
    # under their patient, for access checks; those are not compartment members).
    members = tuple(sorted(t for t in patient_compartment() if compartment_params(t)) + ["Patient"])
    flt = CompartmentFilter(req.patient_id, members, tuple(req.types) if req.types else None,
                            _bound(req.start, "start", False), _bound(req.end, "end", True),
                            _bound(req.since, "_since", False))
    after = 0
    if req.cursor:
        data = svc.codec.decode(req.cursor)
        if data.get("e") != req.patient_id:
            raise BadRequest("The paging cursor belongs to a different $everything request")
        after = int(data["k"])
    page = EverythingPage()
    with svc.unit(reader=svc.reader(ctx, "Patient")) as repo:
        svc.visible_current(repo, ctx, "Patient", req.patient_id)  # 404/410/403 exactly as a read would
        limit = req.count
        rows = repo.compartment_rows(flt, after, limit + 1 if limit is not None else None)
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        seen = set()
        visible = svc.guard.readable(repo, ctx, [(pk, t, i) for pk, t, i, _ in rows], member_of=req.patient_id)
        for pk, t, i, text in rows:
            if (t, i) in seen or pk not in visible:
                continue
            seen.add((t, i))
            page.entries.append((t, i, text))
        sources = [row[0] for row in rows]
        if req.types:  # members of unlisted types in this page's key window may refer to listed ones
            sources = repo.compartment_pks(flt, after, rows[-1][0] if more else None)
        refs = repo.references_from(sources, None, None)
        outside = [(t, i) for t, i in refs if (t, i) not in seen and t != "Patient" and not compartment_params(t)
                   and (not req.types or t in req.types)]
        if after and outside:  # each referenced resource comes once: with the first page that refers to it
            shown = repo.referenced_up_to(flt, after, [i for _, i in outside])
            outside = [ref for ref in outside if ref not in shown]
        found = repo.pks_of(outside)
        allowed = svc.guard.readable(repo, ctx, [(pk, t, i) for pk, t, i, _ in found])
        for pk, t, i, text in found:
            if pk in allowed:
                seen.add((t, i))
                page.entries.append((t, i, text))
        if more:
            page.next_cursor = svc.codec.encode({"e": req.patient_id, "k": rows[-1][0]})
        elif not req.cursor:
            page.total = len(page.entries)
    svc.record_access(ctx, "read", "Patient", [f"{t}/{i}" for t, i, _ in page.entries], patients=[req.patient_id])
    return page


__all__ = ["EverythingRequest", "EverythingPage", "everything", "NotFound"]
