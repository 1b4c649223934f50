"""`carespace db upgrade` brings an existing database's indexes up to the models, on each backend."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from sqlalchemy import inspect

from carespace import db

COVERING = "ix_fhir_idx_token_res_code"
RETIRED = "ix_fhir_idx_token_res"


def _indexes(engine: Any, table: str) -> set[str]:
    return {ix["name"] for ix in inspect(engine).get_indexes(table)}


def test_upgrade_creates_a_declared_index_an_existing_database_lacks(app: Any) -> None:
    engine = app.extensions["carespace.engine"]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP INDEX {COVERING}")
    assert COVERING not in _indexes(engine, "fhir_idx_token")
    assert db.upgrade(engine) == []  # no table was missing
    assert COVERING in _indexes(engine, "fhir_idx_token")
    assert db.create_missing_indexes(engine) == []  # idempotent


def test_carespace_db_upgrade_command_restores_the_index(app: Any) -> None:
    engine = app.extensions["carespace.engine"]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP INDEX {COVERING}")
    env = {**os.environ, "CARESPACE_DATABASE_URL": app.config["DATABASE_URL"],
           "CARESPACE_INSTANCE_DIR": app.config["INSTANCE_DIR"]}
    done = subprocess.run([sys.executable, "-m", "carespace", "db", "upgrade"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "database is up to date" in done.stdout
    assert COVERING in _indexes(engine, "fhir_idx_token")


def test_upgrade_drops_the_retired_token_index(app: Any) -> None:
    engine = app.extensions["carespace.engine"]
    with engine.begin() as conn:  # what a database made before the covering index has
        conn.exec_driver_sql(f"DROP INDEX {COVERING}")
        conn.exec_driver_sql(f"CREATE INDEX {RETIRED} ON fhir_idx_token (res_pk, param)")
    db.upgrade(engine)
    found = _indexes(engine, "fhir_idx_token")
    assert COVERING in found and RETIRED not in found


def test_upgrade_leaves_every_declared_index_in_place(app: Any) -> None:
    engine = app.extensions["carespace.engine"]
    db.upgrade(engine)
    for md in db.metadatas():
        for table in md.sorted_tables:
            assert {ix.name for ix in table.indexes} <= _indexes(engine, table.name), table.name


def test_search_answers_the_same_after_the_index_is_recreated(app: Any) -> None:
    """The new index is only an access path: a token search finds the same resources with or without it."""
    svc = app.extensions["fhir_service"]
    from fhir_server.access.context import AccessContext
    ctx = AccessContext.system("tests")
    svc.update(ctx, "Patient", "p1", {"resourceType": "Patient", "id": "p1"})
    for n, cat in enumerate(["laboratory", "vital-signs", "laboratory"]):
        svc.update(ctx, "Observation", f"o{n}", {
            "resourceType": "Observation", "id": f"o{n}", "status": "final", "subject": {"reference": "Patient/p1"},
            "category": [{"coding": [{"code": cat}]}], "code": {"text": "x"}})
    query = [("patient", "p1"), ("category", "laboratory")]
    before = [i for _, i, _ in svc.search(ctx, "Observation", query)[1].matches]
    engine = app.extensions["carespace.engine"]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP INDEX {COVERING}")
    without = [i for _, i, _ in svc.search(ctx, "Observation", query)[1].matches]
    db.upgrade(engine)
    after = [i for _, i, _ in svc.search(ctx, "Observation", query)[1].matches]
    assert before == without == after == ["o0", "o2"]
