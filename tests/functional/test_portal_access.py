"""Who sees what: proxies, revoked access, the Access log, Resources from configuration, error pages."""
from __future__ import annotations

import time

import pytest

from carespace.demo_clinical import add_clinical_demo
from tests.support import portal_data as pd

PAGES = ["/health", "/health/documents", "/messages", "/access-log", "/messages/compose"]


@pytest.fixture
def family(app, fhir):
    pid = pd.add_patient(fhir, "Pat", "Portal")
    add_clinical_demo(fhir, pid)
    patient = pd.add_user(app, "pat@example.com", "Pat Portal", "1970-05-04", pid)
    proxy = pd.add_proxy(app, fhir, pid, "kim@example.com", "Kim Carer", "1975-01-01")
    return pid, patient, proxy


def test_proxy_sees_the_record_and_whose_it_is_then_nothing_once_revoked(app, client, fhir, family):
    pid, _, proxy = family
    pd.sign_in(app, client, proxy)
    html = client.get("/health").get_data(as_text=True)
    assert "Viewing the record of <strong>Pat Portal</strong> (shared with you)" in html
    assert "Chest X-ray" in html and "Potassium" in html
    doc_id = html.split('href="/health/documents/', 2)[2].split('"')[0]
    inbox = client.get("/messages").get_data(as_text=True)
    assert "Your lab results are ready" in inbox
    msg_id = inbox.split('href="/messages/', 2)[2].split('"')[0]
    pd.revoke(app, proxy, pid)
    for path in PAGES + [f"/health/documents/{doc_id}", f"/health/documents/{doc_id}/content", f"/messages/{msg_id}"]:
        r = client.get(path)
        body = r.get_data(as_text=True)
        assert r.status_code == 403, path
        assert "Potassium" not in body and "Chest X-ray" not in body and "lab results are ready" not in body
        assert "do not have access" in body
    r = client.post("/messages/compose", data={"csrf_token": "stale",
                                               "category": "rx", "subject": "s", "message": "m"})
    assert r.status_code in (302, 400, 403)
    assert not [c for c in _all(fhir, "Communication") if c.get("sender", {}).get("reference", "").startswith("RelatedPerson/")]


def _all(fhir, rtype):
    import json
    _, page = fhir.search(pd.SYS, rtype, [("_count", "500")])
    return [json.loads(t) for _, _, t in page.matches]


def test_a_proxy_message_is_sent_as_the_related_person(app, client, fhir, family):
    pid, _, proxy = family
    pd.sign_in(app, client, proxy)
    r = client.post("/messages/compose", data={"csrf_token": pd.csrf(client), "category": "health",
                                               "subject": "For my mother", "message": "Is the new dose right?"})
    assert r.status_code == 302
    sent = [c for c in _all(fhir, "Communication") if c.get("topic", {}).get("text") == "For my mother"][0]
    assert sent["sender"]["reference"].startswith("RelatedPerson/") and sent["sender"]["display"] == "Kim Carer"
    assert sent["subject"]["reference"] == f"Patient/{pid}"


def test_access_log_names_patient_proxy_staff_and_apps(app, client, fhir, family):
    from fhir_server.access.context import AccessContext
    from fhir_server.audit import audit_event
    pid, patient, proxy = family
    pd.sign_in(app, client, proxy)
    client.get("/health")
    dr = _all(fhir, "Practitioner")[0]["id"]
    app.extensions["audit_log"].record(audit_event(action="read", subtype="read", agent_ref=f"Practitioner/{dr}",
                                                   agent_display="Dr. Maya Chen", patient_id=pid,
                                                   entities=[f"Patient/{pid}"], ok=True))
    app_ctx = AccessContext.from_scopes(["patient/Observation.rs"], patient_id=pid, user=f"Patient/{pid}",
                                        client_id="my-health-app")
    fhir.search(app_ctx, "Observation", [("patient", pid)])
    other = pd.add_patient(fhir, "Someone", "Else")
    app.extensions["audit_log"].record(audit_event(action="read", subtype="read", agent_ref=f"Practitioner/{dr}",
                                                   agent_display="Dr. Maya Chen", patient_id=other,
                                                   entities=[f"Patient/{other}"], ok=True))
    pd.sign_in(app, client, patient)
    html = client.get("/access-log").get_data(as_text=True)
    assert "Access log" in html
    assert "Kim Carer" in html and "Family or friend (shared access)" in html
    assert "Dr. Maya Chen" in html and "Practice staff" in html
    assert "my-health-app" in html and ">App<" in html
    assert "Pat Portal (you)" in html
    assert "Viewed your lab results" in html and "Viewed your personal details" in html
    assert "Observation" not in html.split("<main", 1)[1]  # plain words, never FHIR type names
    assert html.count("Dr. Maya Chen") == 1  # the other patient's event is not shown


def test_resources_from_configuration(app, client, family):
    _, patient, _ = family
    pd.sign_in(app, client, patient)
    html = client.get("/resources").get_data(as_text=True)
    for name, url in (("National Cancer Institute", "https://www.cancer.gov"),
                      ("American Cancer Society", "https://www.cancer.org"), ("CancerCare", "https://www.cancercare.org")):
        assert f'href="{url}"' in html and name in html
    app.config["PORTAL_RESOURCES"] = [{"name": "Local Support Group", "url": "https://example.org/support"}]
    html = client.get("/resources").get_data(as_text=True)
    assert "Local Support Group" in html and "cancer.gov" not in html


def test_error_pages_are_pages_not_tracebacks(app, client, family):
    _, patient, _ = family
    r = client.get("/no-such-page")
    assert r.status_code == 404 and "Page not found" in r.get_data(as_text=True) and "Sign in" in r.get_data(as_text=True)
    assert client.get("/fhir/NoSuchType/1").get_json()["resourceType"] == "OperationOutcome"
    pd.sign_in(app, client, patient)
    r = client.get("/health/documents/unknown-id")
    assert r.status_code == 404 and "Go to Health" in r.get_data(as_text=True)
    r = client.delete("/health", headers={"X-CSRF-Token": pd.csrf(client)})
    assert r.status_code == 405 and "not possible" in r.get_data(as_text=True)
    r = client.post("/messages/compose", data={"category": "rx"})  # no CSRF token
    assert r.status_code == 400 and "expired" in r.get_data(as_text=True)


def test_unexpected_errors_show_a_page_without_internals(app, client):
    @app.get("/_boom_for_test")
    def boom():  # pragma: no cover - raised on purpose
        raise RuntimeError("secret internals")
    r = client.get("/_boom_for_test")
    assert r.status_code == 500 and "secret internals" not in r.get_data(as_text=True)
    assert "Traceback" not in r.get_data(as_text=True) and "Something went wrong" in r.get_data(as_text=True)


def test_session_expiry_returns_to_login_then_to_the_page(app, client, family):
    _, patient, _ = family
    pd.sign_in(app, client, patient)
    token = pd.csrf(client, "/messages/compose")
    with client.session_transaction() as s:
        s["seen"] = int(time.time()) - 24 * 3600  # idle far beyond the timeout
    r = client.get("/messages?x=1")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=%2Fmessages%3Fx%3D1"
    # a form sent after the session expired: back to login, then to the page it came from
    r = client.post("/messages/compose", data={"csrf_token": token, "category": "rx", "subject": "s", "message": "m"},
                    headers={"Referer": "http://localhost/messages/compose"})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=%2Fmessages%2Fcompose")
