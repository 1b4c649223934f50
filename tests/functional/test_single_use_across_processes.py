"""Issue 17 item 2: single-use codes and jti replay protection hold across processes, because they live in
the database. Two apps with their own engines and pools on one database stand for two server processes;
the same code or client assertion is sent to both at once from several threads."""
from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from carespace import close_app
from tests.conftest import make_app
from tests.support.smart import ATYPE, REDIRECT, Smart, assertion, basic, keypair

RACERS = 8


@pytest.fixture
def other_process(app: Any, tmp_path: Path) -> Iterator[Any]:
    """A second app on the same database: its own engine, pool, caches and instance folder."""
    twin = make_app(app.config["DATABASE_URL"], tmp_path / "second-instance")
    yield twin
    close_app(twin)


def race(apps: list[Any], send: Callable[[Any], Any]) -> Counter[int]:
    """Send the same request from RACERS threads at once, alternating between the apps; count the statuses."""
    start = threading.Barrier(RACERS)
    statuses: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        client = apps[i % len(apps)].test_client()
        start.wait()
        status = send(client).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(statuses) == RACERS
    return Counter(statuses)


def test_an_authorization_code_is_redeemed_once_across_processes(app: Any, client: Any, other_process: Any) -> None:
    smart = Smart(app, client)
    pid = smart.patient()
    client_id, _ = smart.register("public")
    smart.login(smart.user(pid))
    code = smart.code(client_id)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": smart.verifier, "client_id": client_id}
    statuses = race([app, other_process], lambda c: c.post("/oauth/token", data=form))
    assert statuses == Counter({200: 1, 400: RACERS - 1})


def test_a_client_assertion_is_accepted_once_across_processes(app: Any, client: Any, other_process: Any) -> None:
    smart = Smart(app, client)
    key, jwks = keypair("ES384")
    client_id, _ = smart.register("jwks", jwks=json.dumps(jwks), grant_types=["client_credentials"],
                                  redirect_uris=[], scope="system/Observation.rs")
    form = {"grant_type": "client_credentials", "scope": "system/Observation.rs", "client_assertion_type": ATYPE,
            "client_assertion": assertion(client_id, key, "ES384")}
    statuses = race([app, other_process], lambda c: c.post("/oauth/token", data=form))
    assert statuses == Counter({200: 1, 400: RACERS - 1})  # invalid_client without Basic auth: 400


def test_a_refresh_token_is_rotated_once_across_processes(app: Any, client: Any, other_process: Any) -> None:
    smart = Smart(app, client)
    tokens = smart.launch(smart.user(smart.patient()), kind="secret")
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    auth = basic(tokens["_client_id"], tokens["_secret"])
    statuses = race([app, other_process], lambda c: c.post("/oauth/token", data=form, headers=auth))
    assert statuses == Counter({200: 1, 400: RACERS - 1})
