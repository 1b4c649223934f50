"""The practice's Inbox: messages from patients and proxies, newest first, unread marked, filters by
category and state; the conversation; Reply (a patient's reply too), once; mark done; New message."""
from __future__ import annotations

import re

import pytest

from tests.support import portal_data as pd
from tests.support import practice as pr

CAT = "urn:carespace:message-category"


@pytest.fixture
def world(app, client, fhir):
    staff_uid, dr = pr.add_staff(app, fhir)
    pid = pr.patient(fhir, "Pat", "Portal", email="pat@example.com")
    patient_uid = pd.add_user(app, "pat@example.com", "Pat Portal", "1970-05-04", pid)
    proxy_uid = pd.add_proxy(app, fhir, pid, "kin@example.com", "Kim Kin", "1990-01-01")
    pd.sign_in(app, client, staff_uid)
    return {"pid": pid, "dr": dr, "patient": patient_uid, "proxy": proxy_uid, "staff": staff_uid}


def patient_side(fhir, pid, subject, sent, category="health", sender=None, text="Hello doctor"):
    return fhir.create(pd.SYS, "Communication", {
        "resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
        "sender": {"reference": sender or f"Patient/{pid}", "display": "Pat Portal"}, "sent": sent,
        "topic": {"text": subject}, "category": [{"coding": [{"system": CAT, "code": category}],
                                                  "text": category.title() if category == "health" else "Rx"}],
        "payload": [{"contentString": text}]}).stored.id


def as_user(app, uid):
    c = app.test_client()
    pd.sign_in(app, c, uid)
    return c


def subjects(html):
    return re.findall(r'<a href="/practice/messages/[^"]+">(?:<span class="tag">Unread</span> )?([^<]+)</a>', html)


def test_inbox_newest_first_unread_and_filters(app, client, fhir, world):
    pid = world["pid"]
    patient_side(fhir, pid, "Old question", "2025-01-01T09:00:00Z", "health")
    rx = patient_side(fhir, pid, "Refill please", "2025-02-01T09:00:00Z", "rx")
    # the patient composes through the portal, as a patient would
    pat = as_user(app, world["patient"])
    r = pat.post("/messages/compose", data={"csrf_token": pd.csrf(pat), "category": "health", "subject": "Newest",
                                            "message": "A question"})
    assert r.status_code == 302
    # a message from the practice is not in the practice's Inbox
    fhir.create(pd.SYS, "Communication", {"resourceType": "Communication", "status": "completed",
                                          "subject": {"reference": f"Patient/{pid}"},
                                          "sender": {"reference": f"Practitioner/{world['dr']}"},
                                          "topic": {"text": "From us"}, "payload": [{"contentString": "x"}]})
    html = client.get("/practice/inbox").get_data(as_text=True)
    assert subjects(html) == ["Newest", "Refill please", "Old question"]
    assert html.count('<span class="tag">Unread</span>') == 3 and "3 unread" in html
    assert subjects(client.get("/practice/inbox?category=rx").get_data(as_text=True)) == ["Refill please"]
    assert subjects(client.get("/practice/inbox?category=health").get_data(as_text=True)) == ["Newest",
                                                                                              "Old question"]
    page = client.get(f"/practice/messages/{rx}").get_data(as_text=True)
    assert "Refill please" in page and "Hello doctor" in page and "Pat Portal" in page
    assert fhir.read(pd.SYS, "Communication", rx).json()["received"]
    html = client.get("/practice/inbox").get_data(as_text=True)
    assert "2 unread" in html and html.count('<span class="tag">Unread</span>') == 2


def test_reply_mark_done_and_the_patient_cannot_reply_to_the_answer(app, client, fhir, world):
    pid = world["pid"]
    mid = patient_side(fhir, pid, "Dose question", "2025-02-01T09:00:00Z")
    page = f"/practice/messages/{mid}"
    r = client.post(page + "/reply", data={"csrf_token": pr.token(client, page), "message": "Take it at night."})
    assert r.status_code == 302
    answer = fhir.read(pd.SYS, "Communication", r.headers["Location"].rsplit("/", 1)[1]).json()
    assert answer["inResponseTo"] == [{"reference": f"Communication/{mid}"}]
    assert answer["sender"] == {"reference": f"Practitioner/{world['dr']}", "display": "Maya Chen"}
    assert answer["recipient"][0]["reference"] == f"Patient/{pid}" and answer["topic"] == {"text": "Dose question"}
    # answered messages are done: gone from the open Inbox, listed under Done
    assert "Dose question" not in client.get("/practice/inbox").get_data(as_text=True)
    assert subjects(client.get("/practice/inbox?state=done").get_data(as_text=True)) == ["Dose question"]
    # the conversation shows both, and no second Reply
    conv = client.get(page).get_data(as_text=True)
    assert "Take it at night." in conv and '<button type="submit">Reply</button>' not in conv
    again = client.post(page + "/reply", data={"csrf_token": pr.token(client, page), "message": "Also..."})
    assert again.status_code == 409 and "already been answered" in again.get_data(as_text=True)
    # the patient sees the answer in Messages and cannot reply to it
    pat = as_user(app, world["patient"])
    box = pat.get("/messages").get_data(as_text=True)
    assert "Dose question" in box
    msg = pat.get(f"/messages/{answer['id']}").get_data(as_text=True)
    assert "Take it at night." in msg and '<button type="submit">Reply</button>' not in msg
    tok = pd.csrf(pat, "/messages/compose")
    assert pat.post(f"/messages/{answer['id']}/reply", data={"csrf_token": tok, "message": "x"}).status_code == 422


