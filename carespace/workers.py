"""`carespace serve --workers N`: N processes on one port under gunicorn (PostgreSQL only).

Each worker builds its own app after the fork (no preloading), so no engine, connection or thread is
shared across a fork: the audit writer, the mail sender, the notifier and the change listener start in
each worker on its first request. A worker that exits writes its queued AuditEvents first.
"""
from __future__ import annotations

import json
from typing import Any

from gunicorn.app.base import BaseApplication


class WorkerPool(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured in code: gthread workers, each with its own CareSpace app."""

    def __init__(self, host: str, port: int, workers: int, threads: int, connection_limit: int) -> None:
        self.settings = {"bind": f"{host}:{port}", "workers": workers, "threads": threads,
                         "worker_class": "gthread", "worker_connections": connection_limit, "preload_app": False,
                         "proc_name": "carespace", "accesslog": None, "timeout": 120, "graceful_timeout": 30,
                         "keepalive": 5, "limit_request_line": 8190, "worker_exit": _worker_exit}
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Called in each worker after the fork."""
        from . import create_app
        return create_app()


def _worker_exit(_server: Any, worker: Any) -> None:
    """Write the worker's queued AuditEvents and close its connections before it goes."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from . import close_app
        audit = app.extensions["audit_log"]
        audit.flush(timeout=60)
        print(f"audit queue (worker {worker.pid}): " + json.dumps(audit.stats()), flush=True)
        close_app(app)


def serve(host: str, port: int, workers: int, threads: int, connection_limit: int) -> None:
    WorkerPool(host, port, workers, threads, connection_limit).run()
