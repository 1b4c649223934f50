"""The tested resource of a search condition: fhir_resource's own row, or a key standing in for it.

Conditions (search.conditions) test a resource given as `row`; the planner (search.plan) swaps the
row for an index table's key where a search can be answered from index tables alone.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import ColumnElement, Select
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, ColumnClause, Label
from sqlalchemy.sql.selectable import ScalarSelect

from ..storage.models import ResourceRow

RESOURCE = ResourceRow.__table__
ROW = RESOURCE.c  # the tested resource as fhir_resource's own columns
CANDIDATE = "candidate_pk"


class NeedsRow(Exception):
    """A condition or sort key reads a fhir_resource column other than the key."""


class KeyRow:
    """The tested resource known by its key alone (an index table's res_pk)."""

    def __init__(self, pk: Any) -> None:
        self.pk = pk

    def __getattr__(self, name: str) -> Any:
        raise NeedsRow(name)


def candidate_select(cond: ColumnElement[bool]) -> Select[Any] | None:
    """The subquery of a `pk IN (SELECT ... AS candidate_pk ...)` condition, else None."""
    if not (isinstance(cond, BinaryExpression) and cond.operator is operators.in_op
            and isinstance(cond.left, ColumnClause) and getattr(cond.left, "table", None) is RESOURCE
            and cond.left.name == "pk" and isinstance(cond.right, ScalarSelect)
            and isinstance(cond.right.element, Select)):
        return None
    sel = cond.right.element
    cols = sel.selected_columns
    return sel if len(cols) == 1 and isinstance(cols[0], Label) and cols[0].name == CANDIDATE else None


def clause(expr: Any) -> ColumnElement[Any]:
    """The SQL expression behind `expr` (an ORM attribute such as ResourceRow.pk is not one itself)."""
    return cast(ColumnElement[Any], expr.__clause_element__() if hasattr(expr, "__clause_element__") else expr)


def row_columns(expr: Any) -> set[str]:
    """The fhir_resource columns of the tested resource that an expression reads."""
    return {el.name for el in visitors.iterate(clause(expr))
            if isinstance(el, ColumnClause) and getattr(el, "table", None) is RESOURCE}


def on_row(expr: Any, columns: Mapping[str, Any]) -> ColumnElement[Any]:
    """The expression with the tested resource's columns replaced (e.g. its pk by an index table's res_pk)."""
    def swap(element: Any, **_kw: Any) -> Any:
        if isinstance(element, ColumnClause) and getattr(element, "table", None) is RESOURCE:
            return columns[element.name]
        return None
    opts: dict[str, Any] = {}
    return visitors.replacement_traverse(clause(expr), opts, swap)
