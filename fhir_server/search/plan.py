"""The SQL of one search page: filter and sort on the index tables, read fhir_resource for the page's rows only.

fhir_resource rows are wide (the stored JSON `text`), so a plan that fetches one for every candidate reads
most of a patient's pages when only 20 are shown. Here the keys of a page are found first (KeyPlan) and
fhir_resource is joined for those n+1 keys alone:

    SELECT r.pk, r.res_type, r.fhir_id, r.text, k.s0 ... FROM (
        SELECT c.candidate_pk AS pk, <sort key on c.candidate_pk> AS s0 ... FROM (
            SELECT DISTINCT drv.res_pk AS candidate_pk FROM <index table, or the compartment> drv
            WHERE <driving criterion> AND <other criteria: EXISTS correlated to drv.res_pk>) c
        [WHERE <keyset cursor>] ORDER BY s0 ..., pk LIMIT n+1) k
    JOIN fhir_resource r ON r.pk = k.pk WHERE r.deleted IS false ORDER BY k.s0 ..., k.pk

Deleted resources have no index rows (Repository.mark_deleted drops them), so the deleted test can move
to the join. Searches without a driving index criterion, or whose criteria or sort keys read other columns
of fhir_resource (_id, _lastUpdated, _has), take their keys from fhir_resource itself, still joined late.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select
from sqlalchemy.sql.elements import Label

from ..errors import BadRequest
from ..r4.dates import MAX_MS, MIN_MS
from ..r4.tables import search_params
from ..storage.models import INDEX_TABLES
from .rows import CANDIDATE, RESOURCE, ROW, KeyRow, NeedsRow, candidate_select, on_row, row_columns

if TYPE_CHECKING:
    from .conditions import ConditionBuilder
    from .parse import SearchRequest

_STR_MAX, _STR_MIN = "\U0010ffff", ""


def sort_key(rtype: str, pname: str, desc: bool, row: Any = ROW) -> ColumnElement[Any]:
    """The SQL expression of one sort key of `row`; resources without a value sort last (a sentinel stands in)."""
    if pname == "_id":
        return cast(ColumnElement[Any], row.fhir_id)
    if pname == "_lastUpdated":
        return cast(ColumnElement[Any], row.updated_ms)
    spec = search_params().get(rtype, {}).get(pname)
    if spec is None:
        raise BadRequest(f"Unknown sort parameter {pname!r}")
    t = INDEX_TABLES[spec["type"]].__table__.c
    agg = func.max if desc else func.min
    column = {"date": "high" if desc else "low", "string": "norm", "token": "code", "reference": "target_id",
              "quantity": "value", "number": "value", "uri": "value"}[spec["type"]]
    if spec["type"] == "date":
        sentinel: Any = MIN_MS if desc else MAX_MS
    elif spec["type"] in ("quantity", "number"):
        sentinel = -1e308 if desc else 1e308
    else:
        sentinel = _STR_MIN if desc else _STR_MAX
    sub = select(agg(t[column])).where(t.res_pk == row.pk, t.param == pname).scalar_subquery()
    return func.coalesce(sub, literal(sentinel))


def _ordered(col: Any, descending: bool) -> Any:
    return col.desc() if descending else col.asc()


@dataclass
class KeyPlan:
    """Where a search's keys come from: `source` filtered by `where`, its key `pk`, the sort keys on that pk."""

    source: Any
    where: list[ColumnElement[bool]]
    pk: ColumnElement[Any]
    sorts: list[tuple[ColumnElement[Any], bool]]  # (expression, descending)

    @classmethod
    def build(cls, builder: ConditionBuilder, req: SearchRequest, extra: list[ColumnElement[bool]],
              types: list[str] | None, extra_driven: bool) -> KeyPlan:
        """The narrow plan when the search allows it, else keys from fhir_resource."""
        rtype = req.resource_type
        if rtype:
            narrow = cls.narrow(builder, rtype, req, extra)
            if narrow is not None:
                return narrow
            conds, driven = builder.conditions(rtype, req.criteria)
            where = [*extra, *(conds if (driven or extra_driven) else [ROW.res_type == rtype, *conds])]
            return cls.wide(where, [(sort_key(rtype, p, d), d) for p, d in req.sort])
        where = [*extra, *[builder.criterion("", c) for c in req.criteria]]  # _id / _lastUpdated
        if types:
            where.append(ROW.res_type.in_(types))
        return cls.wide(where, [])

    @classmethod
    def narrow(cls, builder: ConditionBuilder, rtype: str, req: SearchRequest,
               extra: list[ColumnElement[bool]]) -> KeyPlan | None:
        """Keys from candidates (the compartment, else the first drivable criterion) and index tables alone."""
        sources = [candidate_select(x) for x in extra]
        criteria = list(req.criteria)
        if any(sel is not None for sel in sources):
            i = next(n for n, sel in enumerate(sources) if sel is not None)
            source = sources[i]
            extra = extra[:i] + extra[i + 1:]
        else:
            first = next((n for n, c in enumerate(criteria) if builder.drivable(c)), None)
            if first is None:
                return None
            source = builder.candidates(rtype, criteria.pop(first))
        assert source is not None
        if any(row_columns(x) - {"pk"} for x in extra):
            return None
        key = cast(Label[Any], source.selected_columns[0]).element  # the candidates' res_pk
        try:
            conds, _ = builder.conditions(rtype, criteria, row=KeyRow(key), drive=False)  # EXISTS per candidate
            keys = source.where(*[on_row(x, {"pk": key}) for x in extra], *conds).distinct().subquery("c")
            pk = keys.c[CANDIDATE]
            return cls(keys, [], pk, [(sort_key(rtype, p, d, KeyRow(pk)), d) for p, d in req.sort])
        except NeedsRow:
            return None

    @classmethod
    def wide(cls, where: list[ColumnElement[bool]], sorts: list[tuple[ColumnElement[Any], bool]]) -> KeyPlan:
        """Keys from fhir_resource itself (live rows only)."""
        return cls(RESOURCE, [ROW.deleted.is_(False), *where], ROW.pk, sorts)

    def count(self) -> Select[Any]:
        """How many resources match (for _total=accurate and _summary=count)."""
        return select(func.count()).select_from(self.source).where(*self.where)

    def after(self, values: Any, backwards: bool) -> ColumnElement[bool]:
        """Keyset predicate: keys strictly after (or before) a cursor's position (its sort values, then pk)."""
        exprs = [*self.sorts, (self.pk, False)]
        if not isinstance(values, list) or len(values) != len(exprs):
            raise BadRequest("The paging cursor does not match the sort order")
        alts = []
        for i, (expr, desc) in enumerate(exprs):
            eqs = [exprs[j][0] == values[j] for j in range(i)]
            cmp = expr < values[i] if desc != backwards else expr > values[i]
            alts.append(and_(*eqs, cmp))
        return or_(*alts)

    def page(self, limit: int, cursor: list[Any] | None = None, backwards: bool = False) -> Select[Any]:
        """(pk, type, id, text, *sort values) of up to `limit` matches after `cursor`, in order (reversed backwards)."""
        descending = [d != backwards for _, d in self.sorts]
        labels = [expr.label(f"s{n}") for n, (expr, _) in enumerate(self.sorts)]
        pk = self.pk.label("pk")
        keys = (select(pk, *labels).select_from(self.source)
                .where(*self.where, *([] if cursor is None else [self.after(cursor, backwards)]))
                .order_by(*[_ordered(lab, d) for lab, d in zip(labels, descending, strict=True)],
                          _ordered(pk, backwards))
                .limit(limit).subquery("k"))
        sort_cols = [keys.c[f"s{n}"] for n in range(len(labels))]
        return (select(ROW.pk, ROW.res_type, ROW.fhir_id, ROW.text, *sort_cols)  # k is a derived table: no clash
                .join_from(keys, RESOURCE, ROW.pk == keys.c.pk).where(ROW.deleted.is_(False))
                .order_by(*[_ordered(col, d) for col, d in zip(sort_cols, descending, strict=True)],
                          _ordered(keys.c.pk, backwards)))
