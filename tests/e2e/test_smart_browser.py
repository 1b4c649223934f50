"""Consent and Connected apps in a real browser at phone width: sign in, consent, revoke (the app's
tokens stop at once), and EHR launch of a registered app with the selected patient."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from carespace import close_app

pytestmark = pytest.mark.e2e
REDIRECT = "https://app.example.org/callback"
LAUNCH = "https://app.example.org/launch"
PASSWORD = "Secret#123"
BIRTH = "1975-03-04"


def _seed(live: Any) -> str:
    from carespace import create_app
    from fhir_server.access.context import AccessContext
    from smart_auth.accounts.models import PatientAccess, User
    from smart_auth.accounts.passwords import hash_password
    app = create_app({"INSTANCE_DIR": str(live.folder), "DATABASE_URL": live.env["CARESPACE_DATABASE_URL"],
                      "BASE_URL": live.url})
    svc = app.extensions["fhir_service"]
    pid = svc.create(AccessContext.system("test"), "Patient", {
        "resourceType": "Patient", "name": [{"family": "Phone", "given": ["Pat"]}], "birthDate": BIRTH}).stored.id
    with app.extensions["carespace.sessions"]() as s:
        user = User(email="phone@example.org", name="Pat Phone", birth_date=BIRTH, role="patient", status="active",
                    password_hash=hash_password(PASSWORD), fhir_user=f"Patient/{pid}")
        s.add(user)
        s.flush()
        s.add(PatientAccess(user_id=user.id, patient_id=pid, relationship="self", status="active"))
        s.commit()
    close_app(app)
    return str(pid)


def _capture(page: Any) -> list[str]:
    seen: list[str] = []
    page.route("https://app.example.org/**", lambda route: (seen.append(route.request.url),
                                                          route.fulfill(status=200, body="app")))
    return seen


def _wait(page: Any, seen: list[str]) -> str:
    for _ in range(600):
        if seen:
            return seen[-1]
        page.wait_for_timeout(50)
    raise AssertionError("the browser never reached the app")


def test_consent_and_connected_apps_at_phone_width(live_server, phone_page):
    page = phone_page
    page.set_default_timeout(60_000)  # the machine is shared: be patient, not flaky
    pid = _seed(live_server)
    reg = json.loads(live_server.cli("register-client", "--name", "Phone App", "--redirect-uri", REDIRECT,
                                     "--launch-uri", LAUNCH).stdout)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"response_type": "code", "client_id": reg["client_id"], "redirect_uri": REDIRECT, "state": "s-1",
              "scope": "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs",
              "aud": live_server.url + "/fhir", "code_challenge": challenge, "code_challenge_method": "S256"}
    seen = _capture(page)
    page.goto(live_server.url + "/oauth/authorize?" + urlencode(params))
    page.get_by_label("Email").fill("phone@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Date of birth").fill(BIRTH)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Phone App").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.get_by_label("Share demographics (name, birth date, contact details)").is_checked()
    page.get_by_label("Only Lab results").check()
    assert page.get_by_label("Let the app keep access when I am not using it").is_checked()
    page.get_by_role("button", name="Allow").click()
    q = {k: v[0] for k, v in parse_qs(urlsplit(_wait(page, seen)).query).items()}
    assert q["state"] == "s-1"
    tok = requests.post(live_server.url + "/oauth/token", data={
        "grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT,
        "code_verifier": verifier, "client_id": reg["client_id"]}, timeout=10).json()
    assert "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory" \
        in tok["scope"].split()
    auth = {"Authorization": f"Bearer {tok['access_token']}"}
    assert requests.get(f"{live_server.url}/fhir/Patient/{pid}", headers=auth, timeout=10).status_code == 200

    page.goto(live_server.url + "/apps")
    page.get_by_role("heading", name="Connected apps").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    seen.clear()
    page.get_by_role("button", name="Launch Phone App").click()
    launch = {k: v[0] for k, v in parse_qs(urlsplit(_wait(page, seen)).query).items()}
    assert launch["iss"] == live_server.url + "/fhir" and launch["launch"]
    page.wait_for_url(LAUNCH + "**")  # let the launch navigation finish before navigating away

    page.goto(live_server.url + "/apps")
    page.get_by_role("button", name="Revoke").click()
    page.get_by_text("No apps are connected.").wait_for()
    assert requests.get(f"{live_server.url}/fhir/Patient/{pid}", headers=auth, timeout=10).status_code == 401
    refresh = requests.post(live_server.url + "/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}, timeout=10)
    assert refresh.status_code == 400
