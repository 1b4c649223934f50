"""Turn parsed search criteria into SQLAlchemy conditions on fhir_resource (index-table subqueries).

Conditions test a resource given as `row`: fhir_resource's own columns (ROW), an alias's (subqueries), or a
KeyRow that has only the key, whose other columns raise NeedsRow (search.plan plans a search on index tables).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, not_, or_, select, true

from ..errors import BadRequest
from ..r4.dates import parse_range
from ..r4.tables import resource_types, search_params
from ..storage.indexing import normalize, split_reference
from ..storage.models import INDEX_TABLES, CompartmentIndex, ReferenceIndex
from .parse import Criterion, prefix_of
from .rows import CANDIDATE, RESOURCE, ROW

# Parameters likely to be selective: they drive the query (IN), the rest are correlated EXISTS.
_DRIVER_TYPES = ("reference", "token")
# What an inner query over a type may see: extra conditions on its rows (fhir_server.access.guard confines them).
Confine = Callable[[str, Any], list[ColumnElement[bool]]]
# One named alias per table for the (single) driving subquery of a search, built once: building an alias's
# columns costs more than the rest of a search's SQL. Conditions correlated to its res_pk use the tables.
_DRIVER = {kind: model.__table__.alias(f"{model.__tablename__}_k").c
           for kind, model in [*INDEX_TABLES.items(), ("compartment", CompartmentIndex)]}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _range_cond(lo_col: Any, hi_col: Any, prefix: str, lo: int | float, hi: int | float) -> ColumnElement[bool]:
    """FHIR comparison of a stored interval [lo_col, hi_col] with a search interval [lo, hi]."""
    if prefix == "eq":
        return and_(lo_col >= lo, hi_col <= hi)
    if prefix == "ne":
        return or_(lo_col < lo, hi_col > hi)
    if prefix == "gt":
        return hi_col > hi
    if prefix == "lt":
        return lo_col < lo
    if prefix == "ge":  # the range above the value overlaps the target, or the value contains it
        return or_(hi_col > hi, lo_col >= lo)
    if prefix == "le":  # the range below the value overlaps the target, or the value contains it
        return or_(lo_col < lo, hi_col <= hi)
    if prefix == "sa":
        return lo_col > hi
    if prefix == "eb":
        return hi_col < lo
    span = (hi - lo) * 0.1 + 1  # ap: approximately, as overlap of a widened range
    return and_(lo_col <= hi + span, hi_col >= lo - span)


def _number_bounds(text: str) -> tuple[float, float]:
    """The implicit precision range of a decimal literal: 100 -> [99.5, 100.5]."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise BadRequest(f"{text!r} is not a number") from None
    if not d.is_finite() or not math.isfinite(float(d)):
        raise BadRequest(f"{text!r} is not a finite number")
    exp = d.as_tuple().exponent
    half = Decimal(5) * (Decimal(10) ** (int(exp) - 1)) if isinstance(exp, int) else Decimal(0)
    return float(d - half), float(d + half)


