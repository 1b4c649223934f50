"""Issue 16, items 11 and 13: sign-out ends the session on the server, nobody can lock the owner out, and
two-step verification holds (codes once, the off form throttled, the secret being set up never in the cookie)."""
from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from carespace import close_app
from smart_auth.accounts import security
from smart_auth.accounts.models import SignIn, User
from tests.conftest import make_app
from tests.support.accounts import PASSWORD, last_link, login, patient_user, post, text, token_of

BIRTH = "1980-02-03"
EMAIL = "pat@example.org"
COOKIE = "carespace_session"


def _copy(client: Any) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return str(cookie.value)


def _with_cookie(app: Any, value: str) -> Any:
    thief = app.test_client()
    thief.set_cookie(COOKIE, value)
    return thief


@pytest.fixture
def second_process(app: Any) -> Iterator[Any]:
    """Another server process on the same database and instance (as `carespace serve` runs several)."""
    other = make_app(app.config["DATABASE_URL"], app.config["INSTANCE_DIR"])
    yield other
    close_app(other)


# ---- item 11: sign-out ends the session --------------------------------------------------------------
def test_a_cookie_copied_before_sign_out_no_longer_opens_health(app: Any, client: Any) -> None:
    patient_user(app, client)
    copied = _copy(client)
    assert _with_cookie(app, copied).get("/health").status_code == 200  # the copy works while signed in
    resp = post(client, "/logout", {}, page="/health")
    assert resp.status_code == 302 and resp.location == "/login"
    resp = _with_cookie(app, copied).get("/health")
    assert resp.status_code == 302 and resp.location.startswith("/login?")
    assert client.get("/health").status_code == 302


def test_sign_out_holds_on_every_server_process(app: Any, client: Any, second_process: Any) -> None:
    patient_user(app, client)
    copied = _copy(client)
    assert _with_cookie(second_process, copied).get("/health").status_code == 200
    assert post(client, "/logout", {}, page="/health").status_code == 302
    assert _with_cookie(second_process, copied).get("/health").status_code == 302


def test_a_password_reset_signs_out_everywhere(app: Any, client: Any) -> None:
    patient_user(app, client)
    laptop = app.test_client()
    assert login(laptop, EMAIL, BIRTH).status_code == 302
    copies = [_copy(client), _copy(laptop)]
    post(app.test_client(), "/forgot-password", {"email": EMAIL})
    token = token_of(last_link(app, EMAIL))
    resp = post(app.test_client(), f"/reset-password?token={token}",
                {"token": token, "password": "N3w!passwd", "confirm": "N3w!passwd"}, page=f"/reset-password?token={token}")
    assert resp.status_code == 302
    assert [_with_cookie(app, c).get("/health").status_code for c in copies] == [302, 302]
    with app.extensions["carespace.sessions"]() as s:
        assert s.execute(select(SignIn)).scalars().all() == []


def test_disabling_a_staff_account_ends_its_sessions_rows(app: Any, client: Any) -> None:
    from smart_auth.accounts import staff
    patient_user(app, client)
    with app.extensions["carespace.sessions"]() as s:
        uid = s.execute(select(User.id)).scalar_one()
        s.execute(User.__table__.update().values(role="staff", fhir_user="Practitioner/x"))
        s.commit()
        assert len(s.execute(select(SignIn)).scalars().all()) == 1
    staff.disable(app.extensions["accounts"], uid, uid + 1, (None, "admin"))
    with app.extensions["carespace.sessions"]() as s:
        assert s.execute(select(SignIn)).scalars().all() == []


# ---- item 13: nobody locks the owner out ---------------------------------------------------------------
def _from(app: Any, address: str) -> Any:
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = address
    return c


def test_wrong_passwords_from_elsewhere_do_not_lock_the_owner_out(app: Any, client: Any) -> None:
    patient_user(app, client)
    post(client, "/logout", {}, page="/health")
    attacker = _from(app, "203.0.113.7")
    for _ in range(security.ACCOUNT_LIMIT + 3):
        assert login(attacker, EMAIL, BIRTH, "Wr0ng!pass").status_code in (401, 429)
    assert login(attacker, EMAIL, BIRTH).status_code == 429  # the guesser's address waits, right password or not
    assert login(client, EMAIL, BIRTH).status_code == 302  # the owner's browser signs in
    assert login(app.test_client(), EMAIL, BIRTH).status_code == 302  # and a new browser from the owner's address


