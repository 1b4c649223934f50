"""How many SQL statements a page and an operation cost, counted with SQLAlchemy's event hooks.

Statements run through SQLAlchemy (Core and ORM) are counted by `before_cursor_execute`; the prebuilt
SELECTs that run on raw DBAPI cursors (HotSelect) are counted by wrapping their one entry point. The
bounds are the counts measured when the repeats were removed (docs/architecture.md has both figures).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from fhir_server import HotSelect
from tests.support import access_world as aw


@contextmanager
def counted(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    statements: list[str] = []
    engine = app.extensions["carespace.engine"]
    me = threading.get_ident()  # the request's thread: the audit writer's statements are not the page's

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.get_ident() != me:
            return
        statements.append(statement.split()[0].upper() + " " + " ".join(statement.split())[:120])

    real_first = HotSelect.first

    def first(self: HotSelect, eng: Any, params: dict[str, Any]) -> Any:
        if threading.get_ident() == me:
            statements.append("SELECT (prebuilt) " + str(self.stmt).split("FROM", 1)[-1].split()[0])
        return real_first(self, eng, params)

    monkeypatch.setattr(HotSelect, "first", first)
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


def _reads(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("SELECT")]


def test_health_page_statements(app: Any, smart: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fhir = app.extensions["fhir_service"]
    world = aw.build(fhir)
    smart.login(smart.user(world.alex))
    assert smart.client.get("/health").status_code == 200  # warm: first-use work is not the page's
    with counted(app, monkeypatch) as statements:
        assert smart.client.get("/health").status_code == 200
    reads = _reads(statements)
    assert len(reads) == len(set(reads)), f"a statement repeats: {reads}"
    assert len(reads) <= 5, reads  # was 9 (4 repeats) before the per-request patient choices


def test_everything_with_a_patient_token_checks_visibility_per_type_not_per_entry(
        app: Any, smart: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fhir = app.extensions["fhir_service"]
    world = aw.build(fhir)
    for n in range(40):
        aw.put(fhir, aw.observation(f"alex-extra-{n}", world.alex, value=float(n)))
    token = smart.launch(smart.user(world.alex), "launch/patient openid fhirUser patient/*.rs")["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert smart.client.get(f"/fhir/Patient/{world.alex}/$everything", headers=headers).status_code == 200
    app.extensions["audit_log"].flush()  # the warm-up's access events are not this request's
    with counted(app, monkeypatch) as statements:
        resp = smart.client.get(f"/fhir/Patient/{world.alex}/$everything", headers=headers)
    assert resp.status_code == 200 and len(resp.get_json()["entry"]) > 45
    assert len(statements) <= 12, statements  # independent of the number of entries (was 20 + 1 per entry)
