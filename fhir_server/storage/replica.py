"""Reads from a PostgreSQL streaming replica, with each reader reading its own writes.

A write by a reader (a person, an app, a process: `reader_of`) records on the primary where it ended in
the WAL, in the UNLOGGED table fhir_read_fence: `pg_current_wal_insert_lsn()` after the commit, the insert
position, which covers a commit record still in the WAL buffers (synchronous_commit=off), where
pg_current_wal_lsn() may not. A read of that reader goes to the replica only once the replica has replayed past that point
(`pg_last_wal_replay_lsn()`); until then, and whenever the replica cannot be reached or is not in
recovery, it goes to the primary. Nothing here raises: a replica that fails is a replica not used
for a while (`retry_s`).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, bindparam, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ..access.context import AccessContext
from .hot_select import HotSelect
from .models import ReadFence

log = logging.getLogger("fhir_server.replica")

_FENCE = text("INSERT INTO fhir_read_fence (reader, lsn) VALUES (:r, CAST(pg_current_wal_insert_lsn() AS TEXT)) "
              "ON CONFLICT (reader) DO UPDATE SET lsn = EXCLUDED.lsn")
_FENCE_OF = HotSelect(select(ReadFence.lsn).where(ReadFence.reader == bindparam("r")))
NO_FENCE = "0/0"  # a reader that never wrote: any replica in recovery has passed it (NULL when not in recovery)
_PASSED = text("SELECT pg_last_wal_replay_lsn() >= CAST(:f AS pg_lsn)")
# A read by id and the replay check in one round trip: one row whether or not the resource exists.
_READ_PASSED = HotSelect(text(
    "SELECT c.ok, r.text, r.version, r.last_updated, r.deleted, r.pk "
    "FROM (SELECT pg_last_wal_replay_lsn() >= CAST(:f AS pg_lsn) AS ok) AS c "
    "LEFT JOIN fhir_resource AS r ON r.res_type = :t AND r.fhir_id = :i"))


def reader_of(ctx: AccessContext) -> str:
    """Whose writes a read must see: the acting person, else the app, else the in-process caller."""
    if ctx.user:
        return ctx.user
    if ctx.client_id:
        return f"client:{ctx.client_id}"
    return f"{ctx.kind}:{ctx.label}"


class ReadReplica:
    """Routes reads to a replica (its `sessions`) when it is up and has replayed the reader's last write."""

    def __init__(self, sessions: sessionmaker[Session], primary: Engine, retry_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]
        self.primary = primary
        self.retry_s = retry_s
        self.clock = clock
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.routed = {"replica": 0, "primary": 0}  # reads sent each way (bench and tests read it)

    def fence(self, reader: str) -> None:
        """After a committed write: this reader's reads wait for the replica to replay it."""
        try:
            with self.primary.begin() as conn:
                conn.execute(_FENCE, {"r": reader[:255]})
        except DBAPIError:  # the write is stored; without its fence this reader may briefly read older data
            log.exception("could not record the read fence of %s", reader)

    def _fence_of(self, reader: str) -> str | None:
        """The reader's fence on the primary (NO_FENCE if it never wrote); None: the replica is not to be
        used now (it failed moments ago, or the primary did not answer and will answer the read itself)."""
        if self.clock() < self._down_until:
            return None
        try:
            row = _FENCE_OF.first(self.primary, {"r": reader[:255]})
        except (DBAPIError, self.primary.dialect.loaded_dbapi.Error):
            return None
        return str(row[0]) if row is not None else NO_FENCE

    def session_for(self, reader: str) -> Session | None:
        """A replica session that has this reader's writes, or None: read from the primary."""
        lsn = self._fence_of(reader)
        session = self.sessions() if lsn is not None else None
        if session is not None:
            try:
                if session.execute(_PASSED, {"f": lsn}).scalar():
                    self.routed["replica"] += 1
                    return session
            except DBAPIError as exc:
                self.failed(exc)
            session.close()
        self.routed["primary"] += 1
        return None

    def current_text(self, reader: str, rtype: str, fid: str) -> tuple[bool, tuple[Any, ...] | None]:
        """A read by id on the replica with its replay check, in one statement: (answered, row); not answered
        means read it from the primary. The row is (text, version, last_updated, deleted, pk), None if unknown."""
        lsn = self._fence_of(reader)
        row = None
        if lsn is not None:
            try:
                row = _READ_PASSED.first(self.engine, {"f": lsn, "t": rtype, "i": fid})
            except (DBAPIError, self.engine.dialect.loaded_dbapi.Error) as exc:
                self.failed(exc)
        if row is None or not row[0]:
            self.routed["primary"] += 1
            return False, None
        self.routed["replica"] += 1
        return True, (None if row[5] is None else tuple(row[1:]))

    def failed(self, exc: BaseException) -> None:
        """The replica failed a statement: reads go to the primary for `retry_s`, then it is tried again."""
        with self._lock:
            self._down_until = self.clock() + self.retry_s
        log.warning("read replica unavailable (%s); reading from the primary for %.0f s",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__, self.retry_s)