def test_practice_answers_a_patients_reply(app, client, fhir, world):
    pid = world["pid"]
    first = fhir.create(pd.SYS, "Communication", {
        "resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
        "sender": {"reference": f"Practitioner/{world['dr']}", "display": "Maya Chen"},
        "recipient": [{"reference": f"Patient/{pid}"}], "sent": "2025-01-01T09:00:00Z",
        "topic": {"text": "Your results"}, "payload": [{"contentString": "All normal."}]}).stored.id
    pat = as_user(app, world["patient"])
    r = pat.post(f"/messages/{first}/reply", data={"csrf_token": pd.csrf(pat, "/messages/compose"),
                                                   "message": "Thanks! Should I retest?"})
    assert r.status_code == 302
    html = client.get("/practice/inbox").get_data(as_text=True)
    link = re.search(r'href="/practice/messages/([0-9a-f-]{36})"', html).group(1)
    assert "Reply to a message" in html
    conv = client.get(f"/practice/messages/{link}").get_data(as_text=True)
    assert conv.index("All normal.") < conv.index("Should I retest?")
    r = client.post(f"/practice/messages/{link}/reply", data={"csrf_token": pr.token(client, f"/practice/messages/{link}"),
                                                              "message": "Yes, in 3 months."})
    assert r.status_code == 302
    answer = r.headers["Location"].rsplit("/", 1)[1]
    assert f'href="/messages/{answer}"' in pat.get("/messages").get_data(as_text=True)
    shown = pat.get(f"/messages/{answer}").get_data(as_text=True)
    assert "Yes, in 3 months." in shown and '<button type="submit">Reply</button>' not in shown


def test_proxy_messages_reach_the_inbox_named_for_the_patient(app, client, fhir, world):
    kin = as_user(app, world["proxy"])
    r = kin.post("/messages/compose", data={"csrf_token": pd.csrf(kin), "category": "rx", "subject": "For my mother",
                                            "message": "Her refill"})
    assert r.status_code == 302
    html = client.get("/practice/inbox").get_data(as_text=True)
    assert "For my mother" in html and "From Kim Kin for Pat Portal" in html


def test_mark_done_and_open_again(client, fhir, world):
    mid = patient_side(fhir, world["pid"], "Billing?", "2025-02-01T09:00:00Z")
    page = f"/practice/messages/{mid}"
    assert client.post(page + "/state", data={"csrf_token": pr.token(client, page), "state": "done"}).status_code == 302
    assert "Billing?" not in client.get("/practice/inbox").get_data(as_text=True)
    assert "Billing?" in client.get("/practice/inbox?state=done").get_data(as_text=True)
    assert "Billing?" in client.get("/practice/inbox?state=all").get_data(as_text=True)
    client.post(page + "/state", data={"csrf_token": pr.token(client, page), "state": "open"})
    assert "Billing?" in client.get("/practice/inbox").get_data(as_text=True)
    stored = fhir.read(pd.SYS, "Communication", mid).json()
    assert stored["payload"] == [{"contentString": "Hello doctor"}] and stored["topic"] == {"text": "Billing?"}


def test_new_message_to_a_patient(app, client, fhir, world):
    pick = client.get("/practice/messages/new?name=Portal").get_data(as_text=True)
    assert f'href="/practice/patients/{world["pid"]}/messages/new">Write to Pat Portal' in pick
    path = f"/practice/patients/{world['pid']}/messages/new"
    bad = client.post(path, data={"csrf_token": pr.token(client, path), "category": "billing", "subject": " ",
                                  "message": ""})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "Choose a category: Rx or Health." in html and "Enter a subject." in html
    assert "Write the message" in html
    r = client.post(path, data={"csrf_token": pr.token(client, path), "category": "rx", "subject": "Refill ready",
                                "message": "Your prescription is at the pharmacy."})
    assert r.status_code == 302
    pat = as_user(app, world["patient"])
    box = pat.get("/messages").get_data(as_text=True)
    assert "Refill ready" in box and "Unread" in box
    assert "Refill ready" not in client.get("/practice/inbox").get_data(as_text=True)


def test_unknown_message_is_a_page(client, world):
    r = client.get("/practice/messages/nope")
    assert r.status_code == 404 and "does not exist" in r.get_data(as_text=True)