def test_a_spread_attack_pauses_new_browsers_only_and_mails_the_owner(app: Any, client: Any) -> None:
    patient_user(app, client)
    post(client, "/logout", {}, page="/health")
    before = len(app.extensions["mailer"].outbox())
    for i in range(security.SPREAD_LIMIT):
        assert login(_from(app, f"198.51.100.{i + 1}"), EMAIL, BIRTH, "Wr0ng!pass").status_code == 401
    resp = login(_from(app, "192.0.2.1"), EMAIL, BIRTH)  # a browser that never signed in to the account
    assert resp.status_code == 429 and "try again in 1 minute" in text(resp)
    assert login(client, EMAIL, BIRTH).status_code == 302  # the browser the owner signed in with before
    notices = [m for m in app.extensions["mailer"].outbox()[before:] if m["to"] == EMAIL]
    assert [m["subject"] for m in notices] == ["Sign-in attempts on your CareSpace account"]  # once, not per lock
    assert "/forgot-password" in notices[0]["links"][0]


def test_the_owners_browser_failing_falls_back_to_the_shared_limits(app: Any, client: Any) -> None:
    """The device cookie is no free pass: after 5 failures it counts like any other browser."""
    patient_user(app, client)
    post(client, "/logout", {}, page="/health")
    for _ in range(security.ACCOUNT_LIMIT * 2):
        login(client, EMAIL, BIRTH, "Wr0ng!pass")
    assert login(client, EMAIL, BIRTH).status_code == 429


def test_a_device_cookie_is_for_its_own_account(app: Any, client: Any) -> None:
    patient_user(app, client)
    cookie = client.get_cookie("carespace_device", path="/login")
    assert cookie is not None and cookie.http_only
    key = str(app.config["SECRET_KEY"]).encode()
    assert security.device_nonce(key, cookie.value, EMAIL) is not None
    assert security.device_nonce(key, cookie.value, "other@example.org") is None
    assert security.device_nonce(b"another instance", cookie.value, EMAIL) is None


# ---- item 13: two-step verification -------------------------------------------------------------------------
def _totp_on(app: Any, client: Any) -> str:
    patient_user(app, client)
    post(client, "/account/totp/setup", {}, page="/account")
    page = client.get("/account").get_data(as_text=True)
    secret = page.split('id="totp-secret">', 1)[1].split("<", 1)[0]
    assert post(client, "/account/totp/enable", {"code": security.totp_code(secret, time.time())},
                page="/account").status_code == 302
    return secret


def test_a_two_step_code_signs_in_once(app: Any, client: Any) -> None:
    secret = _totp_on(app, client)
    post(client, "/logout", {}, page="/health")
    now = time.time()
    code = security.totp_code(secret, now + 30)  # the next step's code: accepted once (clock drift)
    assert login(client, EMAIL, BIRTH).location == "/login/verify"
    assert post(client, "/login/verify", {"code": code}).status_code == 302
    post(client, "/logout", {}, page="/health")
    assert login(client, EMAIL, BIRTH).location == "/login/verify"
    resp = post(client, "/login/verify", {"code": code})
    assert resp.status_code == 401 and "not correct" in text(resp)
    resp = post(client, "/login/verify", {"code": security.totp_code(secret, now)})  # an earlier step: also spent
    assert resp.status_code == 401
    assert client.get("/health").status_code == 302


def test_the_two_step_off_form_is_throttled(app: Any, client: Any) -> None:
    _totp_on(app, client)
    for _ in range(5):
        assert post(client, "/account/totp/disable", {"password": "Wr0ng!pass"}, page="/account").status_code == 422
    resp = post(client, "/account/totp/disable", {"password": PASSWORD}, page="/account")
    assert resp.status_code == 429 and "try again in 1 minute" in text(resp)
    with app.extensions["carespace.sessions"]() as s:
        assert s.execute(select(User.totp_secret)).scalar_one() is not None
    app.config["CLOCK_OFFSET_S"] = 61
    assert post(client, "/account/totp/disable", {"password": PASSWORD}, page="/account").status_code == 302


def _session_data(client: Any) -> str:
    """The session cookie's payload as the browser holds it (signed, not encrypted)."""
    raw = _copy(client)
    compressed = raw.startswith(".")
    body = raw.lstrip(".").split(".", 1)[0]
    data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return (zlib.decompress(data) if compressed else data).decode()


def test_the_secret_being_set_up_is_not_in_the_session_cookie(app: Any, client: Any) -> None:
    patient_user(app, client)
    post(client, "/account/totp/setup", {}, page="/account")
    page = client.get("/account").get_data(as_text=True)
    secret = page.split('id="totp-secret">', 1)[1].split("<", 1)[0]
    assert len(secret) == 32
    json.loads(_session_data(client))  # readable by anyone holding the cookie ...
    assert secret not in _session_data(client)  # ... so the secret is not there
    with app.extensions["carespace.sessions"]() as s:
        pending = s.execute(select(User.totp_pending)).scalar_one()
    assert pending and secret not in pending  # kept on the account, sealed with the instance key
    other = app.test_client()  # the same secret on the next page load, from the account row
    assert login(other, EMAIL, BIRTH).status_code == 302
    assert f'id="totp-secret">{secret}<' in other.get("/account").get_data(as_text=True)
