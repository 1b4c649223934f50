"""Patient/$everything: the patient compartment (plus what it references), paged by keyset."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select

from ..access.context import AccessContext
from ..errors import BadRequest, NotFound
from ..r4.dates import parse_range
from ..r4.tables import compartment_params, patient_compartment, resource_types
from ..search.executor import SearchExecutor
from ..storage.models import CompartmentIndex, ReferenceIndex, ResourceRow

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
    lo, hi = _bound(req.start, "start", False), _bound(req.end, "end", True)
    since = _bound(req.since, "_since", False)
    c, r = CompartmentIndex, ResourceRow
    # Members are the types the R4 compartment definition lists (the index also files Binary documents
    # under their patient, for access checks; those are not compartment members).
    members = sorted(t for t in patient_compartment() if compartment_params(t)) + ["Patient"]
    conds = [c.patient_id == req.patient_id, r.deleted.is_(False), c.res_type.in_(members)]
    if lo is not None:
        conds.append(or_(c.date_high.is_(None), c.date_high >= lo))
    if hi is not None:
        conds.append(or_(c.date_low.is_(None), c.date_low <= hi))
    if since is not None:
        conds.append(r.updated_ms >= since)
    untyped = list(conds)  # referenced resources come from every member, whatever _type lists
    if req.types:
        conds.append(c.res_type.in_(req.types))
    after = 0
    if req.cursor:
        data = svc.codec.decode(req.cursor)
        if data.get("e") != req.patient_id:
            raise BadRequest("The paging cursor belongs to a different $everything request")
        after = int(data["k"])
    earlier = [*untyped, r.pk <= after]
    conds.append(r.pk > after)
    page = EverythingPage()
    with svc.unit() as repo:
        svc.visible_current(repo, ctx, "Patient", req.patient_id)  # 404/410/403 exactly as a read would
        q = (select(r.pk, r.res_type, r.fhir_id, r.text).join(c, c.res_pk == r.pk).where(and_(*conds))
             .order_by(r.pk))
        limit = req.count
        rows = repo.s.execute(q.limit(limit + 1) if limit is not None else q).all()
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        seen = set()
        visible = svc.guard.readable(repo, ctx, [(pk, t, i) for pk, t, i, _ in rows], member_of=req.patient_id)
        for pk, t, i, text in rows:
            if (t, i) in seen or pk not in visible:
                continue
            seen.add((t, i))
            page.entries.append((t, i, text or ""))
        ex = SearchExecutor(repo.s, svc.builder, svc.codec)
        sources = [row[0] for row in rows]
        if req.types:  # members of unlisted types in this page's key window may refer to listed ones
            window = [*untyped, r.pk > after] + ([r.pk <= rows[-1][0]] if more else [])
            sources = list(repo.s.execute(select(r.pk).join(c, c.res_pk == r.pk).where(and_(*window))).scalars())
        refs = ex.references_from(sources, None, None)
        outside = [(t, i) for t, i in refs if (t, i) not in seen and t != "Patient" and not compartment_params(t)
                   and (not req.types or t in req.types)]
        if after and outside:  # each referenced resource comes once: with the first page that refers to it
            shown = repo.s.execute(
                select(ReferenceIndex.target_type, ReferenceIndex.target_id).distinct()
                .join(r, r.pk == ReferenceIndex.res_pk).join(c, c.res_pk == r.pk)
                .where(and_(*earlier), ReferenceIndex.target_id.in_(sorted({i for _, i in outside})))).all()
            outside = [ref for ref in outside if ref not in {(t, i) for t, i in shown}]
        found = ex.pks_of(outside)
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
