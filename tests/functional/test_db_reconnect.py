"""A database restart or a killed connection costs one retry, never a failed read (PostgreSQL)."""
from __future__ import annotations

from typing import Any

import pytest

from fhir_server.access.context import AccessContext

SYS = AccessContext.system("t")


def test_reads_survive_killed_pooled_connections(app: Any) -> None:
    engine = app.extensions["carespace.engine"]
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server connections to lose")
    fhir = app.extensions["fhir_service"]
    pid = fhir.create(SYS, "Patient", {"resourceType": "Patient", "name": [{"family": "Kept"}]}).stored.id
    assert fhir.read(SYS, "Patient", pid).id == pid  # the pool now holds a connection
    import psycopg
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    assert killed is not None and killed[0] >= 1
    assert fhir.read(SYS, "Patient", pid).id == pid
