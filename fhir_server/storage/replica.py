"""Reads from a PostgreSQL streaming replica, with each reader reading its own writes.

A write by a reader (a person, an app, a process: `reader_of`) records on the primary where it ended in
the WAL (`pg_current_wal_lsn()` after the commit, in the UNLOGGED table fhir_read_fence). A read of that
reader goes to the replica only once the replica has replayed past that point
(`pg_last_wal_replay_lsn()`); until then, and whenever the replica cannot be reached or is not in
recovery, it goes to the primary. Nothing here raises: a replica that fails is a replica not used
for a while (`retry_s`).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ..access.context import AccessContext

log = logging.getLogger("fhir_server.replica")

_FENCE = text("INSERT INTO fhir_read_fence (reader, lsn) VALUES (:r, CAST(pg_current_wal_lsn() AS TEXT)) "
              "ON CONFLICT (reader) DO UPDATE SET lsn = EXCLUDED.lsn")
_FENCE_OF = text("SELECT lsn FROM fhir_read_fence WHERE reader = :r")
_REPLAYED = text("SELECT CAST(pg_last_wal_replay_lsn() AS TEXT)")
_PASSED = text("SELECT pg_last_wal_replay_lsn() >= CAST(:f AS pg_lsn)")


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

    def session_for(self, reader: str) -> Session | None:
        """A replica session that has this reader's writes, or None: read from the primary."""
        if self.clock() < self._down_until:
            return self._primary()
        try:
            with self.primary.connect() as conn:
                lsn = conn.execute(_FENCE_OF, {"r": reader[:255]}).scalar()
        except DBAPIError:
            return self._primary()  # the primary will answer the read, or say it is unavailable
        session = self.sessions()
        try:
            if lsn is None:
                ok = session.execute(_REPLAYED).scalar() is not None  # None: not in recovery, not a replica
            else:
                ok = bool(session.execute(_PASSED, {"f": lsn}).scalar())
        except DBAPIError as exc:
            session.close()
            self.failed(exc)
            return self._primary()
        if not ok:
            session.close()
            return self._primary()
        self.routed["replica"] += 1
        return session

    def failed(self, exc: BaseException) -> None:
        """The replica failed a statement: reads go to the primary for `retry_s`, then it is tried again."""
        with self._lock:
            self._down_until = self.clock() + self.retry_s
        log.warning("read replica unavailable (%s); reading from the primary for %.0f s",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__, self.retry_s)

    def _primary(self) -> Session | None:
        self.routed["primary"] += 1
        return None
