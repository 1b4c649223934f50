"""CARESPACE_DATABASE_REPLICA_URL on a real primary and a real streaming replica (pg_basebackup -R, both
throwaway clusters on loopback): reads and searches go to the replica, writes to the primary, a reader
reads its own writes at once, and a stopped replica sends reads to the primary."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carespace import close_app, config
from tests.conftest import BACKENDS, make_app
from tests.support.backend import backend_token
from tests.support.fhirapi import matches, ok
from tests.support.postgres import Cluster
from tests.support.smart import Smart

pytestmark = pytest.mark.skipif("postgres" not in BACKENDS, reason="replicas are PostgreSQL's")


def _ready(cluster: Cluster, dbname: str = "postgres") -> None:
    """Wait until the cluster answers queries (a standby accepts connections before it is consistent)."""
    deadline = time.time() + 30
    while True:
        try:
            cluster.sql("SELECT 1", dbname)
            return
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def _caught_up(primary: Cluster, replica: Cluster, dbname: str) -> None:
    """Wait until the replica has replayed everything the primary wrote so far."""
    target = primary.sql("SELECT CAST(pg_current_wal_insert_lsn() AS TEXT)")[0][0]
    deadline = time.time() + 30
    while not replica.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'", dbname)[0][0]:
        assert time.time() < deadline, "the replica did not catch up in 30 s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Cluster, Cluster]]:
    primary = Cluster().start()
    _ready(primary)
    replica = primary.replica()
    _ready(replica)
    yield primary, replica
    replica.stop()
    primary.stop()


@pytest.fixture
def world(pair: tuple[Cluster, Cluster], tmp_path: Path) -> Iterator[dict[str, Any]]:
    primary, replica = pair
    name = f"r{time.monotonic_ns()}"
    url = primary.create_database(name)
    app = make_app(url, tmp_path / "instance", DATABASE_REPLICA_URL=replica.url(name), REPLICA_RETRY_S=0.5)
    _caught_up(primary, replica, "postgres")
    _ready(replica, name)
    client = app.test_client()
    smart = Smart(app, client)
    pid = smart.patient("Replica", "Rae")
    tokens = {who: backend_token(smart, "system/*.cruds") for who in ("writer", "other")}
    _caught_up(primary, replica, name)
    yield {"app": app, "client": client, "pid": pid, "tokens": tokens, "primary": primary, "replica": replica,
           "db": name, "routed": app.extensions["fhir_service"].replica.routed}
    close_app(app)


def _get(world: dict[str, Any], who: str, url: str, status: int = 200) -> dict[str, Any]:
    return ok(world["client"].get(url, headers={"Authorization": f"Bearer {world['tokens'][who]}"}), status)


def _observation(world: dict[str, Any], who: str, code: str) -> str:
    body = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{world['pid']}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}
    resp = world["client"].post("/fhir/Observation", json=body, headers={
        "Authorization": f"Bearer {world['tokens'][who]}", "Content-Type": "application/fhir+json"})
    return str(ok(resp, 201)["id"])


def _paused(world: dict[str, Any], paused: bool) -> None:
    world["replica"].sql("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()", world["db"])


def test_searches_and_reads_are_answered_by_the_replica(world: dict[str, Any]) -> None:
    """With replay paused, a write by one app is on the primary only: another app's search, read and
    $everything (answered by the replica) do not see it yet; once replayed they do."""
    _paused(world, True)
    try:
        oid = _observation(world, "writer", "2345-7")
        before = dict(world["routed"])
        assert matches(_get(world, "other", f"/fhir/Observation?code=2345-7&patient={world['pid']}")) == []
        _get(world, "other", f"/fhir/Observation/{oid}", 404)
        everything = _get(world, "other", f"/fhir/Patient/{world['pid']}/$everything")
        assert [e["resource"]["resourceType"] for e in everything.get("entry", [])] == ["Patient"]
        assert world["routed"]["primary"] == before["primary"]
        assert world["routed"]["replica"] >= before["replica"] + 3
    finally:
        _paused(world, False)
    _caught_up(world["primary"], world["replica"], world["db"])
    assert [r["id"] for r in matches(_get(world, "other", "/fhir/Observation?code=2345-7"))] == [oid]
    assert _get(world, "other", f"/fhir/Observation/{oid}")["id"] == oid


def test_a_reader_reads_its_own_writes_at_once(world: dict[str, Any]) -> None:
    """The writer's reads go to the primary until the replica has replayed its write (by LSN)."""
    _paused(world, True)
    try:
        oid = _observation(world, "writer", "718-7")
        before = dict(world["routed"])
        assert [r["id"] for r in matches(_get(world, "writer", "/fhir/Observation?code=718-7"))] == [oid]
        assert _get(world, "writer", f"/fhir/Observation/{oid}")["id"] == oid
        assert world["routed"]["primary"] == before["primary"] + 2
        assert world["routed"]["replica"] == before["replica"]
    finally:
        _paused(world, False)
    _caught_up(world["primary"], world["replica"], world["db"])
    before = world["routed"]["replica"]
    assert _get(world, "writer", f"/fhir/Observation/{oid}")["id"] == oid
    assert world["routed"]["replica"] == before + 1  # replayed: back to the replica


