"""`carespace db upgrade` brings a database from before schema revisions up to the models' indexes, on each
backend, through the baseline revision (carespace/migrations/versions/0001_baseline.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from sqlalchemy import event, inspect

from carespace import db, migrations

COVERING = "ix_fhir_idx_token_res_code"
RETIRED = "ix_fhir_idx_token_res"


def _indexes(engine: Any, table: str) -> set[str]:
    return {ix["name"] for ix in inspect(engine).get_indexes(table)}


def _older_release(engine: Any, *sql: str) -> None:
    """Make the database look like one from an earlier release: no revision table, the given DDL applied."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
        for statement in sql:
            conn.exec_driver_sql(statement)


def test_upgrade_creates_a_declared_index_an_older_database_lacks(app: Any) -> None:
    engine = app.extensions["carespace.engine"]
    _older_release(engine, f"DROP INDEX {COVERING}")
    assert COVERING not in _indexes(engine, "fhir_idx_token")
    assert migrations.current(engine) == (None, True)
    assert db.upgrade(engine) == []  # no table was missing
    assert COVERING in _indexes(engine, "fhir_idx_token")
    assert migrations.current(engine) == (migrations.head(), False)
    assert db.upgrade(engine) == []  # idempotent


def test_the_missing_index_is_built_concurrently_outside_a_transaction_on_postgres(app: Any, backend: str) -> None:
    """PostgreSQL builds it with CREATE INDEX CONCURRENTLY in autocommit, so writers are not blocked meanwhile."""
    engine = app.extensions["carespace.engine"]
    _older_release(engine, f"DROP INDEX {COVERING}")
    seen: list[tuple[str, bool]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "CREATE INDEX" in statement.upper():  # psycopg's autocommit: no transaction block around it
            seen.append((" ".join(statement.split()), getattr(conn.connection.dbapi_connection, "autocommit", False)))

    db.upgrade(engine)
    event.remove(engine, "before_cursor_execute", _record)
    if backend == "postgres":
        assert seen == [(f"CREATE INDEX CONCURRENTLY {COVERING} ON fhir_idx_token (res_pk, param, code, system)", True)]
    else:
        assert [s for s, _ in seen] == [f"CREATE INDEX {COVERING} ON fhir_idx_token (res_pk, param, code, system)"]


def test_carespace_db_upgrade_command_restores_the_index(app: Any) -> None:
    engine = app.extensions["carespace.engine"]
    _older_release(engine, f"DROP INDEX {COVERING}")
    env = {**os.environ, "CARESPACE_DATABASE_URL": app.config["DATABASE_URL"],
           "CARESPACE_INSTANCE_DIR": app.config["INSTANCE_DIR"]}
    done = subprocess.run([sys.executable, "-m", "carespace", "db", "upgrade"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "upgraded a database from before schema revisions to revision" in done.stdout
    assert COVERING in _indexes(engine, "fhir_idx_token")


def test_upgrade_drops_the_retired_token_index(app: Any) -> None:
    engine = app.extensions["carespace.engine"]
    _older_release(engine, f"DROP INDEX {COVERING}",  # what a database made before the covering index has
                   f"CREATE INDEX {RETIRED} ON fhir_idx_token (res_pk, param)")
    db.upgrade(engine)
    found = _indexes(engine, "fhir_idx_token")
    assert COVERING in found and RETIRED not in found


def test_upgrade_creates_a_table_an_older_database_lacks_and_keeps_the_others(app: Any) -> None:
    engine = app.extensions["carespace.engine"]
    _older_release(engine, "DROP TABLE oauth_encounter_context")
    assert db.upgrade(engine) == ["oauth_encounter_context"]


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
    _older_release(engine, f"DROP INDEX {COVERING}")
    without = [i for _, i, _ in svc.search(ctx, "Observation", query)[1].matches]
    db.upgrade(engine)
    after = [i for _, i, _ in svc.search(ctx, "Observation", query)[1].matches]
    assert before == without == after == ["o0", "o2"]
