"""Who reaches the practice console: staff sign in on /login and land on /practice; patients, proxies and
anonymous visitors reach no console page or action; every console form needs its CSRF token; two-step
verification is encouraged and can be required."""
from __future__ import annotations

import re

import pytest

from tests.conftest import make_app
from tests.support import portal_data as pd
from tests.support import practice as pr


@pytest.fixture
def world(app, fhir):
    staff_uid, dr = pr.add_staff(app, fhir)
    pid = pr.patient(fhir, email="pat@example.com")
    patient_uid = pd.add_user(app, "pat@example.com", "Pat Portal", "1970-05-04", pid)
    proxy_uid = pd.add_proxy(app, fhir, pid, "kin@example.com", "Kim Kin", "1990-01-01")
    obs = fhir.create(pd.SYS, "Observation", {
        "resourceType": "Observation", "status": "final", "code": {"text": "Glucose"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "subject": {"reference": f"Patient/{pid}"}, "valueQuantity": {"value": 5, "unit": "mg/dL"}}).stored.id
    msg = fhir.create(pd.SYS, "Communication", {
        "resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
        "sender": {"reference": f"Patient/{pid}"}, "topic": {"text": "Question"},
        "category": [{"coding": [{"system": "urn:carespace:message-category", "code": "rx"}]}],
        "payload": [{"contentString": "Refill please"}]}).stored.id
    return {"staff": staff_uid, "patient": patient_uid, "proxy": proxy_uid, "pid": pid, "oid": obs, "mid": msg}


def console_routes(app, world):
    """Every console URL with its placeholders filled in: (method, path)."""
    fill = {"pid": world["pid"], "oid": world["oid"], "mid": world["mid"], "user_id": str(world["staff"])}
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/practice"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: fill[m.group(1)], rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


def test_staff_sign_in_on_login_and_land_on_the_console(app, client, world):
    token = pd.csrf(client, "/login")
    r = client.post("/login", data={"csrf_token": token, "email": "staff@example.com", "password": pd.PASSWORD,
                                    "birth_date": "1975-05-14"})
    assert r.status_code == 302 and r.headers["Location"] == "/practice"
    page = client.get("/practice")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for word in ("Patients", "Inbox", "New patient", "New message"):
        assert word in html
    assert client.get("/").headers["Location"] == "/practice"
    assert client.get("/login").headers["Location"] == "/practice"


def test_staff_get_no_patient_pages(app, client, world):
    pd.sign_in(app, client, world["staff"])
    for path in ("/health", "/messages", "/health/documents", "/access-log"):
        r = client.get(path)
        assert r.status_code == 403, path
        assert "Go to the practice console" in r.get_data(as_text=True)


@pytest.mark.parametrize("who", ["patient", "proxy"])
def test_patients_and_proxies_reach_no_console_page_or_action(app, client, fhir, world, who):
    pd.sign_in(app, client, world[who])
    token = pd.csrf(client, "/messages/compose")
    before = {t: len(pr.search(fhir, t)) for t in ("Patient", "Observation", "Communication", "DocumentReference")}
    routes = console_routes(app, world)
    assert len(routes) >= 15
    for method, path in routes:
        r = client.open(path, method=method, data={"csrf_token": token, "message": "x", "name": "A B",
                                                   "birth_date": "1970-01-01", "sex": "male", "email": "a@b.co",
                                                   "test": "2345-7", "value": "1", "date": "2024-01-01",
                                                   "state": "done", "reason": "x", "withdraw_reason": "x",
                                                   "category": "rx", "subject": "s"})
        assert r.status_code == 403, (method, path, r.status_code)
        assert "practice console is for the practice" in r.get_data(as_text=True)
    after = {t: len(pr.search(fhir, t)) for t in before}
    assert after == before
    assert fhir.read(pd.SYS, "Communication", world["mid"]).json()["meta"]["versionId"] == "1"
    from smart_auth.accounts.models import User
    with app.extensions["carespace.sessions"]() as db:
        assert db.get(User, world["staff"]).status == "active"  # the disable action did nothing


def test_anonymous_visitors_are_sent_to_sign_in(client, app, world):
    for method, path in console_routes(app, world):
        r = client.open(path, method=method)
        if method == "GET":
            assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=%2Fpractice"), path
        else:
            assert r.status_code in (302, 400), (method, path)  # no session: no CSRF token, sign in again


def test_every_console_form_needs_its_csrf_token(app, client, fhir, world):
    pd.sign_in(app, client, world["staff"])
    posts = [p for m, p in console_routes(app, world) if m == "POST"]
    assert len(posts) >= 9
    for path in posts:
        r = client.post(path, data={"message": "x", "name": "A B"})
        assert r.status_code == 400, path
        assert "form has expired" in r.get_data(as_text=True)
    # every form on the console pages carries it
    for path in ("/practice/patients/new", f"/practice/patients/{world['pid']}/results/new",
                 f"/practice/patients/{world['pid']}/documents/new", f"/practice/patients/{world['pid']}/messages/new",
                 f"/practice/messages/{world['mid']}", f"/practice/patients/{world['pid']}/results/{world['oid']}",
                 f"/practice/patients/{world['pid']}"):
        html = client.get(path).get_data(as_text=True)
        forms = re.findall(r'<form method="post".*?</form>', html, re.S)
        assert forms, path
        assert all('name="csrf_token"' in f for f in forms), path


def test_every_field_has_a_label(app, client, world):
    pd.sign_in(app, client, world["staff"])
    for path in ("/practice", "/practice/patients", "/practice/patients/new", "/practice/inbox",
                 "/practice/messages/new", f"/practice/patients/{world['pid']}/results/new",
                 f"/practice/patients/{world['pid']}/documents/new", f"/practice/patients/{world['pid']}/messages/new",
                 f"/practice/messages/{world['mid']}", f"/practice/patients/{world['pid']}/results/{world['oid']}"):
        html = client.get(path).get_data(as_text=True)
        ids = re.findall(r'<(?:input|select|textarea)(?![^>]*type="(?:hidden|submit)")[^>]*\bid="([^"]+)"', html)
        assert ids, path
        for i in ids:
            assert f'for="{i}"' in html, (path, i)


def test_two_step_verification_is_encouraged(app, client, fhir):
    uid, _ = pr.add_staff(app, fhir)
    pd.sign_in(app, client, uid)
    html = client.get("/practice").get_data(as_text=True)
    assert "turn on two-step verification" in html and 'href="/account"' in html
    other, _ = pr.add_staff(app, fhir, "Ned Nurse", "ned@example.com", totp_secret="JBSWY3DPEHPK3PXP")
    pd.sign_in(app, client, other)
    assert "turn on two-step verification" not in client.get("/practice").get_data(as_text=True)


def test_a_setting_requires_two_step_verification(backend, pg_cluster, tmp_path):
    from tests.conftest import _new_db_url
    app = make_app(_new_db_url(backend, pg_cluster, tmp_path), tmp_path / "i2", STAFF_REQUIRE_2FA=True)
    try:
        fhir = app.extensions["fhir_service"]
        client = app.test_client()
        uid, _ = pr.add_staff(app, fhir)
        pd.sign_in(app, client, uid)
        r = client.get("/practice/patients")
        assert r.status_code == 302 and r.headers["Location"] == "/account"
        assert "requires two-step verification" in client.get("/account").get_data(as_text=True)
        ok, _ = pr.add_staff(app, fhir, "Ned Nurse", "ned@example.com", totp_secret="JBSWY3DPEHPK3PXP")
        pd.sign_in(app, client, ok)
        assert client.get("/practice/patients").status_code == 200
    finally:
        from carespace import close_app
        close_app(app)


def test_require_two_step_setting_is_read_from_the_environment(tmp_path):
    from carespace import config
    assert config.load({"INSTANCE_DIR": str(tmp_path)}, env={})["STAFF_REQUIRE_2FA"] is False
    cfg = config.load({"INSTANCE_DIR": str(tmp_path)}, env={"CARESPACE_STAFF_REQUIRE_2FA": "on",
                                                            "CARESPACE_UPLOAD_MAX_MB": "2"})
    assert cfg["STAFF_REQUIRE_2FA"] is True and cfg["UPLOAD_MAX_BYTES"] == 2 * 1024 * 1024
    with pytest.raises(ValueError, match="CARESPACE_STAFF_REQUIRE_2FA"):
        config.load({"INSTANCE_DIR": str(tmp_path)}, env={"CARESPACE_STAFF_REQUIRE_2FA": "maybe"})
    with pytest.raises(ValueError, match="CARESPACE_UPLOAD_MAX_MB"):
        config.load({"INSTANCE_DIR": str(tmp_path)}, env={"CARESPACE_UPLOAD_MAX_MB": "0"})
