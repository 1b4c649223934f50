"""Every staff read and write is an AuditEvent naming the staff member, and shows in the patient's Access
log with their name and role, in plain words ("Viewed your lab results", "Sent you a message")."""
from __future__ import annotations

import re

import pytest

from fhir_server.audit import audit_event
from portal_ui.access_log import describe
from tests.support import portal_data as pd
from tests.support import practice as pr


@pytest.fixture
def world(app, client, fhir):
    staff_uid, dr = pr.add_staff(app, fhir, "Maya Chen")
    pid = pr.patient(fhir, email="pat@example.com")
    patient_uid = pd.add_user(app, "pat@example.com", "Pat Portal", "1970-05-04", pid)
    pd.sign_in(app, client, staff_uid)
    return {"pid": pid, "dr": dr, "patient": patient_uid}


def access_log(app, world):
    app.extensions["audit_log"].flush()
    c = app.test_client()
    pd.sign_in(app, c, world["patient"])
    html = c.get("/access-log").get_data(as_text=True)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "|", row)) for row in re.findall(r"<tr><td.*?</tr>", html, re.S)]


def staff_rows(rows, words):
    return [r for r in rows if "Maya Chen" in r and "Practice staff" in r and words in r]


def staff_events(app, fhir, dr, action):
    app.extensions["audit_log"].flush()
    evs = pr.search(fhir, "AuditEvent", [("agent", f"Practitioner/{dr}")])
    return [e for e in evs if e["subtype"][0]["code"] == action]


@pytest.mark.parametrize("subtype,entities,you,text", [
    ("search", ["Observation/1", "Observation/2"], True, "Viewed your lab results"),
    ("read", ["Patient/p"], True, "Viewed your personal details"),
    ("search", ["DocumentReference/1"] * 6, False, "Viewed the documents"),
    ("create", ["Communication/9"], True, "Sent you a message"),
    ("create", ["Communication/9"], False, "Sent a message"),
    ("create", ["Binary/1", "DocumentReference/2"], True, "Added a document"),
    ("create", ["Observation/3"], True, "Added a lab result to your record"),
    ("search", ["Observation/1", "DocumentReference/2"], True, "Viewed your lab results and documents"),
    ("read", ["Questionnaire/1"], True, "Viewed your health records"),
])
def test_plain_words(subtype, entities, you, text):
    ev = audit_event(action=subtype, subtype=subtype, agent_ref="Practitioner/1", agent_display="x", patient_id="p",
                     entities=entities, ok=True)
    assert describe(ev, "p", you) == text


def test_staff_actions_are_audit_events_naming_the_staff_member(app, client, fhir, world):
    client.get(f"/practice/patients/{world['pid']}")
    path = f"/practice/patients/{world['pid']}/results/new"
    assert client.post(path, data={"csrf_token": pr.token(client, path), "test": "2345-7", "value": "90",
                                   "date": "2025-01-01"}).status_code == 302
    reads = staff_events(app, fhir, world["dr"], "read")
    creates = staff_events(app, fhir, world["dr"], "create")
    assert any(f"Patient/{world['pid']}" in str(e["entity"]) for e in reads)
    assert any("Observation/" in str(e["entity"]) for e in creates)
    assert all(e["agent"][0]["who"]["display"] == "Maya Chen" for e in reads + creates)


def test_access_log_shows_the_staff_member_opening_the_patient(app, client, world):
    client.get(f"/practice/patients/{world['pid']}")
    assert staff_rows(access_log(app, world), "Viewed your personal details")


def test_access_log_shows_the_staff_member_uploading_a_document(app, client, world):
    import io

    from carespace.demo_clinical import _pdf
    path = f"/practice/patients/{world['pid']}/documents/new"
    r = client.post(path, data={"csrf_token": pr.token(client, path), "title": "Report", "type": "11502-2",
                                "date": "2025-01-01", "file": (io.BytesIO(_pdf("x")), "r.pdf")},
                    content_type="multipart/form-data")
    assert r.status_code == 302
    assert staff_rows(access_log(app, world), "Added a document")


def test_access_log_shows_the_staff_member_viewing_lab_results(app, client, world):
    client.get(f"/practice/patients/{world['pid']}")
    assert staff_rows(access_log(app, world), "Viewed your lab results")


def test_access_log_shows_the_staff_member_posting_a_result(app, client, world):
    path = f"/practice/patients/{world['pid']}/results/new"
    client.post(path, data={"csrf_token": pr.token(client, path), "test": "2345-7", "value": "90",
                            "date": "2025-01-01"})
    assert staff_rows(access_log(app, world), "Added a lab result to your record")


def test_access_log_shows_the_staff_member_sending_a_message(app, client, world):
    path = f"/practice/patients/{world['pid']}/messages/new"
    client.post(path, data={"csrf_token": pr.token(client, path), "category": "rx", "subject": "Hi",
                            "message": "Hello"})
    assert staff_rows(access_log(app, world), "Sent you a message")


def test_invite_from_the_console_names_the_staff_member(app, client, fhir, world):
    pid = pr.patient(fhir, "New", "Person", email="new@example.com")
    page = f"/practice/patients/{pid}"
    client.post(f"{page}/invite", data={"csrf_token": pr.token(client, page)})
    invites = [e for e in pr.search(fhir, "AuditEvent", [("patient", f"Patient/{pid}")])
               if e["subtype"][0]["code"] == "invite"]
    assert invites and invites[0]["agent"][0]["who"] == {"display": "Maya Chen",
                                                        "reference": f"Practitioner/{world['dr']}"}
