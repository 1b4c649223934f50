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


# ---- a revoked app grant, a revoked proxy and a disabled account, each revoked through server B ----------------
@pytest.fixture
def people(two_machines: tuple[LiveServer, LiveServer], tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Accounts and app tokens made in-process on the servers' database (setup only; every check is HTTP),
    for the servers' base URL (the audience the tokens are bound to)."""
    from carespace import close_app
    from smart_auth.accounts import staff as staff_admin
    from tests.conftest import make_app
    from tests.support import practice as pr
    from tests.support.smart import Smart
    a, _b = two_machines
    app = make_app(a.env["CARESPACE_DATABASE_URL"], tmp_path / "setup", SECRET_KEY="shared-secret", BASE_URL=a.url)
    monkeypatch.setattr("tests.support.smart.FHIR_BASE", a.url + "/fhir")
    smart = Smart(app, app.test_client())
    pid = smart.patient("Owner", "Olga")
    owner = smart.user(pid)
    helper = smart.user(smart.patient("Helper", "Hal"))
    smart.proxy(helper, pid)
    admin_uid, admin_dr = pr.add_staff(app, smart.fhir, "Maya Chen", "maya@example.com")
    staff_admin.make_admin(app.extensions["accounts"], f"Practitioner/{admin_dr}")
    nurse_uid, _ = pr.add_staff(app, smart.fhir, "Ned Nurse", "ned@example.com")
    from smart_auth.accounts.models import User
    with app.extensions["carespace.sessions"]() as s:
        nurse = s.get(User, nurse_uid)
    tokens = {"app": smart.launch(owner)["access_token"],
              "proxy": smart.launch(helper, patient_id=pid)["access_token"],
              "nurse": smart.launch(nurse, scope="openid fhirUser user/Patient.rs")["access_token"]}
    yield {"pid": pid, "owner": owner.email, "helper": helper, "admin": "maya@example.com", "nurse": nurse_uid,
           "tokens": tokens}
    close_app(app)


def _signed_in(base: str, email: str, password: str, birth: str) -> requests.Session:
    """A browser session signed in through server B's login form."""
    s = requests.Session()
    s.post(base + "/login", data={"csrf_token": _csrf(s, base + "/login"), "email": email, "password": password,
                                  "birth_date": birth}, allow_redirects=False, timeout=30).raise_for_status()
    return s


def _csrf(s: requests.Session, url: str) -> str:
    import re
    m = re.search(r'name="csrf_token" value="([^"]+)"', s.get(url, timeout=30).text)
    assert m, url
    return m.group(1)


def _everywhere(a: LiveServer, b: LiveServer, path: str, token: str) -> list[int]:
    """The status of `path` in 12 requests on new connections to A's workers and 2 to server B."""
    return [_fresh(a.url, path, token) for _ in range(12)] + [_fresh(b.url, path, token) for _ in range(2)]


def test_a_revoked_app_grant_fails_at_once_everywhere(two_machines: tuple[LiveServer, LiveServer],
                                                      people: dict[str, Any]) -> None:
    import re
    a, b = two_machines
    path, token = f"/fhir/Patient/{people['pid']}", people["tokens"]["app"]
    assert _everywhere(a, b, path, token) == [200] * 14  # cached in every worker and on B
    owner = _signed_in(b.url, people["owner"], "Secret#123", "1980-01-02")
    page = owner.get(b.url + "/apps", timeout=30).text
    gid = re.search(r'action="/apps/(\d+)/revoke"', page)
    assert gid, page[:2000]
    r = owner.post(f"{b.url}/apps/{gid.group(1)}/revoke", data={"csrf_token": _csrf(owner, b.url + "/apps")},
                   allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert _everywhere(a, b, path, token) == [401] * 14


def test_a_revoked_proxy_fails_at_once_everywhere(two_machines: tuple[LiveServer, LiveServer],
                                                  people: dict[str, Any]) -> None:
    import re
    a, b = two_machines
    path, token = f"/fhir/Patient/{people['pid']}", people["tokens"]["proxy"]
    assert _everywhere(a, b, path, token) == [200] * 14
    owner = _signed_in(b.url, people["owner"], "Secret#123", "1980-01-02")
    page = owner.get(b.url + "/manage-users", timeout=30).text
    row = re.search(r'action="/manage-users/(\d+)/revoke"', page)
    assert row, page[:2000]
    r = owner.post(f"{b.url}/manage-users/{row.group(1)}/revoke",
                   data={"csrf_token": _csrf(owner, b.url + "/manage-users")}, allow_redirects=False, timeout=30)
    assert r.status_code == 302
    statuses = _everywhere(a, b, path, token)
    assert set(statuses) <= {401, 403} and len(statuses) == 14, statuses


def test_a_disabled_account_fails_at_once_everywhere(two_machines: tuple[LiveServer, LiveServer],
                                                     people: dict[str, Any]) -> None:
    from tests.support import portal_data as pd
    a, b = two_machines
    path, token = "/fhir/Patient?_count=1", people["tokens"]["nurse"]
    assert _everywhere(a, b, path, token) == [200] * 14
    admin = _signed_in(b.url, people["admin"], pd.PASSWORD, "1975-05-14")
    r = admin.post(f"{b.url}/practice/admin/staff/{people['nurse']}/disable",
                   data={"csrf_token": _csrf(admin, b.url + "/practice/admin")}, allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert _everywhere(a, b, path, token) == [401] * 14
