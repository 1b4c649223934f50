"""History (instance, type, system) from the version table, newest first, keyset-paged."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..access.context import AccessContext
from ..errors import BadRequest, FhirError, Forbidden, NotFound
from ..r4.dates import parse_range
from ..storage.models import ResourceVersion

if TYPE_CHECKING:
    from ..service import FhirService
    from ..storage.repository import Repository


def history(svc: "FhirService", ctx: AccessContext, rtype: str | None, fid: str | None, since: str | None,
            count: str | None, cursor: str | None) -> tuple[list[Any], str | None]:
    """Version rows newest first, and the cursor of the next page."""
    if count and not count.isdigit():
        raise BadRequest(f"_count must be a non-negative integer, not {count!r}", expression=["_count"])
    limit = max(1, min(int(count), 1000)) if count else 50
    svc.settle_audit(rtype)
    res_pk: int | None = None
    if rtype and fid:
        svc.check_type(rtype, fid)
        with svc.unit(reader=svc.reader(ctx, rtype)) as repo:
            cur = repo.current(rtype, fid)
            if cur is None:
                ctx.require(rtype, "history")
                raise NotFound(f"{rtype}/{fid} is not known")
            if not cur.deleted:
                svc.guard.check_read(repo, ctx, rtype, fid, cur.pk, "history")
            else:  # a deleted resource's history is shown to whoever could see what was deleted
                last = repo.last_live_version(cur.pk)
                svc.guard.check_version(repo, ctx, rtype, fid, last.text if last else None, "history")
        res_pk = cur.pk
    elif rtype:
        svc.check_type(rtype)
        if not ctx.trusted and (not ctx.grants_for(rtype, "r") or ctx.compartment_limit(rtype, ctx.grants_for(rtype, "r")) is not None):
            raise Forbidden("Type history needs user or system read access to the type")
    types = None if rtype else svc.guard.system_history_types(ctx)
    since_ms = before = None
    if since:
        rng = parse_range(since)
        if rng is None:
            raise BadRequest(f"_since must be an instant, not {since!r}")
        since_ms = rng[0]
    if cursor:
        data = svc.codec.decode(cursor)
        if not isinstance(data.get("h"), int):
            raise BadRequest("The paging cursor does not belong to a history")
        before = data["h"]
    with svc.unit(reader=svc.reader(ctx, rtype)) as repo:
        rows = repo.history_rows(res_pk, rtype, since_ms, before, limit + 1, types)
        nxt = svc.codec.encode({"h": rows[limit - 1].pk}) if len(rows) > limit else None
        shown = [row for row in rows[:limit] if _version_visible(svc, repo, ctx, row, rows)]
    svc.record_access(ctx, "history", rtype or "", sorted({f"{r.res_type}/{r.fhir_id}" for r in shown}))
    return shown, nxt


def _version_visible(svc: "FhirService", repo: "Repository", ctx: AccessContext, row: ResourceVersion,
                     page: list[ResourceVersion]) -> bool:
    """Each version is judged by its own content; a deletion by the version it deleted."""
    text = row.text
    if text is None:
        earlier = [r for r in page if r.res_pk == row.res_pk and r.version < row.version and r.text is not None]
        text = max(earlier, key=lambda r: r.version).text if earlier else _before(repo, row)
    try:
        svc.guard.check_version(repo, ctx, row.res_type, row.fhir_id, text, "history")
    except FhirError:
        return False
    return True


def _before(repo: "Repository", row: ResourceVersion) -> str | None:
    prior = repo.version(row.res_type, row.fhir_id, row.version - 1) if row.version > 1 else None
    return prior.text if prior is not None else None
