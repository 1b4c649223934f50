"""Patients in the practice console: search by name, birth date and identifier, paged; New patient
(validated as an R4 Patient); a patient page with the registration status, shared access, last sign-in and
"Invite" / "Resend invite" (the CLI's rules: 4 days, single use, the old link dies)."""
from __future__ import annotations

import re

import pytest

from tests.support import portal_data as pd
from tests.support import practice as pr
from tests.support.accounts import last_link, token_of


@pytest.fixture
def staff(app, client, fhir):
    uid, dr = pr.add_staff(app, fhir)
    pd.sign_in(app, client, uid)
    return uid


def names_on(html):
    return re.findall(r'<td><a href="/practice/patients/[^"]+">([^<]+)</a>', html)


def test_search_by_name_birth_date_and_identifier(client, fhir, staff):
    pr.patient(fhir, "Alex", "Morgan", "1968-03-21", identifier="MRN-1001")
    pr.patient(fhir, "Sam", "Lee", "1990-11-02", identifier="MRN-1002")
    pr.patient(fhir, "Alexandra", "Lee", "1990-11-02")
    assert names_on(client.get("/practice/patients").get_data(as_text=True)) == ["Alexandra Lee", "Sam Lee",
                                                                                 "Alex Morgan"]
    assert names_on(client.get("/practice/patients?name=alex").get_data(as_text=True)) == ["Alexandra Lee",
                                                                                           "Alex Morgan"]
    assert names_on(client.get("/practice/patients?name=Alex+Lee").get_data(as_text=True)) == ["Alexandra Lee"]
    assert names_on(client.get("/practice/patients?birth_date=1990-11-02").get_data(as_text=True)) == [
        "Alexandra Lee", "Sam Lee"]
    html = client.get("/practice/patients?identifier=MRN-1002").get_data(as_text=True)
    assert names_on(html) == ["Sam Lee"] and "MRN-1002" in html
    r = client.get("/practice/patients?birth_date=1990-13-45")
    assert r.status_code == 422 and "valid date of birth" in r.get_data(as_text=True)
    assert "No patients match" in client.get("/practice/patients?name=Nobody").get_data(as_text=True)


def test_patients_are_paged(client, fhir, staff):
    for n in range(23):
        pr.patient(fhir, "Pat", f"Family{n:02d}")
    first = client.get("/practice/patients").get_data(as_text=True)
    assert len(names_on(first)) == 20 and names_on(first)[0] == "Pat Family00"
    nxt = re.search(r'href="([^"]+)">Next page', first).group(1).replace("&amp;", "&")
    second = client.get(nxt).get_data(as_text=True)
    assert names_on(second) == [f"Pat Family{n}" for n in (20, 21, 22)]
    assert "Next page" not in second and "Previous page" in second
    r = client.get("/practice/patients?cursor=not-a-cursor")
    assert r.status_code == 400 and "no longer valid" in r.get_data(as_text=True)


@pytest.mark.parametrize("form,field_errors", [
    ({}, ["full name", "valid date of birth", "Choose the sex recorded", "valid email"]),
    ({"name": "Alex Morgan", "birth_date": "2999-01-01", "sex": "female", "email": "alex@example.com"},
     ["valid date of birth"]),
    ({"name": "Alex Morgan", "birth_date": "1968-03-21", "sex": "robot", "email": "alex@example.com"},
     ["Choose the sex recorded"]),
    ({"name": "Alex Morgan", "birth_date": "1968-03-21", "sex": "female", "email": "not-an-email"},
     ["valid email"]),
])
def test_new_patient_says_which_field_is_wrong(client, fhir, staff, form, field_errors):
    r = client.post("/practice/patients/new", data={"csrf_token": pr.token(client), **form})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    for e in field_errors:
        assert e in html
    assert pr.search(fhir, "Patient") == []


