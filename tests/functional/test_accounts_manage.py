"""Manage Users: grant by email + birth date, the invitee registers, resend, revoke at once; CLI commands."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from fhir_server.access.context import AccessContext
from smart_auth.accounts.models import PatientAccess
from tests.support.accounts import (
    PASSWORD,
    last_link,
    login,
    patient_user,
    post,
    register,
    text,
    token_of,
)

KID = "kid@example.org"
KID_BIRTH = "2001-05-06"


def grant(client: Any, email: str = KID, birth: str = KID_BIRTH) -> Any:
    return post(client, "/manage-users", {"email": email, "birth_date": birth})


def access_rows(app: Any) -> list[PatientAccess]:
    with app.extensions["carespace.sessions"]() as s:
        return list(s.execute(select(PatientAccess).where(PatientAccess.relationship == "proxy")
                              .order_by(PatientAccess.id)).scalars())


def test_grant_creates_related_person_and_invite(app: Any, client: Any, fhir: Any) -> None:
    pid = patient_user(app, client)
    page = text(client.get("/manage-users"))
    assert "Manage Users" in page and "Email" in page and "Date of birth" in page
    resp = grant(client)
    assert resp.status_code == 302
    [row] = access_rows(app)
    assert (row.status, row.invited_email, row.invited_birth_date, row.user_id) == ("pending", KID, KID_BIRTH, None)
    rp = fhir.read(AccessContext.system("t"), "RelatedPerson", row.related_person_id).json()
    assert rp["active"] is True and rp["patient"]["reference"] == f"Patient/{pid}" and rp["period"]["start"]
    mail = app.extensions["mailer"].outbox()[-1]
    assert mail["to"] == KID and "Complete Your Registration" in mail["text"] and "Pat Doe" in mail["text"]
    page = text(client.get("/manage-users"))
    assert KID in page and "Resend invite" in page and "Revoke access" in page
    assert grant(client).status_code == 422  # the same person twice
    assert grant(client, "other@example.org").status_code == 302  # any number of users
    assert grant(client, "pat@example.org").status_code == 422  # not yourself
    assert grant(client, "x@example.org", "not-a-date").status_code == 422


def test_proxy_registers_with_matching_birth_date_and_sees_the_patient(app: Any, client: Any) -> None:
    patient_user(app, client)
    grant(client)
    token = token_of(last_link(app, KID))
    proxy = app.test_client()
    page = text(proxy.get(f"/register?token={token}"))
    assert "Date of birth" in page and "Full name" in page
    resp = register(proxy, token, birth_date="2001-05-07", name="Kid Doe")
    assert resp.status_code == 422 and "does not match" in text(resp)
    assert register(proxy, token, birth_date=KID_BIRTH, name="Kid Doe").status_code == 302
    assert login(proxy, KID, KID_BIRTH).status_code == 302
    health = text(proxy.get("/health"))
    assert "Viewing the record of Pat Doe" in health
    assert "Only Pat Doe can manage" in text(proxy.get("/manage-users"))
    [row] = access_rows(app)
    assert row.status == "active" and row.user_id is not None
    assert "Has access" in text(client.get("/manage-users"))


def test_resend_kills_the_old_link(app: Any, client: Any) -> None:
    patient_user(app, client)
    grant(client)
    old = token_of(last_link(app, KID))
    [row] = access_rows(app)
    assert post(client, f"/manage-users/{row.id}/resend", {}, page="/manage-users").status_code == 302
    new = token_of(last_link(app, KID))
    assert new != old
    assert app.test_client().get(f"/register?token={old}").status_code == 410
    assert app.test_client().get(f"/register?token={new}").status_code == 200


def test_revoke_takes_effect_at_once(app: Any, client: Any, fhir: Any) -> None:
    pid = patient_user(app, client)
    grant(client)
    token = token_of(last_link(app, KID))
    proxy = app.test_client()
    register(proxy, token, birth_date=KID_BIRTH, name="Kid Doe")
    login(proxy, KID, KID_BIRTH)
    assert proxy.get("/health").status_code == 200
    revoked: list[tuple[int, str]] = []
    app.extensions["on_access_revoked"].append(lambda uid, p: revoked.append((uid, p)))
    [row] = access_rows(app)
    resp = post(client, f"/manage-users/{row.id}/revoke", {}, page="/manage-users")
    assert resp.status_code == 302
    assert revoked == [(row.user_id, pid)]
    assert proxy.get("/health").status_code == 403  # the proxy's open session, next request
    [row] = access_rows(app)
    assert row.status == "revoked" and row.revoked_at is not None
    rp = fhir.read(AccessContext.system("t"), "RelatedPerson", row.related_person_id).json()
    assert rp["active"] is False and rp["period"]["end"]
    page = text(client.get("/manage-users"))
    assert f"Access revoked: {KID}" in page and "Nobody else has access" in page
    _req, found = fhir.search(AccessContext.system("t"), "AuditEvent", [("_count", "200")])
    events = [fhir.read(AccessContext.system("t"), "AuditEvent", fid).json() for _t, fid, _v in found.matches]
    assert {"grant", "revoke"} <= {e["subtype"][0]["code"] for e in events}


def test_revoking_a_pending_invite_kills_its_link(app: Any, client: Any) -> None:
    patient_user(app, client)
    grant(client)
    token = token_of(last_link(app, KID))
    [row] = access_rows(app)
    post(client, f"/manage-users/{row.id}/revoke", {}, page="/manage-users")
    assert app.test_client().get(f"/register?token={token}").status_code == 410


def test_existing_patient_as_proxy_switches_between_records(app: Any, client: Any) -> None:
    patient_user(app, client)
    other = app.test_client()
    patient_user(app, other, KID, KID_BIRTH, "Kid Doe")
    grant(client)
    token = token_of(last_link(app, KID))
    page = text(other.get(f"/register?token={token}"))
    assert "already have a CareSpace account" in page and "Confirm password" not in page
    assert register(other, token, password="", birth_date=KID_BIRTH).status_code == 302
    login(other, KID, KID_BIRTH)
    page = other.get("/health").get_data(as_text=True)
    assert "Switch to" in page and "Pat Doe" in page and "Kid Doe" in page


def test_only_the_owner_manages_other_patients_access(app: Any, client: Any) -> None:
    patient_user(app, client)
    grant(client)
    [row] = access_rows(app)
    stranger = app.test_client()
    patient_user(app, stranger, "s@example.org", "1970-01-01", "Sam Stranger")
    resp = post(stranger, f"/manage-users/{row.id}/revoke", {}, page="/manage-users")
    assert resp.status_code == 422
    assert access_rows(app)[0].status == "pending"


def test_cli_invites_outbox_and_demo(app: Any, capsys: Any, monkeypatch: Any) -> None:
    from carespace import commands_accounts
    from carespace.cli import main
    monkeypatch.setattr(commands_accounts, "_app", lambda: app)
    assert main(["invite-patient", "--email", "cli@example.org", "--birth-date", "1975-01-02",
                 "--name", "Cli Patient"]) == 0
    assert "sent the registration invite to cli@example.org" in capsys.readouterr().out
    assert main(["invite-patient", "--email", "cli@example.org", "--birth-date", "1975-01-02",
                 "--name", "Cli Patient"]) == 0
    assert "re-sent" in capsys.readouterr().out
    assert main(["invite-patient", "--patient-id", "missing"]) == 1
    assert "no Patient with id missing" in capsys.readouterr().err
    assert main(["invite-staff", "--email", "doc@example.org", "--name", "Doc Tor"]) == 0
    assert main(["outbox", "--last", "2"]) == 0
    out = capsys.readouterr().out
    assert "to: doc@example.org" in out and "queued" in out and "link: http://localhost/register?token=" in out
    assert main(["demo"]) == 0 and main(["demo"]) == 0
    out = capsys.readouterr().out
    assert out.count("alex.morgan@example.com") == 2 and "1968-03-21" in out
    c = app.test_client()
    for email, birth in [("alex.morgan@example.com", "1968-03-21"), ("jordan.morgan@example.com", "1995-07-09")]:
        assert login(c, email, birth, "CareSpace-Demo1!").status_code == 302
        assert "Viewing the record of Alex Morgan" in text(c.get("/health"))
        post(c, "/logout", {}, page="/health")
    assert login(c, "dr.chen@example.com", "1975-05-14", "CareSpace-Demo1!").status_code == 302


def test_staff_invite_registers_with_birth_date(app: Any) -> None:
    r = app.extensions["accounts"].invitations.invite_staff("nurse@example.org", "Nina Nurse")
    token = token_of(last_link(app, "nurse@example.org"))
    c = app.test_client()
    assert "Date of birth" in text(c.get(f"/register?token={token}"))
    assert register(c, token, birth_date="1985-01-01").status_code == 302
    assert login(c, "nurse@example.org", "1985-01-01").status_code == 302
    with app.extensions["carespace.sessions"]() as s:
        from smart_auth.accounts.models import User
        user = s.get(User, r.user_id)
        assert user is not None and user.role == "staff" and (user.fhir_user or "").startswith("Practitioner/")


def test_idle_warning_and_session_ping(app: Any, client: Any) -> None:
    patient_user(app, client)
    page = client.get("/health").get_data(as_text=True)
    assert 'id="idle-warning"' in page and "Stay signed in" in page
    assert client.get("/session/ping").get_json()["signed_in"] is True
    app.config["IDLE_TIMEOUT_S"] = -1
    assert client.get("/session/ping").get_json()["signed_in"] is False
    assert client.get("/health").status_code == 302
    assert PASSWORD
