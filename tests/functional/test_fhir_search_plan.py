"""Searches planned on the index tables (fhir_resource joined for a page's rows only) answer exactly as the
single query over fhir_resource did: same rows, same order, same paging cursors and totals, in every context."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from fhir_server.access.context import AccessContext
from fhir_server.search.parse import parse
from fhir_server.search.plan import KeyPlan, sort_key
from fhir_server.search.rows import RESOURCE, ROW

SYSTEM = AccessContext.system("tests")
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"


def _obs(n: int, pid: str, cats: list[str], code: str, day: int | None, value: float | None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation", "id": f"o{n}", "status": "final", "subject": {"reference": f"Patient/{pid}"},
        "category": [{"coding": [{"system": CAT, "code": c}]} for c in cats],
        "code": {"coding": [{"system": LOINC, "code": code}, *([{"system": "urn:local", "code": code}]
                                                                 if n % 7 == 0 else [])]}}
    if day is not None:
        res["effectiveDateTime"] = f"20{18 + day % 5}-0{1 + day % 9}-1{day % 10}"  # ties on purpose
    if value is not None:
        res["valueQuantity"] = {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                "code": "mg/dL"}
    return res


@pytest.fixture(scope="module")
def store(module_app: Any) -> Iterator[Any]:
    """Two patients' Observations: several categories, codes in two systems, equal and missing dates and values,
    some updated and some deleted."""
    svc = module_app.extensions["fhir_service"]
    for pid, name in (("p1", "Alpha"), ("p2", "Beta")):
        svc.update(SYSTEM, "Patient", pid, {"resourceType": "Patient", "id": pid, "name": [{"family": name}]})
    codes = ["2339-0", "8867-4", "2339-0", "718-7"]
    for n in range(48):
        cats = [["laboratory"], ["vital-signs"], ["laboratory", "vital-signs"], ["laboratory", "laboratory"]][n % 4]
        day = None if n % 11 == 5 else n % 6
        value = None if n % 9 == 4 else float(n % 5)
        svc.update(SYSTEM, "Observation", f"o{n}", _obs(n, "p1" if n % 3 else "p2", cats, codes[n % 4], day, value))
    for n in (3, 10, 17):
        svc.delete(SYSTEM, "Observation", f"o{n}")
    for n in (4, 12):
        svc.update(SYSTEM, "Observation", f"o{n}", _obs(n, "p1", ["laboratory"], "2339-0", 9, 2.0))
    yield svc


QUERIES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Observation", [("patient", "p1"), ("category", "laboratory"), ("_sort", "-date")]),
    ("Observation", [("patient", "p1"), ("code", f"{LOINC}|2339-0"), ("_sort", "-date")]),
    ("Observation", [("code", "2339-0"), ("_sort", "date")]),  # driver rows repeat (two systems)
    ("Observation", [("category", "laboratory"), ("_sort", "-date,code")]),
    ("Observation", [("patient", "p1"), ("_sort", "value-quantity")]),
    ("Observation", [("patient", "p1,Patient/p2"), ("_sort", "-value-quantity,-date")]),
    ("Observation", [("patient", "p1"), ("category:not", "laboratory"), ("_sort", "date")]),
    ("Observation", [("patient", "p1"), ("value-quantity", "gt1"), ("date:missing", "false")]),
    ("Observation", [("subject", "Patient/p2"), ("date", "ge2020-01-01"), ("_sort", "-date")]),
    ("Observation", [("patient", "p1"), ("_sort", "-_lastUpdated")]),  # sort needs fhir_resource
    ("Observation", [("patient", "p1"), ("_id", "o1,o2,o4,o5,o7,o8,o12")]),
    ("Observation", [("patient", "p1"), ("_lastUpdated", "gt2000-01-01"), ("_sort", "_id")]),
    ("Observation", [("date", "lt2020"), ("_sort", "-date")]),  # no driving criterion
    ("Observation", [("subject:Patient.name", "alpha"), ("_sort", "code")]),  # chain
    ("Observation", [("_sort", "-date")]),
    ("Patient", [("_has:Observation:patient:code", "718-7")]),
    ("Patient", [("_sort", "-name")]),
]

CONTEXTS = {
    "system": SYSTEM,
    "patient p1": AccessContext.from_scopes(["patient/*.rs"], patient_id="p1", user="Patient/p1"),
    "patient p1, labs only": AccessContext.from_scopes(
        [f"patient/Observation.rs?category={CAT}|laboratory", "patient/Patient.rs"], patient_id="p1",
        user="Patient/p1"),
}


def _reference(svc: Any, ctx: AccessContext, rtype: str, items: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    """Every match as (id, *sort values, pk) from one query over fhir_resource: the SQL as it was before."""
    req = parse(rtype, items)
    grants = ctx.require(rtype, "search")
    extra = []
    limit = ctx.compartment_limit(rtype, grants)
    if limit is not None:
        extra.append(svc.builder.compartment(limit, rtype))
    filters = ctx.filters(grants)
    if filters:
        extra.append(svc.builder.scope_filters(rtype, filters))
    conds, driven = svc.builder.conditions(rtype, req.criteria)
    where = [ROW.deleted.is_(False), *extra, *(conds if driven or limit is not None else [ROW.res_type == rtype, *conds])]
    keys = [(sort_key(rtype, p, d), d) for p, d in req.sort]
    q = (select(ROW.fhir_id, *[e for e, _ in keys], ROW.pk).where(*where)
         .order_by(*[e.desc() if d else e.asc() for e, d in keys], ROW.pk.asc()))
    with svc.unit() as repo:
        return [tuple(r) for r in repo.s.execute(q)]


def _walk(svc: Any, ctx: AccessContext, rtype: str, items: list[tuple[str, str]], count: int) -> list[Any]:
    """Every page following next links, then back along previous links: (ids, next cursor, prev cursor)."""
    pages = []
    cursor: str | None = None
    while True:
        _, page = svc.search(ctx, rtype, items + [("_count", str(count))] + ([("_cursor", cursor)] if cursor else []))
        pages.append(([i for _, i, _ in page.matches], page.next_cursor, page.prev_cursor))
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    back = []
    cursor = pages[-1][2]
    while cursor:
        _, page = svc.search(ctx, rtype, items + [("_count", str(count)), ("_cursor", cursor)])
        back.append([i for _, i, _ in page.matches])
        cursor = page.prev_cursor
    return [pages, back]


@pytest.mark.parametrize("label", list(CONTEXTS))
@pytest.mark.parametrize("rtype,items", QUERIES, ids=[f"{t}?{'&'.join(k + '=' + v for k, v in q)}" for t, q in QUERIES])
def test_pages_cursors_and_totals_match_the_single_query(store: Any, label: str, rtype: str,
                                                         items: list[tuple[str, str]]) -> None:
    svc, ctx = store, CONTEXTS[label]
    expected = _reference(svc, ctx, rtype, items)
    ids = [r[0] for r in expected]
    _, first = svc.search(ctx, rtype, items + [("_total", "accurate"), ("_count", "4")])
    assert first.total == len(expected)
    assert svc.search(ctx, rtype, items + [("_summary", "count")])[1].total == len(expected)
    pages, back = _walk(svc, ctx, rtype, items, 4)
    assert [i for p, _, _ in pages for i in p] == ids
    for n, (_, nxt, prev) in enumerate(pages):
        if nxt:  # the cursor holds the last row's sort values and key, as the single query computed them
            assert svc.codec.decode(nxt)["k"] == list(expected[4 * n + 3][1:])
        if prev:
            assert svc.codec.decode(prev)["k"] == list(expected[4 * n][1:])
    assert back == [p for p, _, _ in reversed(pages[:-1])]


def test_portal_searches_read_fhir_resource_for_the_page_only(store: Any) -> None:
    """The labs list and a test's history find and order their keys on the index tables alone."""
    for items in ([("patient", "p1"), ("category", "laboratory"), ("_sort", "-date")],
                  [("patient", "p1"), ("code", f"{LOINC}|2339-0"), ("_sort", "-date")]):
        plan = KeyPlan.build(store.builder, parse("Observation", items), [], None, False)
        assert plan.source is not RESOURCE
        sql = str(plan.page(21))
        keys = sql[sql.index("FROM ("):sql.index(") AS k JOIN fhir_resource ON fhir_resource.pk = k.pk")]
        assert "fhir_resource" not in keys and "DISTINCT" in keys


def test_searches_needing_other_columns_keep_fhir_resource_as_source(store: Any) -> None:
    for items in ([("patient", "p1"), ("_sort", "_lastUpdated")], [("patient", "p1"), ("_id", "o1")],
                  [("date", "lt2020")]):
        plan = KeyPlan.build(store.builder, parse("Observation", items), [], None, False)
        assert plan.source is RESOURCE


def test_across_types_and_empty_pages(store: Any) -> None:
    _, page = store.search(SYSTEM, None, [("_id", "o1,p1,o3"), ("_type", "Observation,Patient")])
    assert sorted(i for _, i, _ in page.matches) == ["o1", "p1"]
    _, page = store.search(SYSTEM, "Observation", [("patient", "p1"), ("_count", "0"), ("_total", "accurate")])
    assert page.matches == [] and page.total == len(_reference(store, SYSTEM, "Observation", [("patient", "p1")]))
    _, page = store.search(SYSTEM, "Observation", [("patient", "nobody"), ("_sort", "-date")])
    assert page.matches == [] and page.total == 0 and page.next_cursor is None