def test_new_patient_is_a_valid_fhir_patient_and_duplicates_are_refused(client, fhir, staff):
    form = {"csrf_token": pr.token(client), "name": "  Alex  Jo Morgan ", "birth_date": "1968-03-21",
            "sex": "female", "email": "Alex@Example.com"}
    r = client.post("/practice/patients/new", data=form)
    assert r.status_code == 302
    pid = r.headers["Location"].rsplit("/", 1)[1]
    p = fhir.read(pd.SYS, "Patient", pid).json()
    assert p["name"][0]["family"] == "Morgan" and p["name"][0]["given"] == ["Alex", "Jo"]
    assert (p["birthDate"], p["gender"], p["telecom"]) == ("1968-03-21", "female",
                                                           [{"system": "email", "value": "alex@example.com"}])
    page = client.get(f"/practice/patients/{pid}").get_data(as_text=True)
    assert "Alex Jo Morgan" in page and "Not invited" in page and '<button type="submit">Invite</button>' in page
    again = client.post("/practice/patients/new", data=form)
    assert again.status_code == 422 and "already exists" in again.get_data(as_text=True)
    assert len(pr.search(fhir, "Patient")) == 1


def test_invite_resend_expiry_and_registration_status(app, client, fhir, staff):
    pid = pr.patient(fhir, "Alex", "Morgan", "1968-03-21", email="alex@example.com")
    page = f"/practice/patients/{pid}"
    assert "Not invited" in client.get(page).get_data(as_text=True)
    r = client.post(f"{page}/invite", data={"csrf_token": pr.token(client, page)})
    assert r.status_code == 302
    html = client.get(page).get_data(as_text=True)
    assert "The invite was sent to alex@example.com" in html and "valid for 4 days" in html
    assert re.search(r'Invited</span> The invite to alex@example.com is valid until \d{4}-\d{2}-\d{2}', html)
    assert '<button type="submit">Resend invite</button>' in html
    first = token_of(last_link(app, "alex@example.com"))
    # the patients list shows the status too
    assert ">Invited<" in client.get("/practice/patients").get_data(as_text=True)
    # four days later the invite has expired
    app.config["CLOCK_OFFSET_S"] = 4 * 24 * 3600 + 60
    html = client.get(page).get_data(as_text=True)
    assert "Invite expired" in html and '<button type="submit">Resend invite</button>' in html
    client.post(f"{page}/invite", data={"csrf_token": pr.token(client, page)})
    second = token_of(last_link(app, "alex@example.com"))
    assert second != first
    assert "A new invite was sent" in client.get(page).get_data(as_text=True)
    anon = app.test_client()
    assert anon.get(f"/register?token={first}").status_code == 410  # the old link died
    assert anon.get(f"/register?token={second}").status_code == 200
    r = anon.post("/register", data={"csrf_token": pd.csrf(anon, f"/register?token={second}"), "token": second,
                                     "password": pd.PASSWORD, "confirm": pd.PASSWORD})
    assert r.status_code == 302
    html = client.get(page).get_data(as_text=True)
    assert "Registered" in html and "Last sign-in: never" in html and "Resend invite" not in html
    r = anon.post("/login", data={"csrf_token": pd.csrf(anon, "/login"), "email": "alex@example.com",
                                  "password": pd.PASSWORD, "birth_date": "1968-03-21"})
    assert r.status_code == 302
    html = client.get(page).get_data(as_text=True)
    assert re.search(r"Last sign-in: \d{4}-\d{2}-\d{2}T", html)
    # a registered patient cannot be invited again: the page says so
    r = client.post(f"{page}/invite", data={"csrf_token": pr.token(client, page)})
    assert r.status_code == 422 and "has already registered" in r.get_data(as_text=True)


def test_invite_needs_an_email_in_the_record(client, fhir, staff):
    pid = pr.patient(fhir, "No", "Mail")
    page = f"/practice/patients/{pid}"
    r = client.post(f"{page}/invite", data={"csrf_token": pr.token(client, page)})
    assert r.status_code == 422 and "has no email address" in r.get_data(as_text=True)


def test_patient_page_lists_people_with_shared_access(app, client, fhir, staff):
    pid = pr.patient(fhir, email="pat@example.com")
    pd.add_user(app, "pat@example.com", "Pat Portal", "1970-05-04", pid)
    pd.add_proxy(app, fhir, pid, "kin@example.com", "Kim Kin", "1990-01-01")
    html = client.get(f"/practice/patients/{pid}").get_data(as_text=True)
    assert "People with shared access" in html and "Kim Kin (kin@example.com)" in html and "has access" in html


def test_unknown_patient_is_a_page_not_a_traceback(client, staff):
    for path in ("/practice/patients/nope", "/practice/patients/nope/results/new",
                 "/practice/patients/nope/documents/new", "/practice/patients/nope/messages/new"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "no such patient" in r.get_data(as_text=True)
