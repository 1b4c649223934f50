"""Issue 15, item 1: read-then-write units under concurrency answer without a 5xx on both backends.

Readers with a token keep the AuditEvent writer committing (as in the report), while other threads use
every unit that reads first and then writes: backend-services tokens (the jti replay table), code
exchange, refresh with rotation, consent, sign-in (throttle rows), Manage Users, Connected apps and
token revocation. Each thread has its own test client (the app is shared, as under a WSGI server).
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from tests.support.accounts import login, patient_user, post
from tests.support.smart import ATYPE, Smart, assertion, basic, keypair, query

SECONDS = 4.0


class Run:
    """Threads that loop over one action each until the time is up; every answer is counted per kind."""

    def __init__(self) -> None:
        self.statuses: dict[str, Counter[int]] = {}
        self.bad: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def note(self, kind: str, resp: Any, ok: tuple[int, ...] = (200,)) -> Any:
        with self.lock:
            self.statuses.setdefault(kind, Counter())[resp.status_code] += 1
            if resp.status_code not in ok and len(self.bad) < 20:
                self.bad.append(f"{kind}: {resp.status_code} {resp.headers.get('Content-Type')} "
                                f"{resp.get_data(as_text=True)[:300]}")
        return resp

    def loop(self, action: Callable[[], None]) -> threading.Thread:
        def body() -> None:
            while not self.stop.is_set():
                try:
                    action()
                except Exception as exc:  # noqa: BLE001 - a crash in a worker is a failure of the run
                    with self.lock:
                        self.bad.append(f"{action.__name__}: {exc.__class__.__name__}: {exc}")
                    return
        return threading.Thread(target=body, daemon=True)

    def run(self, actions: list[Callable[[], None]], seconds: float = SECONDS) -> None:
        threads = [self.loop(a) for a in actions]
        for t in threads:
            t.start()
        time.sleep(seconds)
        self.stop.set()
        for t in threads:
            t.join(60)


def _backend_client(smart: Smart) -> tuple[str, Any]:
    key, jwks = keypair("ES384")
    client_id, _ = smart.register("jwks", jwks=json.dumps(jwks), grant_types=["client_credentials"],
                                  redirect_uris=[], scope="system/*.rs")
    return client_id, key


def _cc(client: Any, client_id: str, key: Any) -> Any:
    return client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs",
                                             "client_assertion_type": ATYPE,
                                             "client_assertion": assertion(client_id, key, "ES384")})


def test_token_requests_after_audited_reads_never_fail(app: Any) -> None:
    """The report: token reads keep the audit writer committing; then POST /oauth/token (jti table) got a 500
    `database is locked` HTML page. Now every token request answers 200 JSON."""
    smart = Smart(app, app.test_client())
    pid = smart.patient()
    oid = smart.observation(pid)
    client_id, key = _backend_client(smart)
    first = _cc(app.test_client(), client_id, key)
    assert first.status_code == 200, first.get_data(as_text=True)
    token = first.get_json()["access_token"]
    run = Run()

    def reader() -> None:
        c = app.test_client()
        run.note("read", c.get(f"/fhir/Observation/{oid}", headers={"Authorization": f"Bearer {token}"}))
        run.note("search", c.get(f"/fhir/Observation?patient={pid}", headers={"Authorization": f"Bearer {token}"}))

    def backend_token() -> None:
        resp = run.note("token", _cc(app.test_client(), client_id, key))
        assert resp.is_json, resp.get_data(as_text=True)[:200]

    run.run([reader, reader, reader, backend_token, backend_token])
    assert not run.bad, run.bad
    assert run.statuses["token"][200] >= 4 and run.statuses["read"][200] >= 10, run.statuses


def test_every_read_then_write_unit_under_concurrency(app: Any) -> None:
    """Sign-in, consent, code exchange, refresh, Manage Users, Connected apps and revocation at once with
    audited reads and backend tokens: no answer is a 5xx, and every write is there afterwards."""
    smart = Smart(app, app.test_client())
    pid = smart.patient()
    oid = smart.observation(pid)
    backend_id, key = _backend_client(smart)
    backend = _cc(app.test_client(), backend_id, key).get_json()["access_token"]
    app_id, secret = smart.register("secret")

    # a patient who signs in through the real form, and whose apps get codes, tokens and refreshes
    portal = app.test_client()
    owner_pid = patient_user(app, portal, "owner@example.org", "1970-01-01", "Olive Owner")
    run = Run()
    refreshes: list[str] = []
    granted: list[str] = []

    def sign_in() -> None:
        run.note("login", login(app.test_client(), "owner@example.org", "1970-01-01"), ok=(302,))
        run.note("login-wrong", login(app.test_client(), "nobody@example.org", "1970-01-01", "Wr0ng!pass"),
                 ok=(401, 429))

    def code_flow(consent: bool) -> Callable[[], None]:
        c = app.test_client()
        driver = Smart.__new__(Smart)
        driver.app, driver.client = app, c
        assert login(c, "owner@example.org", "1970-01-01").status_code == 302

        def flow() -> None:
            extra = {"prompt": "consent"} if consent else {}
            resp = run.note("authorize", driver.authorize(app_id, **extra), ok=(200, 302))
            if resp.status_code == 200:
                resp = run.note("consent", driver.approve(resp), ok=(302,))
            if resp.status_code != 302:
                return
            code = query(resp.headers["Location"]).get("code")
            if not code:
                run.bad.append(f"no code: {resp.headers['Location']}")
                return
            tok = run.note("code-exchange", driver.exchange(app_id, code, secret))
            if tok.status_code == 200:
                refreshes.append(tok.get_json()["refresh_token"])
        flow.__name__ = "consent" if consent else "code"
        return flow

    def refresh() -> None:
        if not refreshes:
            time.sleep(0.01)
            return
        old = refreshes.pop()
        resp = run.note("refresh", app.test_client().post("/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": old}, headers=basic(app_id, secret)), ok=(200, 400))
        if resp.status_code == 200:
            refreshes.append(resp.get_json()["refresh_token"])
            tok = resp.get_json()["access_token"]
            run.note("introspect", app.test_client().post("/oauth/introspect", data={"token": tok},
                                                          headers=basic(app_id, secret)))
            run.note("revoke", app.test_client().post("/oauth/revoke", data={"token": tok},
                                                      headers=basic(app_id, secret)))

    def manage_users() -> None:
        n = len(granted)
        email = f"kid{threading.get_ident() % 1000}-{n}@example.org"
        resp = run.note("grant", post(portal_owner, "/manage-users", {"email": email, "birth_date": "2001-05-06"}),
                        ok=(302,))
        if resp.status_code == 302:
            granted.append(email)

    def backend_token() -> None:
        run.note("token", _cc(app.test_client(), backend_id, key))

    def reader() -> None:
        c = app.test_client()
        run.note("read", c.get(f"/fhir/Observation/{oid}", headers={"Authorization": f"Bearer {backend}"}))

    def apps_page() -> None:
        run.note("apps", portal_owner.get("/apps"))
        run.note("health", portal_owner.get("/health"))

    portal_owner = app.test_client()
    assert login(portal_owner, "owner@example.org", "1970-01-01").status_code == 302
    run.run([sign_in, code_flow(False), code_flow(True), refresh, manage_users, backend_token, reader, reader,
             apps_page])
    assert not run.bad, run.bad
    assert not [k for k, c in run.statuses.items() if any(s >= 500 for s in c)], run.statuses
    for kind in ("login", "authorize", "code-exchange", "refresh", "grant", "token", "read"):
        assert run.statuses.get(kind, Counter()).total() >= 1, (kind, dict(run.statuses))
    # every write is there: one proxy invitation per granted email, one token row per issued token
    from smart_auth.accounts.models import PatientAccess
    from smart_auth.oauth.models import OAuthToken
    with app.extensions["carespace.sessions"]() as s:
        invited = set(s.execute(select(PatientAccess.invited_email).where(
            PatientAccess.patient_id == owner_pid, PatientAccess.relationship == "proxy")).scalars())
        tokens = s.execute(select(func.count()).select_from(OAuthToken)).scalar_one()
    assert set(granted) <= invited
    issued = sum(run.statuses.get(k, Counter())[200] for k in ("token", "code-exchange", "refresh")) + 1
    assert tokens == issued, (tokens, issued)


def test_concurrent_updates_of_one_resource_conflict_instead_of_failing(app: Any) -> None:
    """Found by the load test on PostgreSQL: two portal sessions opening the same unread message both updated
    it from version 1 and the second insert of version 2 broke the unique (res_pk, version) constraint: a 500.
    Now the loser gets 412 (its If-Match is stale) or 409 (changed at the same moment), never a 5xx; and every
    successful update made exactly one version."""
    from tests.conftest import trusted_client
    c = trusted_client(app)
    pid = c.post("/fhir/Patient", json={"resourceType": "Patient", "active": True}).get_json()["id"]
    run = Run()

    def updater() -> None:
        client = trusted_client(app)
        cur = client.get(f"/fhir/Patient/{pid}")
        body = dict(cur.get_json(), active=not cur.get_json().get("active"))
        body.pop("meta", None)
        run.note("update", client.put(f"/fhir/Patient/{pid}", json=body, headers={"If-Match": cur.headers["ETag"]}),
                 ok=(200, 409, 412))

    run.run([updater] * 4, seconds=3.0)
    assert not run.bad, run.bad
    ok = run.statuses["update"][200]
    assert ok >= 2, dict(run.statuses)
    version = int(c.get(f"/fhir/Patient/{pid}").get_json()["meta"]["versionId"])
    assert version == ok + 1, (version, dict(run.statuses))
