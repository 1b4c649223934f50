"""Schema revisions (Alembic), shipped inside the package and configured here: no alembic.ini at run time.

`carespace db upgrade` (upgrade() below) brings any CareSpace database to the newest revision:

- an empty database gets the models' tables at once (create_all) and is stamped with the head,
  the same schema as running every revision (tests/functional/test_migrations.py compares the
  models with a database the revisions built, on SQLite and PostgreSQL);
- a database of a release before revisions (commit e6166e3 and earlier: CareSpace tables, no
  alembic_version) starts at the baseline 0001, which adopts it in place: it creates only the
  tables and indexes that are missing, drops the retired ones, and keeps every row;
- any other database runs the revisions after its own, each in its own transaction.

Writing a revision: change the models, then `python scripts/new_migration.py "what changes"`
autogenerates versions/NNNN_*.py from the difference; read it, keep it to one change, and commit it
with the models (the test above fails until models and revisions agree).

Indexes on large tables (fhir_resource, fhir_resource_version, the fhir_idx_* tables, mail_outbox,
...) are built with create_index() and dropped with drop_index() from this module: on PostgreSQL
they run CREATE / DROP INDEX CONCURRENTLY in an autocommit block, so writers are never blocked while
the index builds; elsewhere they are plain DDL. The autocommit block commits what the revision did
before it, so a revision that builds an index does nothing else that must share its transaction.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError as AlembicCommandError
from sqlalchemy import Connection, Engine, inspect

from carespace.schema import metadatas

FOLDER = Path(__file__).resolve().parent
LOCK_KEY = 7_420_117  # pg_advisory_lock: one upgrader at a time when several processes start together


class UnknownRevision(Exception):
    """The database is at a revision this code does not have (a newer CareSpace migrated it)."""


@dataclass
class Outcome:
    """What an upgrade found and did, for `carespace db upgrade` to say."""

    before: str | None
    after: str | None
    legacy: bool = False  # a database from before revisions, adopted by the baseline
    created: list[str] = field(default_factory=list)  # tables created


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code from the package's own folder."""
    cfg = Config()
    cfg.set_main_option("script_location", str(FOLDER))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    return cfg


@cache
def script() -> ScriptDirectory:
    """The revisions in versions/ (read once per process: they change only with the installed code)."""
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision the installed code knows."""
    found = script().get_current_head()
    assert found is not None, "carespace/migrations/versions holds no revision"
    return found


def known(rev: str) -> bool:
    """Whether the installed code has revision `rev`."""
    try:
        return script().get_revision(rev) is not None
    except (RevisionError, AlembicCommandError):  # an id no revision file has
        return False


def _product_tables() -> set[str]:
    return {name for md in metadatas() for name in md.tables}


def current(engine: Engine) -> tuple[str | None, bool]:
    """(the database's revision or None, whether it is a CareSpace database from before revisions)."""
    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
        legacy = rev is None and bool(set(inspect(conn).get_table_names()) & _product_tables())
    return rev, legacy


@contextmanager
def _exclusive(conn: Connection) -> Iterator[None]:
    """Serialize concurrent upgraders (PostgreSQL: a session advisory lock; SQLite: BEGIN IMMEDIATE)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql(f"SELECT pg_advisory_lock({LOCK_KEY})")
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({LOCK_KEY})")
        conn.commit()


def upgrade(engine: Engine) -> Outcome:
    """Bring the schema to the head revision, keeping every row; idempotent."""
    target = head()
    with engine.connect() as conn, _exclusive(conn.execution_options(write=True)):
        before_tables = set(inspect(conn).get_table_names())
        rev = MigrationContext.configure(conn).get_current_revision()
        conn.commit()
        legacy = rev is None and bool(before_tables & _product_tables())
        if rev is not None and not known(rev):
            raise UnknownRevision(f"the database is at schema revision {rev}, which this CareSpace (head {target}) "
                                  "does not have: a newer release migrated it; install that release or a later one")
        if rev != target:
            if rev is None and not legacy:  # empty: the models' schema at once, equal to every revision's
                with conn.begin():
                    for md in metadatas():
                        md.create_all(conn)
                    MigrationContext.configure(conn).stamp(script(), target)
            else:
                command.upgrade(config(conn), target)
        after_tables = set(inspect(conn).get_table_names())
        conn.commit()
    return Outcome(rev, target, legacy, sorted(after_tables - before_tables - {"alembic_version"}))


# ---- helpers for the revisions in versions/ ----

def _postgres() -> bool:
    from alembic import op
    return op.get_context().dialect.name == "postgresql"


def create_index(name: str, table: str, columns: Sequence[str], *, unique: bool = False) -> None:
    """Create an index without blocking writers: CONCURRENTLY outside a transaction on PostgreSQL.

    A concurrent build that was interrupted leaves an INVALID index behind; it is dropped and built again.
    """
    from alembic import op
    if not _postgres():
        op.create_index(name, table, list(columns), unique=unique)
        return
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        valid = bind.exec_driver_sql(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %(name)s AND pg_table_is_visible(c.oid)", {"name": name}).scalar()
        if valid is False:
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
        if valid is not True:
            op.create_index(name, table, list(columns), unique=unique, postgresql_concurrently=True)


def drop_index(name: str, table: str) -> None:
    """Drop an index without blocking writers: CONCURRENTLY outside a transaction on PostgreSQL."""
    from alembic import op
    if not _postgres():
        op.drop_index(name, table_name=table)
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
