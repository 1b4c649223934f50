"""Bulk Data $export in the app: the ExportService with the settings, and its worker threads.

Jobs are rows (fhir_export_job), so any process may run any job: each process starts its workers on its
first request (after a fork), each worker claims one job at a time by a conditional UPDATE and renews its
lease while it writes, and a job whose process died is claimed again once its lease runs out (a server's workers start with its first
request, so a restarted server resumes the job). Files go to
the instance folder's exports/ directory and are removed when their retention ends.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import request

from fhir_server import ExportService, ExportSettings

from .background import Background

log = logging.getLogger("carespace.exports")


class ExportWorkers:
    """EXPORT_MAX_JOBS background threads running ExportService.step (woken by every kick-off)."""

    def __init__(self, service: ExportService, count: int, enabled: bool) -> None:
        self.service = service
        self.enabled = enabled
        self.threads = [Background(f"carespace-export-{n + 1}", service.step, log) for n in range(max(1, count))]

    def kick(self) -> None:
        if self.enabled:
            for thread in self.threads:
                thread.kick()

    def close(self) -> None:
        for thread in self.threads:
            thread.close()


def settings(cfg: Any) -> ExportSettings:
    return ExportSettings(folder=Path(cfg["INSTANCE_DIR"]) / "exports", file_max_bytes=int(cfg["EXPORT_FILE_MAX_BYTES"]),
                          retention_s=float(cfg["EXPORT_RETENTION_S"]), min_poll_s=float(cfg["EXPORT_MIN_POLL_S"]),
                          max_running=int(cfg["EXPORT_MAX_JOBS"]), lease_s=float(cfg["EXPORT_LEASE_S"]))


def init_app(app: Any) -> None:
    """Install the ExportService (app.extensions["fhir_exports"]) and its workers (app.extensions["exports"])."""
    audit = app.extensions["audit_log"]
    service = ExportService(app.extensions["fhir_service"], settings(app.config), record=audit.record)
    workers = ExportWorkers(service, int(app.config["EXPORT_MAX_JOBS"]), bool(app.config["EXPORT_WORKER"]))
    service.on_queued.append(workers.kick)
    app.extensions["fhir_exports"] = service
    app.extensions["exports"] = workers
    started = {"done": False}

    @app.before_request
    def _start_exports() -> None:
        """A server starts its workers on its first request, so a job left by a restart is resumed and expired
        files are removed without waiting for an export request; in-process test apps (many per process)
        start them on their first export request only, so other tests share the database with no export thread."""
        if not started["done"] and (not app.testing or "/$export" in request.path):
            started["done"] = True
            workers.kick()
