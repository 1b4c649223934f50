"""End to end: the PyPI `fhirclient` library completes a standalone launch against a running
CareSpace (login and consent in headless Chromium) and reads the patient's Observations."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from carespace import close_app
from tests.conftest import synthea_files

pytestmark = pytest.mark.e2e

REDIRECT = "https://app.example.org/callback"
PASSWORD = "Secret#123"


def _seed(live: Any) -> tuple[str, str]:
    """Import one Synthea patient and give them a CareSpace login; returns (patient id, email)."""
    bundle = min(synthea_files(), key=lambda p: p.stat().st_size)
    live.cli("import", str(bundle))
    from carespace import create_app
    from fhir_server.access.context import AccessContext
    from smart_auth.accounts.models import PatientAccess, User
    from smart_auth.accounts.passwords import hash_password
    app = create_app({"INSTANCE_DIR": str(live.folder), "DATABASE_URL": live.env["CARESPACE_DATABASE_URL"],
                      "BASE_URL": live.url})
    _, page = app.extensions["fhir_service"].search(AccessContext.system("test"), "Patient", [])
    _, pid, text = page.matches[0]
    birth = json.loads(text)["birthDate"]
    email = "synthea.patient@example.org"
    with app.extensions["carespace.sessions"]() as s:
        user = User(email=email, name="Synthea Patient", birth_date=birth, role="patient", status="active",
                    password_hash=hash_password(PASSWORD), fhir_user=f"Patient/{pid}")
        s.add(user)
        s.flush()
        s.add(PatientAccess(user_id=user.id, patient_id=pid, relationship="self", status="active"))
        s.commit()
    close_app(app)
    return pid, f"{email}|{birth}"


def test_python_fhirclient_standalone_launch_reads_observations(live_server, page):
    from fhirclient import client
    from fhirclient.models.observation import Observation

    pid, login = _seed(live_server)
    email, birth = login.split("|")
    reg = json.loads(live_server.cli("register-client", "--name", "Python fhirclient", "--redirect-uri", REDIRECT,
                                     "--public").stdout)
    smart = client.FHIRClient(settings={"app_id": reg["client_id"], "api_base": live_server.url + "/fhir",
                                        "redirect_uri": REDIRECT,
                                        "scope": "openid fhirUser offline_access patient/*.rs"})
    smart.prepare()  # discovery through /metadata's oauth-uris extension
    url = smart.authorize_url
    assert url.startswith(live_server.url + "/oauth/authorize?") and "code_challenge=" in url

    page.set_default_timeout(60_000)  # the machine is shared: be patient, not flaky
    seen: list[str] = []
    page.route("https://app.example.org/**", lambda route: (seen.append(route.request.url),
                                                          route.fulfill(status=200, body="done")))
    page.goto(url)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Date of birth").fill(birth)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Python fhirclient").wait_for()
    assert page.get_by_label("Let the app keep access when I am not using it").is_checked()
    page.get_by_role("button", name="Allow").click()
    deadline = time.time() + 30
    while not seen and time.time() < deadline:
        page.wait_for_timeout(100)
    assert seen and seen[0].startswith(REDIRECT + "?")

    smart.handle_callback(seen[0])
    assert smart.ready and smart.patient_id == pid
    assert smart.patient.id == pid
    observations = list(Observation.where(struct={"patient": pid, "_count": "50"}).perform_resources_iter(
        smart.server))
    assert observations and all(o.subject.reference.endswith(pid) for o in observations)

    # without a token the FHIR API answers 401
    assert requests.get(f"{live_server.url}/fhir/Observation?patient={pid}", timeout=10).status_code == 401
    # the consent is listed under Connected apps with its last use
    page.goto(live_server.url + "/apps")
    assert page.get_by_role("heading", name="Python fhirclient").is_visible()
    assert "Not used yet" not in page.content()
