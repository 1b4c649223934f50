"""Messages: inbox from the practice, read marking, reply once (portal and FHIR API), compose validation."""
from __future__ import annotations

import re

import pytest

from tests.support import portal_data as pd


@pytest.fixture
def setup(app, client, fhir):
    pid = pd.add_patient(fhir)
    uid = pd.add_user(app, "pat@example.com", "Pat Portal", "1970-05-04", pid)
    pd.open_fhir_api(app)
    dr = client.post("/fhir/Practitioner", json={"resourceType": "Practitioner",
                                                 "name": [{"given": ["Maya"], "family": "Chen"}]}).get_json()["id"]
    return pid, uid, dr


def practice_message(client, pid, dr, subject, sent, text="Hello from the practice"):
    r = client.post("/fhir/Communication", json={
        "resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
        "sender": {"reference": f"Practitioner/{dr}"}, "recipient": [{"reference": f"Patient/{pid}"}],
        "sent": sent, "topic": {"text": subject}, "payload": [{"contentString": text}]})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()["id"]


def test_inbox_newest_first_unread_marked_and_opening_marks_read(app, client, fhir, setup):
    pid, uid, dr = setup
    old = practice_message(client, pid, dr, "Older news", "2024-01-01T09:00:00Z")
    new = practice_message(client, pid, dr, "Newer news", "2024-02-01T09:00:00Z")
    pd.sign_in(app, client, uid)
    html = client.get("/messages").get_data(as_text=True)
    assert html.index("Newer news") < html.index("Older news")
    assert "2 unread" in html and html.count(">Unread</span>") == 2
    assert 'href="/messages/compose">Compose</a>' in html
    page = client.get(f"/messages/{new}").get_data(as_text=True)
    assert "Newer news" in page and "Maya Chen" in page and "Hello from the practice" in page
    stored = fhir.read(pd.SYS, "Communication", new).json()
    assert stored["received"]  # read marker
    html = client.get("/messages").get_data(as_text=True)
    assert "1 unread" in html
    assert fhir.read(pd.SYS, "Communication", old).json().get("received") is None


def test_reply_once_then_no_more(app, client, fhir, setup):
    pid, uid, dr = setup
    mid = practice_message(client, pid, dr, "Your results", "2024-02-01T09:00:00Z")
    pd.sign_in(app, client, uid)
    page = client.get(f"/messages/{mid}").get_data(as_text=True)
    assert '<button type="submit">Reply</button>' in page and 'for="reply-text">Your reply</label>' in page
    token = pd.csrf(client, f"/messages/{mid}")
    r = client.post(f"/messages/{mid}/reply", data={"csrf_token": token, "message": "Thank you, doctor"})
    assert r.status_code == 302
    page = client.get(f"/messages/{mid}").get_data(as_text=True)
    assert "Thank you, doctor" in page and "Your answer" in page
    assert '<button type="submit">Reply</button>' not in page and "answered only once" in page
    again = client.post(f"/messages/{mid}/reply", data={"csrf_token": token, "message": "One more thing"})
    assert again.status_code == 422 and "cannot be answered again" in again.get_data(as_text=True)
    replies = [c for c in pd_search(fhir, "Communication") if c.get("inResponseTo")]
    assert len(replies) == 1
    reply = replies[0]
    assert reply["sender"]["reference"] == f"Patient/{pid}"
    assert reply["recipient"] == [{"reference": f"Practitioner/{dr}"}]
    assert reply["topic"] == {"text": "Your results"} and reply["payload"] == [{"contentString": "Thank you, doctor"}]
    # the reply is listed under Sent messages, and cannot itself be answered
    html = client.get("/messages").get_data(as_text=True)
    assert "Sent messages" in html and "Answer to a message" in html
    assert '<button type="submit">Reply</button>' not in client.get(f"/messages/{reply['id']}").get_data(as_text=True)


def pd_search(fhir, rtype):
    _, page = fhir.search(pd.SYS, rtype, [("_count", "100")])
    import json
    return [json.loads(t) for _, _, t in page.matches]


def _reply_body(pid, target, text="again"):
    return {"resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
            "sender": {"reference": f"Patient/{pid}"}, "inResponseTo": [{"reference": f"Communication/{target}"}],
            "payload": [{"contentString": text}]}


