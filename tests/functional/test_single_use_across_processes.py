"""Issue 17 item 2: single-use codes and links, jti replay protection and sign-in throttling hold across
processes, because they live in the database. Two apps with their own engines and pools on one database stand for two server processes;
the same code or client assertion is sent to both at once from several threads."""
from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from carespace import close_app
from smart_auth.accounts import security
from smart_auth.accounts.models import AuthToken, LoginThrottle
from tests.conftest import make_app
from tests.support.accounts import csrf, invite, patient_user
from tests.support.smart import ATYPE, REDIRECT, Smart, assertion, basic, keypair

RACERS = 8


@pytest.fixture
def other_process(app: Any, tmp_path: Path) -> Iterator[Any]:
    """A second app on the same database: its own engine, pool, caches and instance folder."""
    twin = make_app(app.config["DATABASE_URL"], tmp_path / "second-instance")
    yield twin
    close_app(twin)


def race(apps: list[Any], send: Callable[[Any], Any], prepare: Callable[[Any], Any] | None = None) -> Counter[int]:
    """Send the same request from RACERS threads at once, alternating between the apps; count the statuses.
    `prepare(client)` runs in each thread before they start together (a sign-in form's CSRF token)."""
    start = threading.Barrier(RACERS)
    statuses: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        client = apps[i % len(apps)].test_client()
        if prepare is not None:
            prepare(client)
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


def test_sign_in_failures_are_counted_once_each_across_processes(app: Any, client: Any, other_process: Any) -> None:
    """RACERS wrong passwords for one account from one address at once, through two processes: exactly
    ACCOUNT_LIMIT are counted (401) before the lock, the rest are refused by it (429), and the address's
    count holds every failure (no update lost between two writers)."""
    patient_user(app, client, email="race@example.org")
    tokens: dict[int, str] = {}

    def form(c: Any) -> None:
        tokens[id(c)] = csrf(c)

    statuses = race([app, other_process], lambda c: c.post("/login", data={
        "csrf_token": tokens[id(c)], "email": "race@example.org", "password": "wrong-Passw0rd",
        "birth_date": "1980-02-03"}), prepare=form)
    assert statuses == Counter({401: security.ACCOUNT_LIMIT, 429: RACERS - security.ACCOUNT_LIMIT})
    with app.extensions["carespace.sessions"]() as dbs:
        rows = {r.key: r for r in dbs.scalars(select(LoginThrottle))}
    by_address = rows["email-ip:race@example.org|127.0.0.1"]
    assert (by_address.strikes, by_address.failures) == (1, 0)
    assert rows["ip:127.0.0.1"].failures == security.ACCOUNT_LIMIT
    assert rows["email:race@example.org"].failures == security.ACCOUNT_LIMIT


def _link_race(apps: list[Any], page: str, url: str, form: dict[str, str]) -> Counter[int]:
    """RACERS posts of one link's form at once (each client with the CSRF token of its own session)."""
    tokens: dict[int, str] = {}

    def prepare(c: Any) -> None:
        tokens[id(c)] = csrf(c, page)

    return race(apps, lambda c: c.post(url, data={"csrf_token": tokens[id(c)], **form}), prepare=prepare)


def test_a_registration_link_is_used_once_across_processes(app: Any, other_process: Any) -> None:
    """One invitation, RACERS registrations at once through two processes: one sets the password (302), the
    others are told the link was used (410), and the password that works is the winner's."""
    _pid, token = invite(app, "once@example.org", "1980-02-03")
    statuses = _link_race([app, other_process], f"/register?token={token}", "/register",
                          {"token": token, "password": "Str0ng!pass", "confirm": "Str0ng!pass"})
    assert statuses == Counter({302: 1, 410: RACERS - 1})
    with app.extensions["carespace.sessions"]() as dbs:
        states = [t.state for t in dbs.scalars(select(AuthToken).where(AuthToken.purpose == "invite"))]
    assert states == ["used"]

