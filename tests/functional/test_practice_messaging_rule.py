"""The messaging rule for every writer: the practice answers any patient-side message (replies too), once;
the patient side replies once to a practice message and never to a reply; concurrent answers: one wins."""
from __future__ import annotations

import threading

import pytest

from fhir_server.access.context import AccessContext
from fhir_server.errors import Unprocessable
from tests.support import portal_data as pd


@pytest.fixture
def people(app, fhir):
    pid = pd.add_patient(fhir)
    dr = fhir.create(pd.SYS, "Practitioner", {"resourceType": "Practitioner",
                                             "name": [{"given": ["Maya"], "family": "Chen"}]}).stored.id
    nurse = fhir.create(pd.SYS, "Practitioner", {"resourceType": "Practitioner",
                                                "name": [{"given": ["Ned"], "family": "Nurse"}]}).stored.id
    pd.open_fhir_api(app)
    return pid, dr, nurse


def msg(pid, sender, answers=None, text="hello", subject="About my results"):
    body = {"resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
            "sender": {"reference": sender}, "payload": [{"contentString": text}], "sent": "2025-01-02T10:00:00Z"}
    if answers:
        body["inResponseTo"] = [{"reference": f"Communication/{answers}"}]
    else:
        body["topic"] = {"text": subject}
        body["category"] = [{"coding": [{"system": "urn:carespace:message-category", "code": "health"}]}]
    return body


def post(client, body):
    return client.post("/fhir/Communication", json=body)


def diag(resp):
    return resp.get_json()["issue"][0]["diagnostics"]


def test_practice_answers_a_patient_reply_and_the_patient_cannot_reply_to_that(client, people):
    pid, dr, _ = people
    first = post(client, msg(pid, f"Practitioner/{dr}"))
    assert first.status_code == 201
    reply = post(client, msg(pid, f"Patient/{pid}", first.get_json()["id"]))
    assert reply.status_code == 201
    answer = post(client, msg(pid, f"Practitioner/{dr}", reply.get_json()["id"], "Thanks, see you Monday"))
    assert answer.status_code == 201, answer.get_data(as_text=True)
    again = post(client, msg(pid, f"Patient/{pid}", answer.get_json()["id"]))
    assert again.status_code == 422 and "itself a reply" in diag(again)


def test_practice_answers_a_new_patient_message_once(client, people):
    pid, dr, nurse = people
    question = post(client, msg(pid, f"Patient/{pid}"))
    assert question.status_code == 201
    qid = question.get_json()["id"]
    assert post(client, msg(pid, f"Practitioner/{dr}", qid)).status_code == 201
    second = post(client, msg(pid, f"Practitioner/{nurse}", qid))
    assert second.status_code == 422 and "already been answered" in diag(second)


def test_proxy_message_is_answered_by_the_practice(app, client, fhir, people):
    pid, dr, _ = people
    rp = fhir.create(pd.SYS, "RelatedPerson", {"resourceType": "RelatedPerson",
                                               "patient": {"reference": f"Patient/{pid}"}}).stored.id
    q = post(client, msg(pid, f"RelatedPerson/{rp}"))
    assert q.status_code == 201
    assert post(client, msg(pid, f"Practitioner/{dr}", q.get_json()["id"])).status_code == 201


def test_patient_side_cannot_answer_patient_side_and_practice_cannot_answer_practice(client, people):
    pid, dr, nurse = people
    own = post(client, msg(pid, f"Patient/{pid}")).get_json()["id"]
    r = post(client, msg(pid, f"Patient/{pid}", own))
    assert r.status_code == 422 and "only to a message from the practice" in diag(r)
    theirs = post(client, msg(pid, f"Practitioner/{dr}")).get_json()["id"]
    r = post(client, msg(pid, f"Practitioner/{nurse}", theirs))
    assert r.status_code == 422 and "not one of them" in diag(r)


def test_two_staff_answering_at_once_cannot_both_win(app, fhir, people):
    pid, dr, nurse = people
    qid = fhir.create(pd.SYS, "Communication", msg(pid, f"Patient/{pid}")).stored.id
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def answer(who: str) -> None:
        ctx = AccessContext.from_scopes(["user/*.cruds"], user=f"Practitioner/{who}")
        barrier.wait()
        try:
            fhir.create(ctx, "Communication", msg(pid, f"Practitioner/{who}", qid, f"answer from {who}"))
            outcomes.append("won")
        except Unprocessable as err:
            outcomes.append("refused: " + err.diagnostics)

    threads = [threading.Thread(target=answer, args=(w,)) for w in (dr, nurse)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(o[:7] for o in outcomes) == ["refused", "won"], outcomes
    assert "already been answered" in next(o for o in outcomes if o.startswith("refused"))
    _, page = fhir.search(pd.SYS, "Communication", [("_count", "50")])
    import json
    answers = [json.loads(t) for _, _, t in page.matches if json.loads(t).get("inResponseTo")]
    assert len(answers) == 1