def test_fhir_api_refuses_second_reply_and_reply_to_reply(app, client, fhir, setup):
    pid, _, dr = setup
    mid = practice_message(client, pid, dr, "Question", "2024-02-01T09:00:00Z")
    first = client.post("/fhir/Communication", json=_reply_body(pid, mid, "first"))
    assert first.status_code == 201
    second = client.post("/fhir/Communication", json=_reply_body(pid, mid, "second"))
    assert second.status_code == 422
    oo = second.get_json()
    assert oo["resourceType"] == "OperationOutcome" and "already been answered" in oo["issue"][0]["diagnostics"]
    to_reply = client.post("/fhir/Communication", json=_reply_body(pid, first.get_json()["id"]))
    assert to_reply.status_code == 422 and "cannot be answered" in to_reply.get_json()["issue"][0]["diagnostics"]
    # a transaction with two replies to a fresh message is refused as a whole
    other = practice_message(client, pid, dr, "Another", "2024-02-02T09:00:00Z")
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _reply_body(pid, other, "a"), "request": {"method": "POST", "url": "Communication"}},
        {"resource": _reply_body(pid, other, "b"), "request": {"method": "POST", "url": "Communication"}}]}
    assert client.post("/fhir", json=tx).status_code == 422
    # updating the one reply (e.g. the practice marking it read) is still allowed
    body = dict(first.get_json(), received="2024-02-03T10:00:00Z")
    assert client.put(f"/fhir/Communication/{body['id']}", json=body).status_code == 200
    unknown = client.post("/fhir/Communication", json=_reply_body(pid, "does-not-exist"))
    assert unknown.status_code == 422


@pytest.mark.parametrize("form,errors", [
    ({"category": "", "subject": "Refill", "message": "Please"}, ["Choose a category: Rx or Health."]),
    ({"category": "billing", "subject": "Refill", "message": "Please"}, ["Choose a category: Rx or Health."]),
    ({"category": "rx", "subject": "  ", "message": "Please"}, ["Enter a subject."]),
    ({"category": "rx", "subject": "Refill", "message": ""}, ["Write your message."]),
    ({"category": "health", "subject": "Long", "message": "x" * 4001}, ["the limit is 4000"]),
    ({}, ["Choose a category", "Enter a subject.", "Write your message."]),
])
def test_compose_validation_names_each_field(app, client, fhir, setup, form, errors):
    _, uid, _ = setup
    pd.sign_in(app, client, uid)
    token = pd.csrf(client)
    r = client.post("/messages/compose", data={"csrf_token": token, **form})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    for e in errors:
        assert e in html
    assert not [c for c in pd_search(fhir, "Communication") if c.get("sender", {}).get("reference", "").startswith("Patient/")]


def test_compose_sends_a_communication_listed_under_sent(app, client, fhir, setup):
    pid, uid, dr = setup
    practice_message(client, pid, dr, "Hello", "2024-02-01T09:00:00Z")
    pd.sign_in(app, client, uid)
    page = client.get("/messages/compose").get_data(as_text=True)
    for label in ("Category", "Subject", "Message"):
        assert re.search(rf'<label for="c-\w+">{label}</label>', page)
    assert '<option value="rx"' in page and ">Rx<" in page and ">Health<" in page
    r = client.post("/messages/compose", data={"csrf_token": pd.csrf(client), "category": "rx",
                                               "subject": "Refill request", "message": "I need a refill of my inhaler."})
    assert r.status_code == 302
    sent = [c for c in pd_search(fhir, "Communication") if c.get("topic", {}).get("text") == "Refill request"][0]
    assert sent["category"][0]["coding"][0]["code"] == "rx"
    assert sent["sender"]["reference"] == f"Patient/{pid}" and sent["subject"]["reference"] == f"Patient/{pid}"
    assert sent["recipient"] == [{"reference": f"Practitioner/{dr}"}]  # the practice that wrote last
    assert sent["sent"] and sent["payload"][0]["contentString"] == "I need a refill of my inhaler."
    html = client.get("/messages").get_data(as_text=True)
    sent_section = html.split("Sent messages", 1)[1]
    assert "Refill request" in sent_section and "Rx" in sent_section
    # the practice answers through the FHIR API; the patient sees it and cannot answer the answer
    ans = client.post("/fhir/Communication", json={
        "resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
        "sender": {"reference": f"Practitioner/{dr}"}, "recipient": [{"reference": f"Patient/{pid}"}],
        "inResponseTo": [{"reference": f"Communication/{sent['id']}"}], "sent": "2030-01-01T00:00:00Z",
        "payload": [{"contentString": "Sent to your pharmacy."}]})
    assert ans.status_code == 201
    mine = client.get(f"/messages/{sent['id']}").get_data(as_text=True)
    assert "Answer from the practice" in mine and "Sent to your pharmacy." in mine
    theirs = client.get(f"/messages/{ans.get_json()['id']}").get_data(as_text=True)
    assert "Re: Refill request" in theirs and '<button type="submit">Reply</button>' not in theirs


def test_patient_messages_through_fhir_api_need_category_and_subject(app, client, fhir, setup):
    pid, _, _ = setup
    body = {"resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
            "sender": {"reference": f"Patient/{pid}"}, "payload": [{"contentString": "hi"}]}
    r = client.post("/fhir/Communication", json=body)
    assert r.status_code == 422 and "category" in r.get_json()["issue"][0]["diagnostics"]
