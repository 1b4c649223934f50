"""Invitation, registration, login, throttling, password reset and two-step verification rules."""
from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from fhir_server.access.context import AccessContext
from smart_auth.accounts import security
from smart_auth.accounts.models import AuthToken, PatientAccess, User
from tests.support.accounts import (
    PASSWORD,
    invite,
    last_link,
    login,
    patient_user,
    post,
    register,
    text,
    token_of,
)

BIRTH = "1980-02-03"


def test_invite_creates_patient_user_and_mail_without_health_data(app: Any, fhir: Any) -> None:
    pid, token = invite(app)
    patient = fhir.read(AccessContext.system("t"), "Patient", pid).json()
    assert patient["birthDate"] == BIRTH and patient["telecom"][0]["value"] == "pat@example.org"
    mail = app.extensions["mailer"].outbox()[-1]
    assert mail["subject"] == "Complete Your Registration for CareSpace"
    assert "Complete Your Registration" in mail["text"] and "Complete Your Registration" in mail["html"]
    assert "4 days" in mail["text"] and "resend" in mail["text"]
    with app.extensions["carespace.sessions"]() as s:
        user = s.execute(select(User)).scalar_one()
        assert (user.role, user.status, user.fhir_user) == ("patient", "invited", f"Patient/{pid}")
        tok = s.execute(select(AuthToken)).scalar_one()
        assert token not in tok.token_hash and tok.token_hash == security.hash_token(token)  # stored hashed


def test_each_weak_password_is_refused_with_its_rule_named(app: Any, client: Any) -> None:
    _pid, token = invite(app)
    page = text(client.get(f"/register?token={token}"))
    assert "Password" in page and "Confirm password" in page
    for weak, rule in [("Sh0rt!x", "at least 8 characters"), ("nouppercase1!", "an uppercase letter"),
                       ("NOLOWERCASE1!", "a lowercase letter"), ("NoNumbers!!", "a number"),
                       ("NoSpecial123", "a special character")]:
        resp = register(client, token, weak)
        assert resp.status_code == 422
        assert f"Your password needs {rule}." in text(resp)
    resp = register(client, token, PASSWORD, "Str0ng!pasz")
    assert resp.status_code == 422 and "do not match" in text(resp)
    resp = register(client, token)
    assert resp.status_code == 302 and resp.location.endswith("/login")
    assert "registration is complete" in text(client.get("/login"))


def test_link_is_single_use_and_expires_after_4_days(app: Any, client: Any) -> None:
    _pid, token = invite(app)
    app.config["CLOCK_OFFSET_S"] = 4 * 24 * 3600 - 60
    assert client.get(f"/register?token={token}").status_code == 200
    app.config["CLOCK_OFFSET_S"] = 4 * 24 * 3600 + 60
    resp = client.get(f"/register?token={token}")
    assert resp.status_code == 410
    assert "expired" in text(resp) and "ask our practice to resend" in text(resp)
    app.config["CLOCK_OFFSET_S"] = 0
    assert register(client, token).status_code == 302
    resp = client.get(f"/register?token={token}")
    assert resp.status_code == 410 and "already been used" in text(resp)
    assert client.get("/register?token=made-up").status_code == 404


def test_resend_makes_a_new_link_and_kills_the_old(app: Any, client: Any) -> None:
    pid, old = invite(app)
    r = app.extensions["accounts"].invitations.invite_patient(patient_id=pid)
    assert r.resent and not r.created_patient
    new = token_of(last_link(app, "pat@example.org"))
    assert new != old
    resp = client.get(f"/register?token={old}")
    assert resp.status_code == 410 and "newer one" in text(resp)
    assert register(client, new).status_code == 302


def test_login_needs_email_password_and_birth_date(app: Any, client: Any) -> None:
    pid = patient_user(app, client)
    post(client, "/logout", {}, page="/health")
    generic = "The email, password or date of birth is not correct."
    for email, birth, pw in [("pat@example.org", "1980-02-04", PASSWORD), ("pat@example.org", BIRTH, "Wr0ng!pass"),
                             ("nobody@example.org", BIRTH, PASSWORD)]:
        resp = login(client, email, birth, pw)
        assert resp.status_code == 401 and generic in text(resp)
    page = client.get("/login").get_data(as_text=True)
    assert 'type="date"' in page and ">Sign in<" in page and 'href="/forgot-password"' in page
    resp = login(client, "PAT@example.org ", BIRTH, next="//evil.example/x")
    assert resp.status_code == 302 and resp.location == "/health"
    post(client, "/logout", {}, page="/health")
    resp = login(client, "pat@example.org", BIRTH, next="/messages?x=1")
    assert resp.location == "/messages?x=1"
    with app.extensions["carespace.sessions"]() as s:
        access = s.execute(select(PatientAccess)).scalar_one()
        assert (access.relationship, access.status, access.patient_id) == ("self", "active", pid)


