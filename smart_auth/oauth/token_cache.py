"""Recently checked bearer tokens, so the FHIR API does not query the token tables on every request.

RFC 7662 section 4 lets a protected resource cache what it learnt about a token. Here an entry lives at
most `ttl` seconds and never past the token's expiry, and any change made in this process to tokens, app
grants, patient access or users empties the cache at once (ORM flushes, commits and bulk UPDATE/DELETE
statements through a session are watched): a revocation here takes effect on the next request.

Other processes (WSGI workers, other machines) learn of a change through the announcers the composition
root registers: on PostgreSQL a NOTIFY sent in the changing transaction, which every process LISTENs
for (carespace/changes.py). While a process cannot listen (TokenCache.synced False) its cache is not used.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from fhir_server import AccessContext

_FLAG = "carespace.auth_changed"


class Changes:
    """A counter of authorization changes seen in this process; caches compare it to their entries'."""

    def __init__(self) -> None:
        self.generation = 0
        self._lock = threading.Lock()
        self.watched: tuple[type, ...] = ()
        self._tables: set[Any] = set()
        # Told of every change inside the changing transaction (to tell other processes at its commit).
        self.announcers: list[Callable[[Session], None]] = []

    def bump(self) -> None:
        with self._lock:
            self.generation += 1

    def watch(self, *models: type) -> None:
        """Count flushes and commits touching these ORM classes as changes (registered once per process)."""
        if not self.watched:
            event.listen(Session, "after_flush", self._after_flush)
            event.listen(Session, "after_commit", self._after_commit)
            event.listen(Session, "do_orm_execute", self._bulk)
        self.watched = tuple({*self.watched, *models})
        self._tables = {m.__table__ for m in self.watched}  # type: ignore[attr-defined]

    def touched(self, session: Session) -> None:
        """A bulk statement changed authorization rows in `session`: now, and again when it commits."""
        session.info[_FLAG] = True
        self.bump()
        for announce in list(self.announcers):
            announce(session)

    def _bulk(self, state: Any) -> None:
        """UPDATE / DELETE statements run through a session (revoke_tokens, bulk status changes)."""
        if (state.is_update or state.is_delete) and getattr(state.statement, "table", None) in self._tables:
            self.touched(state.session)

    def _after_flush(self, session: Session, _ctx: Any) -> None:
        if any(isinstance(o, self.watched) for o in (*session.new, *session.dirty, *session.deleted)):
            self.touched(session)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_FLAG, False):
            self.bump()  # readers that fetched the old rows between flush and commit are dropped too


CHANGES = Changes()


class TokenCache:
    """Bearer token digest -> AccessContext, bounded in time, size and by CHANGES."""

    def __init__(self, ttl: float = 5.0, size: int = 10_000) -> None:
        self.ttl, self.size = ttl, size
        self.synced = True  # False while changes made by other processes might go unseen (carespace/changes.py)
        self._entries: dict[str, tuple[int, float, AccessContext]] = {}

    def get(self, key: str) -> AccessContext | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        generation, until, ctx = hit
        if generation != CHANGES.generation or until <= time.time() or not self.synced:
            self._entries.pop(key, None)
            return None
        return ctx

    def put(self, key: str, ctx: AccessContext, generation: int, expires_at: float) -> None:
        """Keep `ctx` resolved from rows read when CHANGES was at `generation` (stale at once if it moved)."""
        if self.ttl <= 0 or not self.synced:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (generation, min(time.time() + self.ttl, expires_at), ctx)
