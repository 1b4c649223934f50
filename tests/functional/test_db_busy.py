"""Issue 15, item 1: a busy or unreachable database is a 503 with Retry-After in each surface's own format
(RFC 6749 JSON on /oauth, an OperationOutcome on /fhir, a page a person can act on in the portal), other
database errors stay 500s in the same formats; and the SQLite writer gate and the bounded audit queue."""
from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from carespace import db
from fhir_server.audit import AuditBacklog, AuditLog
from tests.support.accounts import csrf, patient_user
from tests.support.smart import Smart, basic


def locked(*_a: Any, **_k: Any) -> None:
    raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))


def broken(*_a: Any, **_k: Any) -> None:
    raise OperationalError("SELECT 1 FROM nowhere", None, sqlite3.OperationalError("no such table: nowhere"))


def test_unavailable_tells_busy_from_wrong() -> None:
    assert db.unavailable(OperationalError("x", None, sqlite3.OperationalError("database is locked")))
    assert db.unavailable(OperationalError("x", None, psycopg.errors.DeadlockDetected("deadlock detected")))
    assert db.unavailable(OperationalError("x", None, psycopg.OperationalError("connection refused")))
    assert db.unavailable(PoolTimeout("QueuePool limit of size 10 overflow 20 reached"))
    assert not db.unavailable(OperationalError("x", None, sqlite3.OperationalError("no such table: t")))
    assert not db.unavailable(ValueError("database is locked"))


def test_token_endpoint_busy_is_rfc6749_json_503(app: Any, client: Any, monkeypatch: Any) -> None:
    smart = Smart(app, client)
    client_id, secret = smart.register("secret", grant_types=["client_credentials"], redirect_uris=[],
                                       scope="system/*.rs")
    monkeypatch.setattr("smart_auth.oauth.repository.client", locked)
    r = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                    headers=basic(client_id, secret or ""))
    assert r.status_code == 503 and r.is_json, r.get_data(as_text=True)[:300]
    assert r.get_json()["error"] == "temporarily_unavailable"
    assert r.headers["Retry-After"] == "2" and r.headers["Cache-Control"] == "no-store"
    monkeypatch.setattr("smart_auth.oauth.repository.client", broken)
    r = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret or ""))
    assert r.status_code == 500 and r.is_json and r.get_json()["error"] == "server_error"
    assert "Retry-After" not in r.headers


def test_fhir_busy_is_an_operation_outcome_503(app: Any, monkeypatch: Any) -> None:
    from tests.conftest import trusted_client
    c = trusted_client(app)
    pid = c.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]
    monkeypatch.setattr(app.extensions["fhir_service"], "read", locked)
    monkeypatch.setattr(app.extensions["fhir_service"], "create", locked)
    for resp in (c.get(f"/fhir/Patient/{pid}"), c.post("/fhir/Patient", json={"resourceType": "Patient"})):
        assert resp.status_code == 503, resp.get_data(as_text=True)[:300]
        body = resp.get_json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "transient"
        assert resp.headers["Retry-After"] == "2"
    monkeypatch.setattr(app.extensions["fhir_service"], "read", broken)
    resp = c.get(f"/fhir/Patient/{pid}")
    assert resp.status_code == 500 and resp.get_json()["issue"][0]["code"] == "exception"


def test_portal_busy_is_a_page_to_act_on(app: Any, client: Any, monkeypatch: Any) -> None:
    patient_user(app, client)
    monkeypatch.setattr(app.extensions["fhir_service"], "search", locked)
    page = client.get("/health")
    html = page.get_data(as_text=True)
    assert page.status_code == 503 and page.headers["Retry-After"] == "2"
    assert "CareSpace is busy right now" in html and 'href="/health">Try again' in html
    other = app.test_client()
    token = csrf(other)
    monkeypatch.setattr(app.extensions["accounts"].login, "authenticate", locked)
    resp = other.post("/login", data={"csrf_token": token, "email": "pat@example.org", "password": "x",
                                      "birth_date": "1980-02-03"})
    assert resp.status_code == 503 and "Nothing was changed" in resp.get_data(as_text=True)
    assert "Try again</a>" not in resp.get_data(as_text=True)  # a form: send it again, not a link
    api = app.test_client().get("/healthz", headers={"Accept": "application/json"})
    assert api.status_code == 200
    monkeypatch.setattr(db, "ping", locked)
    api = app.test_client().get("/healthz")
    assert api.status_code == 503 and api.get_json()["error"] == "temporarily_unavailable"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_writer_gate_queues_in_order_and_refuses_reentry(app: Any) -> None:
    engine = app.extensions["carespace.engine"]
    writer = engine.execution_options(write=True)
    order: list[int] = []
    first = writer.connect()
    first.begin()
    first.execute(text("SELECT 1"))

    def wait_turn(n: int) -> None:
        with writer.begin() as conn:
            order.append(n)
            conn.execute(text("SELECT 1"))

    threads = []
    for n in range(3):
        t = threading.Thread(target=wait_turn, args=(n,))
        t.start()
        threads.append(t)
        time.sleep(0.15)  # each arrives after the previous one queued
    with pytest.raises(RuntimeError, match="already has a write transaction"):
        with writer.begin():
            pass
    assert order == []  # all wait while the first writer is open
    first.rollback()  # a rollback hands the turn on, as a commit does
    for t in threads:
        t.join(10)
    first.close()
    assert order == [0, 1, 2]
    with engine.begin() as conn:  # readers never queue
        conn.execute(text("SELECT 1"))


def test_gate_timeout_is_a_busy_database() -> None:
    gate = db.WriterGate(timeout=0.2)
    holder: dict[str, Any] = {}
    t = threading.Thread(target=gate.enter, args=(holder,))
    t.start()
    t.join()
    with pytest.raises(OperationalError) as err:
        gate.enter({})
    assert db.unavailable(err.value)
    gate.leave(holder)
    mine: dict[str, Any] = {}
    gate.enter(mine)
    gate.leave(mine)
    assert gate.waiting == 0


class _SlowStore:
    """A stand-in FhirService whose writes wait until released (the audit writer stuck behind a lock)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.written = 0

    def unit(self, write: bool = False) -> Any:
        store = self

        class Unit:
            def __enter__(self) -> Any:
                store.release.wait(10)
                return self

            def __exit__(self, *exc: Any) -> None:
                return None

            def write(self, *_a: Any) -> None:
                store.written += 1

            def patients_of(self, _refs: Any) -> dict[Any, Any]:
                return {}
        return Unit()


def test_audit_queue_is_bounded_and_reports_memory_and_lag() -> None:
    store = _SlowStore()
    log = AuditLog(store, batch=2, linger=0.0, limit=3, full_wait=0.3)  # type: ignore[arg-type]
    accepted = 0
    with pytest.raises(AuditBacklog) as err:
        for n in range(10):
            log.enqueue({"resourceType": "AuditEvent", "n": n})
            accepted += 1
            time.sleep(0.05)
    assert accepted == 4  # one taken by the writer (stuck on the store), three waiting: the bound
    assert err.value.status == 503 and err.value.headers["Retry-After"] == "2"
    assert log.stats()["refused"] == 1 and log.stats()["max_pending"] == 4
    store.release.set()
    assert log.flush(10)
    stats = log.stats()
    assert store.written == 4 and stats["written"] == 4 and stats["pending"] == 0
    assert stats["max_lag_ms"] >= 250  # the first event waited for the store to be released