def test_login_is_throttled_per_account_and_address_with_growing_locks(app: Any, client: Any) -> None:
    """A browser that never signed in to the account: 5 failures lock it out from that address, each lock in a
    row twice as long (the owner's own browser is not locked out: test_hardening_session.py)."""
    patient_user(app, client)
    post(client, "/logout", {}, page="/health")
    other = app.test_client()
    for minutes in (1, 2):
        for _ in range(security.ACCOUNT_LIMIT):
            assert login(other, "pat@example.org", "1999-01-01").status_code == 401
        resp = login(other, "pat@example.org", BIRTH)  # from there even the right credentials wait
        unit = "minute" if minutes == 1 else "minutes"
        assert resp.status_code == 429 and f"try again in {minutes} {unit}" in text(resp)
        app.config["CLOCK_OFFSET_S"] = (app.config.get("CLOCK_OFFSET_S") or 0) + minutes * 60 + 1
    assert login(other, "pat@example.org", BIRTH).status_code == 302


def test_login_is_throttled_per_address(app: Any, client: Any) -> None:
    for i in range(security.IP_LIMIT):
        assert login(client, f"user{i}@example.org", BIRTH).status_code == 401
    resp = login(client, "another@example.org", BIRTH)
    assert resp.status_code == 429 and "try again in" in text(resp)


def test_forms_need_the_csrf_token(app: Any, client: Any) -> None:
    patient_user(app, client)
    assert client.post("/manage-users", data={"email": "x@example.org", "birth_date": BIRTH}).status_code == 400


def test_forgot_password_same_answer_and_reset_ends_other_sessions(app: Any, client: Any) -> None:
    patient_user(app, client)
    other = app.test_client()
    assert login(other, "pat@example.org", BIRTH).status_code == 302
    reset_users: list[int] = []
    app.extensions["on_password_reset"].append(reset_users.append)
    before = len(app.extensions["mailer"].outbox())
    answers = [text(post(client, "/forgot-password", {"email": e})) for e in ("pat@example.org", "who@example.org")]
    assert answers[0] == answers[1] and "If a CareSpace account uses that email address" in answers[0]
    mails = app.extensions["mailer"].outbox()[before:]
    assert [m["to"] for m in mails] == ["pat@example.org"] and "1 hour" in mails[0]["text"]
    token = token_of(mails[0]["links"][0])
    resp = post(client, "/reset-password", {"token": token, "password": "weakpass", "confirm": "weakpass"},
                page=f"/reset-password?token={token}")
    assert resp.status_code == 422 and "an uppercase letter" in text(resp)
    new = "N3w!password"
    resp = post(client, "/reset-password", {"token": token, "password": new, "confirm": new},
                page=f"/reset-password?token={token}")
    assert resp.status_code == 302 and resp.location.endswith("/login")
    assert len(reset_users) == 1
    assert other.get("/health").status_code == 302  # the other session ended
    assert client.get(f"/reset-password?token={token}").status_code == 410  # single use
    assert login(client, "pat@example.org", BIRTH).status_code == 401
    assert login(client, "pat@example.org", BIRTH, new).status_code == 302


def test_reset_link_expires_after_an_hour(app: Any, client: Any) -> None:
    patient_user(app, client)
    post(client, "/forgot-password", {"email": "pat@example.org"})
    token = token_of(last_link(app, "pat@example.org"))
    app.config["CLOCK_OFFSET_S"] = 3601
    resp = client.get(f"/reset-password?token={token}")
    assert resp.status_code == 410 and "expired" in text(resp)


def test_two_step_verification(app: Any, client: Any) -> None:
    patient_user(app, client)
    post(client, "/account/totp/setup", {}, page="/account")
    page = client.get("/account").get_data(as_text=True)
    secret = page.split('id="totp-secret">', 1)[1].split("<", 1)[0]
    assert "otpauth://totp/" in page
    assert post(client, "/account/totp/enable", {"code": "000000"}, page="/account").status_code == 422
    code = security.totp_code(secret, time.time())
    assert post(client, "/account/totp/enable", {"code": code}, page="/account").status_code == 302
    post(client, "/logout", {}, page="/health")
    resp = login(client, "pat@example.org", BIRTH)
    assert resp.location == "/login/verify"
    assert client.get("/health").status_code == 302  # not signed in yet
    assert post(client, "/login/verify", {"code": "111111"}).status_code == 401
    resp = post(client, "/login/verify", {"code": security.totp_code(secret, time.time())})
    assert resp.status_code == 302 and client.get("/health").status_code == 200


@pytest.mark.parametrize("args", [{"email": "bad"}, {"email": "x@example.org", "birth_date": "2999-01-01",
                                                      "name": "X Y"}])
def test_invite_input_errors(app: Any, args: dict[str, str]) -> None:
    from smart_auth.accounts.errors import InputError
    with pytest.raises(InputError):
        app.extensions["accounts"].invitations.invite_patient(**args)


def test_audit_events_for_account_actions(app: Any, client: Any, fhir: Any) -> None:
    patient_user(app, client)
    post(client, "/logout", {}, page="/health")
    login(client, "pat@example.org", "1999-09-09")
    _req, page = fhir.search(AccessContext.system("t"), "AuditEvent", [("_count", "100")])
    events = [fhir.read(AccessContext.system("t"), "AuditEvent", fid).json() for _t, fid, _v in page.matches]
    kinds = {(e["subtype"][0]["code"], e["outcome"]) for e in events if e["type"]["code"] == "110114"}
    assert {("invite", "0"), ("register", "0"), ("login", "0"), ("login", "4")} <= kinds
