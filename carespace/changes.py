"""Authorization changes told to every process through PostgreSQL itself (LISTEN/NOTIFY), not a new service.

A transaction that changes tokens, app grants, patient access or users sends `NOTIFY carespace_auth` in
that transaction (PostgreSQL delivers it at commit, and never for a rollback). Every server process keeps
one listening connection in a background thread, started after the fork; a notification empties that
process's bearer-token cache. When the listening connection drops, the cache is emptied and unused
(TokenCache.synced False) until the thread has listened again, so a missed notification cannot leave a
revoked token working. On SQLite, which one process serves, nothing is needed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

log = logging.getLogger("carespace.changes")
CHANNEL = "carespace_auth"
RECONNECT_S = 1.0
WAIT_S = 5.0


def announce(session: Session) -> None:
    """NOTIFY inside the session's open transaction: delivered to every listener when it commits."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


class ChangeFeed:
    """One process's side of the channel: announce in the writer's transaction, listen in a thread."""

    def __init__(self, engine: Engine, on_change: Callable[[], None],
                 set_synced: Callable[[bool], None]) -> None:
        self.engine = engine
        self.on_change = on_change
        self.set_synced = set_synced
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self.listening = threading.Event()
        self.received = 0

    def start(self) -> None:
        """Start listening in this process (after a fork: the thread and its connection are this process's)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self.set_synced(False)  # until LISTEN has succeeded, another process's change could go unseen
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="carespace-changes", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it closes its connection at its next wake-up (within WAIT_S)."""
        self._stopping = True

    def _run(self) -> None:
        import psycopg
        while not self._stopping:
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.on_change()  # whatever changed before LISTEN is not in the cache any more
                    self.set_synced(True)
                    self.listening.set()
                    while not self._stopping:
                        for _note in conn.notifies(timeout=WAIT_S, stop_after=1):
                            self.received += 1
                            self.on_change()
                        conn.execute("SELECT 1")  # notices a dead connection between notifications
            except Exception as exc:  # noqa: BLE001 - the database went away: stop trusting the cache, retry
                log.warning("lost the %s listener (%s); the token cache is off until it is back", CHANNEL, exc)
            self.listening.clear()
            self.set_synced(False)
            self.on_change()
            if not self._stopping:
                time.sleep(RECONNECT_S)


def init_app(app: object) -> None:
    """On PostgreSQL, announce authorization changes and listen for other processes' (started per process)."""
    from flask import Flask

    from smart_auth.oauth.token_cache import CHANGES
    assert isinstance(app, Flask)
    engine: Engine = app.extensions["carespace.engine"]
    if engine.dialect.name != "postgresql" or app.testing:
        return  # in-process test apps (many per process) hold no listening connection; servers do

    cache = app.extensions["smart.token_cache"]

    def set_synced(value: bool) -> None:
        cache.synced = value

    feed = ChangeFeed(engine, CHANGES.bump, set_synced)
    app.extensions["carespace.changes"] = feed
    if announce not in CHANGES.announcers:
        CHANGES.announcers.append(announce)
    cache.synced = False  # nothing is cached before this process listens

    @app.before_request
    def _listen() -> None:
        if feed._thread is None or not feed._thread.is_alive():
            feed.start()
