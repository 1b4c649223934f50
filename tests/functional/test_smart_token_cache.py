"""The bearer-token cache: every revocation in this process is honoured on the next request even when the
token was just used (cached); changes the process cannot see expire with the cache's time to live."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import text, update

from smart_auth.accounts.models import PatientAccess, User
from smart_auth.oauth.token_cache import CHANGES
from tests.support.smart import basic

SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"


def _warm(smart: Any, pid: str, token: str) -> None:
    """Two reads: the second is answered from the cache."""
    cache = smart.app.extensions["smart.token_cache"]
    for _ in range(2):
        assert smart.get(f"Patient/{pid}", token).status_code == 200
    assert cache._entries, "the token was not cached"


def test_rfc7009_revocation_of_a_cached_token_is_honoured_at_once(smart: Any) -> None:
    pid = smart.patient()
    tok = smart.launch(smart.user(pid), SCOPE, kind="secret")
    _warm(smart, pid, tok["access_token"])
    r = smart.client.post("/oauth/revoke", data={"token": tok["access_token"]}, headers=basic(tok["_client_id"], tok["_secret"]))
    assert r.status_code == 200
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 401


def test_user_and_access_changes_through_any_session_empty_the_cache(smart: Any, app: Any) -> None:
    pid = smart.patient()
    helper = smart.user(smart.patient("Helper"))
    smart.proxy(helper, pid)
    smart.login(helper)
    client_id, _ = smart.register()
    tok = smart.exchange(client_id, smart.code(client_id, SCOPE, patient_id=pid)).get_json()
    _warm(smart, pid, tok["access_token"])
    with app.extensions["carespace.sessions"]() as s:  # a bulk UPDATE, as a script or another package might run
        s.execute(update(PatientAccess).where(PatientAccess.user_id == helper.id, PatientAccess.patient_id == pid)
                  .values(status="revoked"))
        s.commit()
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 401

    owner = smart.user(pid)
    own = smart.launch(owner, SCOPE)
    _warm(smart, pid, own["access_token"])
    with app.extensions["carespace.sessions"]() as s:  # an ORM change: the account is disabled
        s.get(User, owner.id).status = "disabled"
        s.commit()
    assert smart.get(f"Patient/{pid}", own["access_token"]).status_code == 401


def test_a_change_this_process_cannot_see_takes_effect_within_the_ttl(smart: Any, app: Any) -> None:
    pid = smart.patient()
    tok = smart.launch(smart.user(pid), SCOPE)
    cache = app.extensions["smart.token_cache"]
    cache.ttl = 0.5
    _warm(smart, pid, tok["access_token"])
    generation = CHANGES.generation
    with app.extensions["carespace.engine"].begin() as conn:  # as another worker process would: no ORM session
        conn.execute(text("UPDATE oauth_token SET revoked = :t"), {"t": True})
    assert CHANGES.generation == generation
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 200  # cached, within the TTL
    time.sleep(0.6)
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 401


def test_no_entry_outlives_its_token(smart: Any, app: Any, monkeypatch: Any) -> None:
    pid = smart.patient()
    tok = smart.launch(smart.user(pid), SCOPE)
    app.extensions["smart.token_cache"].ttl = 3 * 3600
    _warm(smart, pid, tok["access_token"])
    later = time.time() + tok["expires_in"] + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 401


def test_ttl_zero_switches_the_cache_off(smart: Any, app: Any) -> None:
    pid = smart.patient()
    tok = smart.launch(smart.user(pid), SCOPE)
    cache = app.extensions["smart.token_cache"]
    cache.ttl = 0
    for _ in range(3):
        assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 200
    assert not cache._entries
