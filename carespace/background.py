"""One daemon thread per job (mail sender, notifier): started on first kick, in the process that kicks it.

Started lazily, never at import or app creation, so a server that forks workers starts one in each
worker after the fork. `step` does the work and says how many seconds to sleep; kick() wakes it early.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

RETRY_S = 5.0


class Background:
    """Runs `step` until stopped; a failing step (the database briefly away) is logged and retried."""

    def __init__(self, name: str, step: Callable[[], float], log: logging.Logger) -> None:
        self.name, self.step, self.log = name, step, log
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._closed = False

    def kick(self) -> None:
        """Start the thread if it is not running, and wake it (never again once closed)."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread; a later kick() starts it again."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def close(self) -> None:
        """Stop for good: the app is closing and its engine is disposed, so no thread may reconnect."""
        with self._lock:
            self._closed = True
        self.stop()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                wait = self.step()
            except Exception:  # noqa: BLE001 - the database may be briefly unavailable; try again later
                self.log.exception("%s failed; retrying", self.name)
                wait = RETRY_S
            self._wake.wait(wait)
