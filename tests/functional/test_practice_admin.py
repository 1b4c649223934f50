"""Staff administration for administrators: invite and disable staff, register SMART apps (what
`carespace register-client` does), and the practice's audit trail filtered by person, patient, action, date."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from smart_auth.accounts import staff as staff_admin
from smart_auth.accounts.models import User
from smart_auth.oauth.models import OAuthClient
from tests.support import portal_data as pd
from tests.support import practice as pr
from tests.support.accounts import last_link, token_of

ADMIN_PAGES = ["/practice/admin", "/practice/admin/apps", "/practice/admin/audit"]


@pytest.fixture
def world(app, client, fhir):
    admin_uid, admin_dr = pr.add_staff(app, fhir, "Maya Chen", "maya@example.com")
    staff_admin.make_admin(app.extensions["accounts"], f"Practitioner/{admin_dr}")
    nurse_uid, nurse_dr = pr.add_staff(app, fhir, "Ned Nurse", "ned@example.com")
    pd.sign_in(app, client, admin_uid)
    return {"admin": admin_uid, "admin_dr": admin_dr, "nurse": nurse_uid, "nurse_dr": nurse_dr}


def test_only_administrators_reach_administration(app, fhir, world):
    nurse = app.test_client()
    pd.sign_in(app, nurse, world["nurse"])
    assert "Administration" not in nurse.get("/practice").get_data(as_text=True)
    tok = pr.token(nurse)
    for path in ADMIN_PAGES:
        r = nurse.get(path)
        assert r.status_code == 403 and "Only administrators of the practice" in r.get_data(as_text=True)
    for path in ("/practice/admin/staff", f"/practice/admin/staff/{world['admin']}/disable", "/practice/admin/apps"):
        assert nurse.post(path, data={"csrf_token": tok, "email": "x@example.com", "name": "X Y"}).status_code == 403
    with app.extensions["carespace.sessions"]() as dbs:
        assert dbs.execute(select(User).where(User.email == "x@example.com")).first() is None
        assert dbs.get(User, world["admin"]).status == "active"


def test_admin_pages_have_labels_and_csrf(client, world):
    assert 'href="/practice/admin"' in client.get("/practice").get_data(as_text=True)
    for path in ADMIN_PAGES:
        html = client.get(path).get_data(as_text=True)
        assert client.get(path).status_code == 200
        for i in re.findall(r'<(?:input|select|textarea)(?![^>]*type="(?:hidden|submit)")[^>]*\bid="([^"]+)"', html):
            assert f'for="{i}"' in html, (path, i)
        for form in re.findall(r'<form method="post".*?</form>', html, re.S):
            assert 'name="csrf_token"' in form


def test_invite_staff_as_administrator(app, client, fhir, world):
    r = client.post("/practice/admin/staff", data={"csrf_token": pr.token(client, "/practice/admin"),
                                                   "name": "Ava Admin", "email": "ava@example.com", "admin": "1"})
    assert r.status_code == 302
    html = client.get("/practice/admin").get_data(as_text=True)
    assert "The staff invite was sent to ava@example.com" in html and "Invited, not registered" in html
    token = token_of(last_link(app, "ava@example.com"))
    with app.extensions["carespace.sessions"]() as dbs:
        ava = dbs.execute(select(User).where(User.email == "ava@example.com")).scalar_one()
        assert ava.role == "staff" and ava.fhir_user.startswith("Practitioner/")
    assert staff_admin.is_admin(app.extensions["accounts"], ava.fhir_user)
    anon = app.test_client()
    r = anon.post("/register", data={"csrf_token": pd.csrf(anon, f"/register?token={token}"), "token": token,
                                     "password": pd.PASSWORD, "confirm": pd.PASSWORD, "birth_date": "1980-01-01"})
    assert r.status_code == 302
    r = anon.post("/login", data={"csrf_token": pd.csrf(anon, "/login"), "email": "ava@example.com",
                                  "password": pd.PASSWORD, "birth_date": "1980-01-01"})
    assert r.headers["Location"] == "/practice" and anon.get("/practice/admin").status_code == 200
    bad = client.post("/practice/admin/staff", data={"csrf_token": pr.token(client, "/practice/admin"),
                                                     "name": "", "email": "nope"})
    assert bad.status_code == 422 and "valid email" in bad.get_data(as_text=True)


def test_disable_staff_ends_their_session_at_once(app, client, fhir, world):
    nurse = app.test_client()
    pd.sign_in(app, nurse, world["nurse"])
    assert nurse.get("/practice/inbox").status_code == 200
    r = client.post(f"/practice/admin/staff/{world['nurse']}/disable",
                    data={"csrf_token": pr.token(client, "/practice/admin")})
    assert r.status_code == 302
    assert "can no longer sign in" in client.get("/practice/admin").get_data(as_text=True)
    again = nurse.get("/practice/inbox")
    assert again.status_code == 302 and again.headers["Location"].startswith("/login")
    r = nurse.post("/login", data={"csrf_token": pd.csrf(nurse, "/login"), "email": "ned@example.com",
                                   "password": pd.PASSWORD, "birth_date": "1975-05-14"})
    assert r.status_code == 401
    own = client.post(f"/practice/admin/staff/{world['admin']}/disable",
                      data={"csrf_token": pr.token(client, "/practice/admin")})
    assert own.status_code == 422 and "cannot disable your own account" in own.get_data(as_text=True)
    events = [e for e in pr.search(fhir, "AuditEvent") if e["subtype"][0]["code"] == "disable"]
    assert events and events[0]["agent"][0]["who"]["display"] == "Maya Chen"


def test_register_smart_apps(app, client, world):
    tok = pr.token(client, "/practice/admin/apps")
    r = client.post("/practice/admin/apps", data={"csrf_token": tok, "name": "Health Diary", "grant": "authorization_code",
                                                  "kind": "public", "redirect_uris": "https://diary.example/cb\nhttps://diary.example/cb2",
                                                  "scope": "launch/patient patient/*.rs openid fhirUser"})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    client_id = re.search(r"<dt>client_id</dt><dd><code>([^<]+)</code>", html).group(1)
    assert "client_secret" not in html
    r = client.post("/practice/admin/apps", data={"csrf_token": tok, "name": "Lab Feed", "grant": "client_credentials",
                                                  "kind": "secret", "scope": "system/Observation.cruds"})
    secret = re.search(r"<dt>client_secret</dt><dd><code>([^<]+)</code>", r.get_data(as_text=True)).group(1)
    with app.extensions["carespace.sessions"]() as dbs:
        diary = dbs.execute(select(OAuthClient).where(OAuthClient.client_id == client_id)).scalar_one()
        assert diary.auth_method == "none" and diary.redirect_uris.split() == ["https://diary.example/cb",
                                                                              "https://diary.example/cb2"]
        feed = dbs.execute(select(OAuthClient).where(OAuthClient.name == "Lab Feed")).scalar_one()
        assert feed.grant_types == "client_credentials" and feed.secret_hash and secret not in feed.secret_hash
    for form, message in (({"name": "No Redirect", "grant": "authorization_code", "kind": "public"}, "redirect-uri"),
                          ({"name": "Bad Scope", "grant": "authorization_code", "kind": "public",
                            "redirect_uris": "https://x.example/cb", "scope": "everything"}, "not a SMART scope"),
                          ({"name": "Backend", "grant": "client_credentials", "kind": "public"}, "backend service"),
                          ({"name": "", "redirect_uris": "https://x.example/cb"}, "needs a name")):
        bad = client.post("/practice/admin/apps", data={"csrf_token": tok, **form})
        assert bad.status_code == 422 and message in bad.get_data(as_text=True), form
    with app.extensions["carespace.sessions"]() as dbs:
        assert len(dbs.execute(select(OAuthClient)).all()) == 2


def test_audit_trail_filters(app, client, fhir, world):
    alex = pr.patient(fhir, "Alex", "Morgan", email="alex@example.com")
    sam = pr.patient(fhir, "Sam", "Lee", email="sam@example.com")
    nurse = app.test_client()
    pd.sign_in(app, nurse, world["nurse"])
    nurse.get(f"/practice/patients/{alex}")
    client.get(f"/practice/patients/{sam}")
    client.post(f"/practice/patients/{sam}/invite", data={"csrf_token": pr.token(client, f"/practice/patients/{sam}")})
    app.extensions["audit_log"].flush()

    def rows(**f):
        html = client.get("/practice/admin/audit", query_string=f).get_data(as_text=True)
        return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "|", r)) for r in re.findall(r"<tr><td.*?</tr>", html, re.S)]

    everything = rows()
    assert any("Ned Nurse" in r and "Viewed the personal details" in r and "Alex Morgan" in r for r in everything)
    by_nurse = rows(person=f"Practitioner/{world['nurse_dr']}")
    assert by_nurse and all("Ned Nurse" in r for r in by_nurse)
    for_sam = rows(patient="Sam Lee")
    assert for_sam and all("Sam Lee" in r for r in for_sam) and any("Invitation" in r for r in for_sam)
    invites = rows(action="invite")
    assert invites and all("Invitation" in r for r in invites)
    assert rows(**{"from": "2999-01-01"}) == []
    assert rows(to="1999-01-01") == []
    assert "No patient is called" in client.get("/practice/admin/audit?patient=Nobody").get_data(as_text=True)
    bad = client.get("/practice/admin/audit?action=explode")
    assert bad.status_code == 422 and "Choose an action" in bad.get_data(as_text=True)
    assert client.get("/practice/admin/audit?from=yesterday").status_code == 422
