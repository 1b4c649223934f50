"""Several processes: `carespace serve --workers N` on PostgreSQL, and revocation instant in every worker and
on every machine (two servers on one database), told through PostgreSQL's LISTEN/NOTIFY."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import LiveServer
from tests.support.postgres import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _fresh(url: str, path: str, token: str) -> int:
    """One request on a new connection (so each may land on another worker)."""
    with requests.Session() as s:
        return s.get(url + path, headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                     timeout=30).status_code


@pytest.fixture
def two_machines(pg_cluster: Cluster | None, tmp_path: Path, smtp_server: Any) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Server A with 2 workers and server B with 1, on one PostgreSQL database, with a long token cache."""
    if pg_cluster is None:
        pytest.skip("PostgreSQL is not among CARESPACE_TEST_BACKENDS")
    url = pg_cluster.create_database(f"workers_{tmp_path.name[-12:].replace('-', '_')}")
    env = {"CARESPACE_TOKEN_CACHE_SECONDS": "300", "CARESPACE_SECRET_KEY": "shared-secret"}
    (tmp_path / "a").mkdir()
    a = LiveServer(tmp_path / "a", url, smtp_server.url, env, serve_args=("--workers", "2")).start()
    # the second machine: a copy of the instance folder (its keys) behind the same public base URL
    shutil.copytree(tmp_path / "a", tmp_path / "b", ignore=shutil.ignore_patterns("server.log"))
    b = LiveServer(tmp_path / "b", url, smtp_server.url, {**env, "CARESPACE_BASE_URL": a.url}).start()
    yield a, b
    a.stop()
    b.stop()


def _backend(live: LiveServer) -> tuple[str, str, str]:
    reg = json.loads(live.cli("register-client", "--name", "EHR", "--secret", "--grant-type", "client_credentials",
                              "--scope", "system/*.rs").stdout)
    r = requests.post(live.url + "/oauth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                      auth=(reg["client_id"], reg["client_secret"]), timeout=30)
    assert r.status_code == 200, r.text
    return reg["client_id"], reg["client_secret"], r.json()["access_token"]


def test_sqlite_refuses_more_than_one_worker(tmp_path: Path) -> None:
    env = {"CARESPACE_INSTANCE_DIR": str(tmp_path), "CARESPACE_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
           "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "carespace", "serve", "--workers", "2"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0, run
    assert "--workers needs PostgreSQL" in run.stderr


def test_two_workers_serve_one_port_from_two_processes(two_machines: tuple[LiveServer, LiveServer]) -> None:
    a, _b = two_machines
    _, _, token = _backend(a)
    pids = set()
    for _ in range(40):
        with requests.Session() as s:
            r = s.get(a.url + "/healthz", headers={"Connection": "close"}, timeout=30)
            assert r.status_code == 200
        assert _fresh(a.url, "/fhir/Patient?_count=1", token) == 200
    for line in (a.folder / "server.log").read_text().splitlines():
        if "Booting worker with pid" in line:
            pids.add(line.rsplit(" ", 1)[1])
    assert len(pids) == 2


def test_a_revoked_token_fails_at_once_in_every_worker_and_on_the_other_server(
        two_machines: tuple[LiveServer, LiveServer]) -> None:
    a, b = two_machines
    client_id, secret, token = _backend(a)
    for _ in range(20):  # both workers of A and server B have the token in their caches now
        assert _fresh(a.url, "/fhir/Patient?_count=1", token) == 200
    assert _fresh(b.url, "/fhir/Patient?_count=1", token) == 200
    r = requests.post(b.url + "/oauth/revoke", data={"token": token}, auth=(client_id, secret), timeout=30)
    assert r.status_code == 200
    statuses = [_fresh(a.url, "/fhir/Patient?_count=1", token) for _ in range(20)]
    assert statuses == [401] * 20
    assert _fresh(b.url, "/fhir/Patient?_count=1", token) == 401


def test_a_dropped_listener_turns_the_cache_off_until_it_listens_again(
        two_machines: tuple[LiveServer, LiveServer], pg_cluster: Cluster) -> None:
    a, b = two_machines
    client_id, secret, token = _backend(a)
    for _ in range(10):
        assert _fresh(a.url, "/fhir/Patient?_count=1", token) == 200
    # every listening connection is cut (as a failover or a network drop would)
    cut = pg_cluster.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE pid <> pg_backend_pid() AND (query LIKE 'LISTEN%' OR query = 'SELECT 1')")
    assert len(cut) >= 3  # A's two workers and B
    r = requests.post(b.url + "/oauth/revoke", data={"token": token}, auth=(client_id, secret), timeout=30)
    assert r.status_code == 200
    assert [_fresh(a.url, "/fhir/Patient?_count=1", token) for _ in range(10)] == [401] * 10
