"""Property: no search of Alex's, however it combines `_has`, chains and includes, sees Sam's record.

The same world is built twice, once with Sam's record and once without it (every other id the same,
including pointers from Alex's record to Sam's resources). Every generated search must answer the
same in both (status, matches, included resources, count), and never return a resource of Sam's.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carespace import close_app
from fhir_server.access.context import AccessContext
from fhir_server.errors import FhirError
from tests.conftest import BACKENDS, _new_db_url, make_app
from tests.support import access_world as aw
from tests.support.postgres import Cluster

# Clauses per searched type: plain criteria, reverse chains (also nested), chains, includes.
CLAUSES: dict[str, list[tuple[str, str]]] = {
    "Patient": [("_has:Condition:subject:code", aw.HIV), ("_has:Condition:subject:code", "195967001"),
                ("_has:Observation:subject:value-quantity", "gt100"), ("_has:Encounter:subject:status", "finished"),
                ("_has:DocumentReference:subject:location:below", "Binary/bin-s"), ("name", "Sam"), ("name", "Ada"),
                ("_revinclude", "Observation:subject"), ("_revinclude", "Condition:subject"),
                ("_has:Observation:subject:_has:Observation:derived-from:code", aw.GLUCOSE)],
    "Practitioner": [("_has:Encounter:practitioner:patient", "sam"), ("_has:Encounter:practitioner:patient", "alex"),
                     ("_has:DocumentReference:author:location:below", "Binary/bin-sam"),
                     ("_has:DocumentReference:author:location:below", "Binary/bin-"),
                     ("_has:Encounter:practitioner:subject:Patient.name", "Sam"),
                     ("_revinclude", "Encounter:practitioner"), ("_revinclude", "DocumentReference:author"),
                     ("_id", "chen")],
    "Observation": [("derived-from:Observation.value-quantity", "gt200"),
                    ("derived-from:Observation.value-quantity", "gt1"),
                    ("derived-from:Observation.subject:Patient.name", "Sam"), ("subject:Patient.name", "Sam"),
                    ("subject:Patient.birthdate", "1985-05-05"), ("code", aw.GLUCOSE), ("value-quantity", "gt100"),
                    ("patient", "sam"), ("patient", "alex"), ("_include", "Observation:subject"),
                    ("_include", "Observation:derived-from"), ("_revinclude", "Observation:derived-from"),
                    ("_include:iterate", "Observation:derived-from"), ("_has:Observation:derived-from:code", aw.GLUCOSE)],
    "Condition": [("code", aw.HIV), ("subject:Patient.name", "Sam"), ("_include", "Condition:subject"),
                  ("patient", "sam")],
    "Encounter": [("practitioner", "chen"), ("subject:Patient.name", "Sam"), ("_include", "Encounter:practitioner"),
                  ("_revinclude", "Observation:encounter"), ("_has:Condition:encounter:code", aw.HIV)],
    "DocumentReference": [("location:below", "Binary/bin-sam"), ("location:below", "Binary/bin-"),
                          ("author", "Practitioner/chen"), ("_include", "DocumentReference:author"),
                          ("subject:Patient.name", "Sam")],
    "Binary": [("_id", "bin-sam-psych"), ("_id", "bin-alex-doc")],
}
CONTEXTS = {
    "all-read": AccessContext.from_scopes(["patient/*.rs"], patient_id="alex", user="Patient/alex"),
    "labs-and-patient": AccessContext.from_scopes(
        ["patient/Patient.rs", f"patient/Observation.rs?category={aw.OBS_CAT}|laboratory"],
        patient_id="alex", user="Patient/alex"),
    "user-level": AccessContext.from_scopes(["user/*.rs"], user="Patient/alex", user_patient_ids=["alex"]),
}


def _pointers(fhir: Any) -> None:
    """What Alex's record says about Sam's, identical in both worlds (dangling where Sam is absent)."""
    aw.put(fhir, aw.observation("alex-from-sam", "alex") | {"derivedFrom": [{"reference": "Observation/sam-derived"}]})
    aw.put(fhir, aw.observation("alex-from-own", "alex") | {"derivedFrom": [{"reference": "Observation/alex-glucose"}]})
    aw.put(fhir, {"resourceType": "DocumentReference", "id": "alex-pointer", "status": "current",
                  "subject": {"reference": "Patient/alex"},
                  "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/bin-sam-psych"}}]})


@pytest.fixture(scope="module", params=BACKENDS)
def worlds(request: pytest.FixtureRequest, pg_cluster: Cluster | None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, aw.World]]:
    apps = []
    for with_sam in (True, False):
        folder: Path = tmp_path_factory.mktemp("world")
        application = make_app(_new_db_url(str(request.param), pg_cluster, folder), folder / "instance")
        world = aw.build(application.extensions["fhir_service"], with_sam=with_sam)
        _pointers(application.extensions["fhir_service"])
        apps.append((application, world))
    yield apps[0][0], apps[1][0], apps[0][1]
    for application, _ in apps:
        close_app(application)


def _answer(app: Any, ctx: AccessContext, rtype: str, items: list[tuple[str, str]]) -> tuple[Any, ...]:
    """(status, matches, included, count) of one search, or the error's status."""
    fhir = app.extensions["fhir_service"]
    try:
        _, page = fhir.search(ctx, rtype, items)
        _, counted = fhir.search(ctx, rtype, [*items, ("_summary", "count")])
    except FhirError as err:
        return (err.status,)
    return (200, sorted((t, i) for t, i, _ in page.matches), sorted((t, i) for t, i, _ in page.included),
            counted.total)


@st.composite
def searches(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]]]:
    rtype = draw(st.sampled_from(sorted(CLAUSES)))
    items = draw(st.lists(st.sampled_from(CLAUSES[rtype]), min_size=1, max_size=3, unique=True))
    return draw(st.sampled_from(sorted(CONTEXTS))), rtype, items


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(search=searches())
def test_no_search_reveals_or_depends_on_another_patients_record(worlds: tuple[Any, Any, aw.World],
                                                                 search: tuple[str, str, list[tuple[str, str]]]) -> None:
    with_sam, without_sam, world = worlds
    form, rtype, items = search
    got = _answer(with_sam, CONTEXTS[form], rtype, items)
    assert got == _answer(without_sam, CONTEXTS[form], rtype, items), (form, rtype, items)
    if got[0] == 200:
        assert not (set(got[1]) | set(got[2])) & world.sam_ids, (form, rtype, items)


def test_the_generated_searches_can_find_things(worlds: tuple[Any, Any, aw.World]) -> None:
    """The property is not vacuous: the clauses find Alex's data, and Sam's for the practice."""
    with_sam, _, _ = worlds
    practice = AccessContext.system("practice")
    assert _answer(with_sam, CONTEXTS["all-read"], "Practitioner", [("_has:Encounter:practitioner:patient", "alex")])[1] \
        == [("Practitioner", "chen")]
    assert _answer(with_sam, practice, "Patient", [("_has:Condition:subject:code", aw.HIV)])[1] == [("Patient", "sam")]
    assert _answer(with_sam, practice, "Observation", [("derived-from:Observation.value-quantity", "gt200")])[1] \
        == [("Observation", "alex-from-sam")]
    assert _answer(with_sam, CONTEXTS["all-read"], "Observation",
                   [("derived-from:Observation.value-quantity", "gt1")])[1] == [("Observation", "alex-from-own")]
