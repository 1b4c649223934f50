"""Alembic revisions on SQLite and PostgreSQL: they build exactly the models' schema, and a database made by
the last release before revisions (commit e6166e3, tests/data/e6166e3) is upgraded in place with every row."""
from __future__ import annotations

import lzma
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect, select

from carespace import close_app, create_app, db, migrations
from tests.conftest import _new_db_url
from tests.support.accounts import login
from tests.support.data import DATA
from tests.support.postgres import Cluster, _bin

LEGACY = DATA / "e6166e3"
# Tables the e6166e3 fixture fills (make_fixture.py): the demo, a SMART app's grant, an invite, a Send Record.
FILLED = {"fhir_resource", "fhir_resource_version", "fhir_idx_token", "fhir_idx_reference", "fhir_idx_compartment",
          "auth_user", "auth_patient_access", "auth_link_token", "oauth_client", "oauth_code", "oauth_token",
          "oauth_app_grant", "bundles_sent_record", "bundles_rate", "mail_outbox"}


def diff(engine: Any, metadata: Any = None) -> list[Any]:
    """Alembic autogenerate's differences between the database and the models (empty: they agree)."""
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                     metadata if metadata is not None else db.metadatas()))


def by_revisions(engine: Any) -> None:
    """Run every revision from an empty database (not the create_all shortcut upgrade() takes)."""
    with engine.connect() as conn:
        command.upgrade(migrations.config(conn), "head")