class ConditionBuilder:
    """Builds WHERE conditions for one resource type."""

    def __init__(self, base_url: str, confine: Confine | None = None) -> None:
        self.base_url = base_url
        self.confine = confine

    def confined(self, confine: Confine) -> ConditionBuilder:
        """A builder whose inner queries (`_has` sources, chain targets) also satisfy `confine(type, row)`."""
        return ConditionBuilder(self.base_url, confine)

    def _inner(self, rtype: str, row: Any) -> list[ColumnElement[bool]]:
        return self.confine(rtype, row) if self.confine is not None else []

    def criterion(self, rtype: str, c: Criterion, drive: bool = False, row: Any = ROW) -> ColumnElement[bool]:
        """One criterion on the resource `row`; `drive`: as `pk IN (candidates)` instead of a correlated EXISTS."""
        if c.has is not None:
            return self._has(rtype, c, row)
        if c.name in ("_id", "_lastUpdated") and c.modifier == "missing":  # every resource has both
            return false() if (c.values or ["true"])[0] == "true" else true()
        if c.name == "_id":
            cond = row.fhir_id.in_(c.values)
            return not_(cond) if c.modifier == "not" else cond
        if c.name == "_lastUpdated":
            return or_(*[self._last_updated(v, row) for v in c.values])
        if drive:
            return row.pk.in_(self.candidates(rtype, c))
        t = INDEX_TABLES[c.ptype].__table__.c
        if c.modifier == "missing":
            present = exists(select(t.id).where(t.res_pk == row.pk, t.param == c.name))
            want_missing = (c.values or ["true"])[0] == "true"
            return not_(present) if want_missing else present
        if c.modifier == "not":
            return not_(exists(select(t.id).where(t.res_pk == row.pk, t.res_type == rtype, t.param == c.name,
                                                  self._value_cond(rtype, t, c))))
        return exists(select(t.id).where(t.res_pk == row.pk, t.param == c.name, self._value_cond(rtype, t, c)))

    def candidates(self, rtype: str, c: Criterion) -> Select[Any]:
        """SELECT res_pk AS candidate_pk of the `rtype` resources a drivable criterion matches.

        The index table gets its own alias: conditions correlated to its res_pk may probe the same table.
        Deleted resources have no index rows, so these are live resources of `rtype` only.
        """
        t = _DRIVER[c.ptype]
        return select(t.res_pk.label(CANDIDATE)).where(t.res_type == rtype, t.param == c.name,
                                                       self._value_cond(rtype, t, c))

    def _value_cond(self, rtype: str, t: Any, c: Criterion) -> ColumnElement[bool]:
        """The criterion's values (ORed) on index table columns `t`; a chain looks its targets up."""
        if c.chain is None:
            return or_(*[self._value(rtype, t, c, v) for v in c.values])
        target, _, inner = c.chain
        other = RESOURCE.alias()
        ids = select(other.c.fhir_id).where(other.c.res_type == target, *self._inner(target, other.c),
                                            self.criterion(target, inner, row=other.c)).scalar_subquery()
        return and_(t.target_type == target, t.target_id.in_(ids))

    def _last_updated(self, raw: str, row: Any) -> ColumnElement[bool]:
        prefix, value = prefix_of(raw)
        rng = parse_range(value)
        if rng is None:
            raise BadRequest(f"{value!r} is not a valid date", expression=["_lastUpdated"])
        return _range_cond(row.updated_ms, row.updated_ms, prefix, rng[0], rng[1])

    def _value(self, rtype: str, table: Any, c: Criterion, raw: str) -> ColumnElement[bool]:
        kind = c.ptype
        if kind == "token":
            return self._token(table, c, raw)
        if kind == "string":
            if c.modifier == "exact":
                return table.exact == raw
            pattern = _like_escape(normalize(raw))
            if c.modifier == "contains":
                return table.norm.like(f"%{pattern}%", escape="\\")
            return table.norm.like(f"{pattern}%", escape="\\")
        if kind == "date":
            prefix, value = prefix_of(raw)
            rng = parse_range(value)
            if rng is None:
                raise BadRequest(f"{value!r} is not a valid date for {c.name}", expression=[c.name])
            return _range_cond(table.low, table.high, prefix, rng[0], rng[1])
        if kind in ("number", "quantity"):
            prefix, value = prefix_of(raw)
            number, _, unit = value.partition("|")
            lo, hi = _number_bounds(number)
            if prefix not in ("eq", "ne", "ap"):  # eq/ne/ap honour the value's implicit precision
                lo = hi = float(Decimal(number))
            if prefix == "eq":  # 100 means 99.5 <= x < 100.5
                cond = and_(table.value >= lo, table.value < hi)
            elif prefix == "ne":
                cond = or_(table.value < lo, table.value >= hi)
            else:
                cond = _range_cond(table.value, table.value, prefix, lo, hi)
            if kind == "quantity" and unit:
                system, _, code = unit.partition("|")
                if code:
                    cond = and_(cond, table.code == code, *( [table.system == system] if system else []))
                else:
                    cond = and_(cond, table.code == system)
            return cond
        if kind == "reference":
            return self._reference(table, rtype, c, raw)
        if kind == "uri":
            if c.modifier == "below":
                return table.value.like(_like_escape(raw) + "%", escape="\\")
            if c.modifier == "above":
                prefixes = [raw[:i] for i in range(1, len(raw) + 1) if i == len(raw) or raw[i] == "/"]
                return table.value.in_(prefixes)
            return table.value == raw
        raise BadRequest(f"Search on {kind} parameters is not supported")

    @staticmethod
    def _token(t: Any, c: Criterion, raw: str) -> ColumnElement[bool]:
        if c.modifier == "text":
            return t.text.like(f"%{_like_escape(normalize(raw))}%", escape="\\")  # text is stored folded
        if c.modifier not in (None, "not", "exact", "code"):
            raise BadRequest(f"Modifier :{c.modifier} is not supported on token parameter {c.name}")
        if "|" in raw:
            system, _, code = raw.partition("|")
            if system == "":
                return and_(t.system.is_(None), t.code == code)
            if code == "":
                return t.system == system
            return and_(t.system == system, t.code == code)
        return t.code == raw

    def _reference(self, r: Any, rtype: str, c: Criterion, raw: str) -> ColumnElement[bool]:
        if c.modifier == "identifier":
            raise BadRequest(":identifier is not supported on reference parameters")
        self._check_local_reference(rtype, c, raw)
        ttype, tid, url = split_reference(raw, self.base_url)
        if tid is None and url is None:
            cond = r.target_id == raw
            if c.modifier:
                cond = and_(cond, r.target_type == c.modifier)
            return cond
        if url is not None and tid is None:
            return r.url == url
        cond = and_(r.target_type == ttype, r.target_id == tid)
        return or_(cond, r.url == url) if url else cond

    def _check_local_reference(self, rtype: str, c: Criterion, raw: str) -> None:
        """A local reference value is id, Type/id or Type/id/_history/v with a Type the parameter allows."""
        local = raw[len(self.base_url) + 1:] if raw.startswith(self.base_url + "/") else raw
        if "://" in local or local.startswith("urn:"):
            return
        parts = local.split("/")
        if len(parts) == 1:
            return
        targets = search_params().get(rtype, {}).get(c.name, {}).get("target") or []
        well_formed = len(parts) == 2 or (len(parts) == 4 and parts[2] == "_history")
        if not well_formed or parts[0] not in resource_types() or not all(parts) or (targets and parts[0] not in targets):
            raise BadRequest(f"{raw!r} is not a reference {rtype}.{c.name} can hold", expression=[c.name])

    def _has(self, rtype: str, c: Criterion, row: Any) -> ColumnElement[bool]:
        assert c.has is not None
        source, ref_param, inner = c.has
        src = RESOURCE.alias()
        src_pks = select(src.c.pk).where(src.c.res_type == source, src.c.deleted.is_(False),
                                         *self._inner(source, src.c), self.criterion(source, inner, row=src.c))
        ref = ReferenceIndex.__table__.alias().c
        ids = select(ref.target_id).where(ref.res_type == source, ref.param == ref_param, ref.target_type == rtype,
                                          ref.res_pk.in_(src_pks))
        return row.fhir_id.in_(ids)

    @staticmethod
    def drivable(c: Criterion) -> bool:
        """A selective criterion that can drive a search (its index rows give the candidates' keys)."""
        return (c.ptype in _DRIVER_TYPES and c.modifier is None and c.chain is None and c.has is None
                and c.name != "_id")

    def conditions(self, rtype: str, criteria: list[Criterion], row: Any = ROW,
                   drive: bool = True) -> tuple[list[ColumnElement[bool]], bool]:
        """AND of all criteria, and whether a selective one drives the query (IN on the primary key).

        When one drives, the caller must not also filter fhir_resource by type: SQLite would
        otherwise scan every resource of the type instead of looking up the few driven keys.
        """
        order = sorted(range(len(criteria)), key=lambda i: (not self.drivable(criteria[i]), i))
        out = []
        driven = False
        for rank, i in enumerate(order):
            c = criteria[i]
            drives = drive and rank == 0 and self.drivable(c)
            driven = driven or drives
            out.append(self.criterion(rtype, c, drive=drives, row=row))
        return out, driven

    def compartment(self, patient_ids: frozenset[str], rtype: str | None = None) -> ColumnElement[bool]:
        """Restrict to resources (of `rtype`) in the compartment of one of `patient_ids`."""
        if not patient_ids:
            return false()
        comp = _DRIVER["compartment"]
        if rtype:  # candidates: live resources of rtype (deleted ones have no compartment rows)
            return ROW.pk.in_(select(comp.res_pk.label(CANDIDATE)).where(
                comp.patient_id.in_(sorted(patient_ids)), comp.res_type == rtype))
        return ROW.pk.in_(select(comp.res_pk).where(comp.patient_id.in_(sorted(patient_ids))))

    def scope_filters(self, rtype: str, filters: list[tuple[tuple[str, str], ...]] | None,
                      row: Any = ROW) -> ColumnElement[bool]:
        """SMART v2 scope query filters (e.g. category=...|laboratory), ORed across grants."""
        if not filters:
            return true()
        from .parse import _criterion  # local: keeps the parser free of SQL imports
        alts = []
        for flt in filters:
            conds = []
            for key, value in flt:
                crit = _criterion(rtype, key, value, True, [])
                conds.append(self.criterion(rtype, crit, row=row) if crit else true())
            alts.append(and_(*conds))
        return or_(*alts)
