"""History (instance, type, system) from the version table, newest first, keyset-paged."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from .access import AccessContext
from .dates import parse_range
from .errors import BadRequest, Forbidden, NotFound
from .models import ResourceVersion

if TYPE_CHECKING:
    from .service import FhirService


def history(svc: "FhirService", ctx: AccessContext, rtype: str | None, fid: str | None, since: str | None,
            count: str | None, cursor: str | None) -> tuple[list[Any], str | None]:
    """Version rows newest first, and the cursor of the next page."""
    if count and not count.isdigit():
        raise BadRequest(f"_count must be a non-negative integer, not {count!r}", expression=["_count"])
    limit = max(1, min(int(count), 1000)) if count else 50
    svc.settle_audit(rtype)
    v = ResourceVersion
    q = select(v)
    if rtype and fid:
        svc._check_type(rtype, fid)
        with svc.unit() as repo:
            cur = repo.current(rtype, fid)
            if cur is None:
                ctx.require(rtype, "history")
                raise NotFound(f"{rtype}/{fid} is not known")
            if not cur.deleted:
                svc._check_visible(repo, ctx, rtype, fid, cur.pk, "history")
            else:
                ctx.require(rtype, "history")
        q = q.where(v.res_pk == cur.pk)
    elif rtype:
        svc._check_type(rtype)
        if not ctx.trusted and (not ctx.grants_for(rtype, "r") or ctx.compartment_limit(rtype, ctx.grants_for(rtype, "r")) is not None):
            raise Forbidden("Type history needs user or system read access to the type")
        q = q.where(v.res_type == rtype)
    elif not ctx.trusted:
        raise Forbidden("System history needs system access")
    if since:
        rng = parse_range(since)
        if rng is None:
            raise BadRequest(f"_since must be an instant, not {since!r}")
        q = q.where(v.updated_ms >= rng[0])
    if cursor:
        data = svc.codec.decode(cursor)
        if not isinstance(data.get("h"), int):
            raise BadRequest("The paging cursor does not belong to a history")
        q = q.where(v.pk < data["h"])
    with svc.unit() as repo:
        rows = list(repo.s.execute(q.order_by(v.pk.desc()).limit(limit + 1)).scalars())
        repo.s.expunge_all()
    nxt = svc.codec.encode({"h": rows[limit - 1].pk}) if len(rows) > limit else None
    return rows[:limit], nxt