def test_writes_go_to_the_primary(world: dict[str, Any]) -> None:
    """The replica is read-only (a write sent there would fail); every write lands on the primary."""
    oid = _observation(world, "writer", "2093-3")
    resp = world["client"].put(f"/fhir/Observation/{oid}", json={
        "resourceType": "Observation", "id": oid, "status": "amended", "subject": {"reference": f"Patient/{world['pid']}"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]}},
        headers={"Authorization": f"Bearer {world['tokens']['writer']}", "Content-Type": "application/fhir+json"})
    assert ok(resp)["meta"]["versionId"] == "2"
    rows = world["primary"].sql(f"SELECT version FROM fhir_resource WHERE res_type = 'Observation' AND fhir_id = '{oid}'",
                                world["db"])
    assert rows == [(2,)]


def test_a_stopped_replica_sends_reads_to_the_primary(world: dict[str, Any]) -> None:
    """Replica down: every read is answered (200, by the primary); once it is back, reads return to it."""
    oid = _observation(world, "writer", "4548-4")
    _caught_up(world["primary"], world["replica"], world["db"])
    world["replica"].stop_server()
    try:
        before = world["routed"]["primary"]
        for _ in range(3):
            assert _get(world, "other", f"/fhir/Observation/{oid}")["id"] == oid
            assert [r["id"] for r in matches(_get(world, "other", "/fhir/Observation?code=4548-4"))] == [oid]
        assert world["routed"]["primary"] == before + 6
    finally:
        world["replica"].restart()
    _ready(world["replica"], world["db"])
    time.sleep(0.6)  # REPLICA_RETRY_S
    before = world["routed"]["replica"]
    deadline = time.time() + 10
    while world["routed"]["replica"] == before:
        assert time.time() < deadline, "reads did not return to the restarted replica"
        assert _get(world, "other", f"/fhir/Observation/{oid}")["id"] == oid
        time.sleep(0.2)


def test_audit_events_are_read_from_the_primary(world: dict[str, Any]) -> None:
    """AuditEvents are written moments before they are read: their searches never go to a lagging replica."""
    before = world["routed"]["replica"]
    _get(world, "other", "/fhir/AuditEvent?_count=1")
    assert world["routed"]["replica"] == before


def test_a_replica_needs_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CARESPACE_DATABASE_REPLICA_URL needs PostgreSQL"):
        config.load({"INSTANCE_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
                     "SECRET_KEY": "s"}, env={"CARESPACE_DATABASE_REPLICA_URL": "postgresql://127.0.0.1/x"})


def test_in_process_callers_read_the_primary(world: dict[str, Any]) -> None:
    """Trusted in-process callers (accounts, invitations, imports) read to decide writes: never a lagging replica."""
    from fhir_server import AccessContext
    fhir = world["app"].extensions["fhir_service"]
    _paused(world, True)
    try:
        oid = _observation(world, "writer", "2160-0")
        before = dict(world["routed"])
        _req, page = fhir.search(AccessContext.system("invitations"), "Observation", [("code", "2160-0")])
        assert [i for _t, i, _x in page.matches] == [oid]
        assert fhir.read(AccessContext.system("invitations"), "Observation", oid).id == oid
        assert world["routed"] == before  # not even considered for the replica
    finally:
        _paused(world, False)
