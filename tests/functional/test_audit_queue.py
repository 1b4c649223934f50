"""The access-event queue of AuditLog: batched background writes that lose nothing and are read in order."""
from __future__ import annotations

import logging
import time
from typing import Any

from fhir_server.access.context import AccessContext
from fhir_server.audit import AuditLog, audit_event

SYS = AccessContext.system("t")


def _event(n: int) -> dict[str, Any]:
    return audit_event(action="read", subtype="read", agent_ref=None, agent_display=f"app {n}", patient_id=None,
                       entities=[f"Observation/o{n}"], ok=True, client_id="c")


def _stored(app: Any) -> set[str]:
    _, page = app.extensions["fhir_service"].search(SYS, "AuditEvent", [("_count", "1000")])
    import json
    return {json.loads(x)["agent"][0]["who"]["display"] for _, _, x in page.matches}


def test_queued_events_are_all_written_in_batches_and_seen_by_the_next_search(app: Any) -> None:
    log = AuditLog(app.extensions["fhir_service"], batch=40, linger=0.5)
    app.extensions["fhir_service"].settle = log.flush
    for n in range(100):
        log.enqueue(_event(n))
    assert _stored(app) == {f"app {n}" for n in range(100)}  # the search flushed the queue first
    assert log.pending == 0


def test_one_bad_event_loses_no_other(app: Any, caplog: Any) -> None:
    log = AuditLog(app.extensions["fhir_service"], batch=50, linger=0.5)
    bad = _event(999)
    bad["entity"][0]["what"]["reference"] = object()  # cannot be stored as JSON
    for n in range(10):
        log.enqueue(_event(n))
    log.enqueue(bad)
    with caplog.at_level(logging.ERROR, "carespace.audit"):
        assert log.flush()
    assert _stored(app) == {f"app {n}" for n in range(10)}
    assert sum("could not record AuditEvent" in r.getMessage() for r in caplog.records) == 1


def test_the_writer_stops_when_idle_and_starts_again(app: Any) -> None:
    log = AuditLog(app.extensions["fhir_service"], linger=0.01, idle=0.1)
    log.enqueue(_event(1))
    assert log.flush()
    deadline = time.time() + 5
    while log._thread is not None and time.time() < deadline:
        time.sleep(0.02)
    assert log._thread is None
    log.enqueue(_event(2))
    assert log.flush() and _stored(app) >= {"app 1", "app 2"}


def test_flush_with_nothing_queued_returns_at_once(app: Any) -> None:
    log = AuditLog(app.extensions["fhir_service"])
    started = time.perf_counter()
    assert log.flush(timeout=5)
    assert time.perf_counter() - started < 1
