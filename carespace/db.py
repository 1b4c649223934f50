"""Database engine and schema management for every package's tables (revisions: carespace.migrations)."""
from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from .schema import metadatas  # noqa: F401 - carespace.db.metadatas is how tests and tools reach the tables


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


WRITER_WAIT_S = 10.0  # as busy_timeout


class WriterGate:
    """Writers of one SQLite database take turns here, in this process and in order of arrival, before
    BEGIN IMMEDIATE.

    SQLite's busy handler polls with sleeps growing to 100 ms, so a writer waiting on it can wait behind a stream
    of other writers (the AuditEvent writer commits many times a second) far longer than the work takes. Writers
    of this process instead queue here and are handed the turn as soon as the previous writer commits or rolls
    back; BEGIN IMMEDIATE still guards against other processes. A thread that already holds the turn and asks
    again (a second writer while its first is open) would wait for itself: that is refused at once.
    """

    _KEY = "carespace.writer_gate"

    def __init__(self, timeout: float = WRITER_WAIT_S) -> None:
        self.timeout = timeout
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._owner: int | None = None
        self._busy = False

    def enter(self, info: dict[str, Any]) -> None:
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError("this thread already has a write transaction open on another connection; "
                               "a second one would wait for the first forever")
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            if not self._cond.wait_for(lambda: not self._busy and self._waiting[0] is ticket, self.timeout):
                self._waiting.remove(ticket)
                self._cond.notify_all()
                raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError(
                    f"database is locked (no turn to write within {self.timeout:g} s)"))
            self._waiting.popleft()
            self._busy, self._owner = True, me
        info[self._KEY] = True

    def leave(self, info: dict[str, Any]) -> None:
        if info.pop(self._KEY, False):
            with self._cond:
                self._busy, self._owner = False, None
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        return len(self._waiting)


def make_engine(url: str, connect_timeout: int | None = None) -> Engine:
    """An engine with SQLite tuned for WAL and concurrent readers, or PostgreSQL pooled.

    `connect_timeout` (PostgreSQL, seconds): give up connecting that soon (a replica that is down).
    """
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)

        gate = WriterGate()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:  # writers take the lock up front: no failed upgrades mid-transaction
            if not conn.get_execution_options().get("write"):
                conn.exec_driver_sql("BEGIN")
                return
            gate.enter(conn.info)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                gate.leave(conn.info)
                raise

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _end(conn: Any) -> None:
            gate.leave(conn.info)

        @event.listens_for(engine, "checkin")
        def _returned(_dbapi_conn: Any, record: Any) -> None:  # a connection dropped mid-transaction
            gate.leave(record.info)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_tx(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800,
                           connect_args={"connect_timeout": connect_timeout} if connect_timeout else {})
    _ping_when_idle(engine)
    return engine


IDLE_PING_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """pool_pre_ping, but only for connections idle in the pool for a while: a connection checked in
    moments ago is alive, and pinging it costs a round trip on every request (a read by id is one).
    A failed ping makes the pool discard the connection and take another (DisconnectionError)."""

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("checked_in")
        if last is None or time.monotonic() - last < IDLE_PING_SECONDS:
            return  # just connected, or used moments ago
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure means the connection is gone
            raise DisconnectionError(str(exc)) from exc
        if not alive:
            raise DisconnectionError("ping failed")


def make_sessions(engine: Engine, write: bool = False) -> sessionmaker[Session]:
    """Sessions on `engine`; `write=True`: every transaction of these sessions is a writer's (below)."""
    return sessionmaker(engine.execution_options(write=True) if write else engine, expire_on_commit=False)


# ---- writers and unavailability -------------------------------------------------------------------------------
# A unit that reads and then writes must take SQLite's write lock before its first read: a deferred transaction
# that has read cannot become a writer once another connection committed after its read began (SQLite answers
# SQLITE_BUSY at once, busy_timeout does not apply). Every engine here honours the execution option
# `write=True` by beginning with BEGIN IMMEDIATE (see make_engine), which waits for the lock up to busy_timeout
# instead. PostgreSQL ignores the option. The ways to ask for it:
#   - FhirService.unit(write=True) (and the accounts service's units on top of it);
#   - sessions from make_sessions(engine, write=True) / app.extensions["carespace.write_sessions"], for
#     units that commit several times (the OAuth views' request session) or code outside fhir_server;
#   - write_unit(sessions) below for one read-then-write unit on plain sessions.
# A writer holds the lock until it commits: no network calls, password hashing or page rendering inside one.

RETRY_AFTER_S = 2  # what a 503 asks the client to wait


@contextmanager
def write_unit(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One read-then-write unit holding the write lock from its first statement: commit on success."""
    with sessions() as session:
        session.connection(execution_options={"write": True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy", "unable to open database",
                     "disk i/o error")


def unavailable(exc: BaseException | None) -> bool:
    """True when `exc` says the database is busy or unreachable for now (answer 503 + Retry-After), not that a
    statement is wrong: SQLite's lock timeouts, PostgreSQL's lost connections, deadlocks and serialization
    failures, a full connection pool."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        if isinstance(orig, sqlite3.OperationalError):
            return str(orig).lower().startswith(_SQLITE_TRANSIENT)
        module = type(orig).__module__ or ""
        if module.startswith("psycopg"):
            return isinstance(exc, OperationalError)  # connection failures, deadlocks, serialization, shutdown
    return False


def upgrade(engine: Engine) -> list[str]:
    """Migrate the schema to the newest revision (idempotent, every row kept); returns the tables created."""
    from . import migrations
    return migrations.upgrade(engine).created


def is_ready(engine: Engine) -> bool:
    return "fhir_resource" in inspect(engine).get_table_names()


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