def rows(engine: Any, shape: dict[str, list[str]] | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but alembic_version, in a stable order; with `shape`, only those tables and
    columns (what was there before an upgrade, which may add tables and columns)."""
    out = {}
    with engine.connect() as conn:
        for name in sorted(shape or set(inspect(conn).get_table_names()) - {"alembic_version"}):
            table = Table(name, MetaData(), autoload_with=conn)
            cols = [table.c[c] for c in shape[name]] if shape else list(table.c)
            out[name] = [tuple(r) for r in conn.execute(select(*cols).order_by(*cols))]
    return out


def shape_of(engine: Any) -> dict[str, list[str]]:
    """The tables and their columns, alembic_version aside."""
    with engine.connect() as conn:
        found = inspect(conn)
        return {t: [c["name"] for c in found.get_columns(t)] for t in found.get_table_names() if t != "alembic_version"}


def load_legacy(backend: str, url: str, cluster: Cluster | None, tmp_path: Path) -> None:
    """Restore the e6166e3 dump of this backend into the empty database at `url`."""
    dump = lzma.decompress((LEGACY / f"{backend}.sql.xz").read_bytes()).decode()
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.executescript(dump)
        conn.close()
        return
    assert cluster is not None
    script = tmp_path / "legacy.sql"  # psql of an older minor release does not know pg_dump's \restrict
    script.write_text("".join(line for line in dump.splitlines(keepends=True)
                              if not line.startswith(("\\restrict", "\\unrestrict"))))
    subprocess.run([_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(cluster.port),
                    "-U", "postgres", "-d", url.rsplit("/", 1)[1], "-f", str(script)],
                   check=True, capture_output=True, text=True, timeout=120)


def cli(url: str, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARESPACE_DATABASE_URL": url, "CARESPACE_INSTANCE_DIR": str(folder)}
    return subprocess.run([sys.executable, "-m", "carespace", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def empty(backend: str, pg_cluster: Cluster | None, tmp_path: Path) -> Any:
    engine = db.make_engine(_new_db_url(backend, pg_cluster, tmp_path))
    yield engine
    engine.dispose()


def test_the_revisions_build_exactly_the_models_schema(empty: Any) -> None:
    """Fails as soon as a model changes without a revision (or a revision without the model)."""
    by_revisions(empty)
    assert diff(empty) == []
    assert migrations.current(empty) == (migrations.head(), False)


def test_the_comparison_sees_a_model_the_revisions_lack(empty: Any) -> None:
    """The check above is real: one table more in the models is one difference."""
    by_revisions(empty)
    extra = MetaData()
    Table("new_feature", extra, Column("id", Integer, primary_key=True))
    found = diff(empty, [*db.metadatas(), extra])
    assert [d[0] for d in found] == ["add_table"] and found[0][1].name == "new_feature"


def test_an_empty_database_takes_the_models_at_once_and_is_stamped_head(empty: Any) -> None:
    assert db.upgrade(empty) == sorted(t for md in db.metadatas() for t in md.tables)
    assert diff(empty) == [] and migrations.current(empty) == (migrations.head(), False)
    assert db.upgrade(empty) == []  # idempotent


def test_an_e6166e3_database_is_upgraded_in_place_with_every_row(backend: str, pg_cluster: Cluster | None,
                                                                  tmp_path: Path) -> None:
    url = _new_db_url(backend, pg_cluster, tmp_path)
    load_legacy(backend, url, pg_cluster, tmp_path)
    engine = db.make_engine(url)
    before, shape = rows(engine), shape_of(engine)
    assert {t for t, r in before.items() if r} >= FILLED and sum(map(len, before.values())) > 1500
    assert migrations.current(engine) == (None, True)
    assert "before schema revisions" in cli(url, tmp_path / "instance", "db", "current").stdout

    done = cli(url, tmp_path / "instance", "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"upgraded a database from before schema revisions to revision {migrations.head()}")
    assert rows(engine, shape) == before
    assert diff(engine) == []
    current = cli(url, tmp_path / "instance", "db", "current")
    assert current.returncode == 0 and current.stdout == f"{migrations.head()} (head)\n", current.stderr
    again = cli(url, tmp_path / "instance", "db", "upgrade")
    assert again.stdout == f"database is up to date (revision {migrations.head()})\n", again.stderr
    engine.dispose()

    app = create_app({"INSTANCE_DIR": str(tmp_path / "instance"), "DATABASE_URL": url, "BASE_URL": "http://localhost",
                      "TESTING": True, "SECRET_KEY": "legacy", "MAIL_WORKER": False})
    try:  # the upgraded database serves its people and records as before
        client = app.test_client()
        assert login(client, "alex.morgan@example.com", "1968-03-21", "CareSpace-Demo1!").status_code == 302
        health = client.get("/health")
        assert health.status_code == 200 and "Alex Morgan" in health.get_data(as_text=True)
        assert "dr.outside@example.org" in client.get("/health/sent-records").get_data(as_text=True)
    finally:
        close_app(app)


def test_concurrent_upgrades_of_one_empty_database_both_succeed(empty: Any) -> None:
    """Several server processes starting at once each run `db upgrade`: one builds, the others wait and find it done."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            db.upgrade(empty)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert migrations.current(empty) == (migrations.head(), False) and diff(empty) == []


def test_db_current_names_an_empty_database_and_a_bad_url_in_one_line(tmp_path: Path) -> None:
    empty = cli(f"sqlite:///{tmp_path / 'new.db'}", tmp_path / "i", "db", "current")
    assert empty.returncode == 0 and empty.stdout.startswith("none: the database is empty"), empty.stderr
    bad = cli("postgresql+psycopg://nobody@127.0.0.1:1/none", tmp_path / "i", "db", "current")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("carespace db current: error: cannot reach or migrate the database: ")
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_a_database_from_a_newer_release_is_refused_in_one_line(empty: Any, tmp_path: Path) -> None:
    """Older code never touches a schema it does not know: `db upgrade` says why and exits 1."""
    db.upgrade(empty)
    with empty.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    url = empty.url.render_as_string(hide_password=False)
    done = cli(url, tmp_path / "instance", "db", "upgrade")
    assert done.returncode == 1 and done.stderr.startswith("carespace db upgrade: error: the database is at schema "
                                                           "revision 9999, which this CareSpace"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    current = cli(url, tmp_path / "instance", "db", "current")
    assert current.returncode == 0 and current.stdout.startswith("9999 (unknown to this CareSpace"), current.stderr
    demo = cli(url, tmp_path / "instance", "demo")  # every command that upgrades first says the same
    assert demo.returncode == 1 and demo.stderr.startswith("carespace demo: error: the database is at schema revision")
    with pytest.raises(migrations.UnknownRevision):
        db.upgrade(empty)
