"""`carespace demo` gives the console something real: patients in each registration state and messages
from patients and a proxy (one a reply) waiting in the Inbox; running it again changes nothing."""
from __future__ import annotations

import re

from smart_auth.accounts.demo import load_demo
from tests.support import portal_data as pd
from tests.support import practice as pr


def test_demo_seeds_registration_states_and_inbox(app, fhir):
    load_demo(fhir)
    before = {t: len(pr.search(fhir, t)) for t in ("Patient", "Communication", "Observation")}
    load_demo(fhir)
    assert {t: len(pr.search(fhir, t)) for t in before} == before
    c = app.test_client()
    r = c.post("/login", data={"csrf_token": pd.csrf(c, "/login"), "email": "dr.chen@example.com",
                               "password": "CareSpace-Demo1!", "birth_date": "1975-05-14"})
    assert r.headers["Location"] == "/practice"
    html = c.get("/practice/patients").get_data(as_text=True)
    states = dict(re.findall(r'<td><a href="/practice/patients/[^"]+">([^<]+)</a>.*?class="tag reg">([^<]+)<', html,
                             re.S))
    assert states == {"Alex Morgan": "Registered", "Sam Lee": "Registered", "Taylor Brooks": "Not invited",
                      "Jamie Rivera": "Invited", "Casey Nguyen": "Invite expired"}
    inbox = c.get("/practice/inbox").get_data(as_text=True)
    assert inbox.count('<span class="tag">Unread</span>') == 4 and "4 unread" in inbox
    for words in ("Refill of my metformin", "Dizzy in the mornings", "From Jordan Morgan for Alex Morgan",
                  "Reply to a message"):
        assert words in inbox
    assert "Rx" in c.get("/practice/inbox?category=rx").get_data(as_text=True)
