"""Download, Send Record, Sent records and the recipient link over the Flask test client (both backends)."""
from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhirclient.models.bundle import Bundle
from jwcrypto import jwa, jwe, jwk
from sqlalchemy import text, update

from carespace.demo_clinical import add_clinical_demo
from tests.support import portal_data as pd

SECRET = "Share-with-Dr-7!"
DR = "dr.outside@example.org"


@pytest.fixture(autouse=True)
def _jwcrypto_p2c(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwa, "default_max_pbkdf2_iterations", 1_000_000)  # our p2c is 210,000


@pytest.fixture
def patient(app: Any, fhir: Any) -> tuple[str, int]:
    pid = pd.add_patient(fhir, "Pat", "Sender", "1970-05-04")
    add_clinical_demo(fhir, pid)
    uid = pd.add_user(app, "pat@example.com", "Pat Sender", "1970-05-04", pid)
    return pid, uid


@pytest.fixture
def signed_in(app: Any, client: Any, patient: tuple[str, int]) -> tuple[str, int]:
    pd.sign_in(app, client, patient[1])
    return patient


def open_jwe(token: str, password: str = SECRET) -> dict[str, Any]:
    """Decrypt with jwcrypto (an independent JOSE implementation) and parse with fhirclient's R4 models."""
    obj = jwe.JWE()
    obj.deserialize(token, key=jwk.JWK.from_password(password))
    assert obj.jose_header["cty"] == "application/fhir+json" and obj.jose_header["p2c"] >= 210_000
    bundle = json.loads(obj.payload)
    Bundle(bundle, strict=True)  # raises on anything that is not valid R4 for the models
    return bundle  # type: ignore[no-any-return]


def send(client: Any, **fields: str) -> Any:
    data = {"csrf_token": pd.csrf(client, "/health/send-record"), "recipient": DR, "start": "2000-01-01",
            "end": datetime.now(UTC).date().isoformat(), "notes": "Records for my new-patient visit on Monday.",
            "password": SECRET, "confirm": SECRET, "action": "send", **fields}
    return client.post("/health/send-record", data=data)


def last_link(app: Any) -> str:
    mail = app.extensions["mailer"].outbox(last=1)[0]
    return next(link for link in mail["links"] if "/records/" in link)


def test_pages_require_login(client: Any) -> None:
    for path in ("/health/download", "/health/download/view", "/health/send-record", "/health/sent-records"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login?next="), path


def test_download_is_an_r4_bundle_with_documents_inline(client: Any, signed_in: tuple[str, int]) -> None:
    pid, _ = signed_in
    r = client.get("/health/download")
    assert r.status_code == 200 and r.mimetype == "application/fhir+json"
    assert r.headers["Content-Disposition"].startswith("attachment;") and ".json" in r.headers["Content-Disposition"]
    bundle = r.get_json()
    Bundle(bundle, strict=True)
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert bundle["type"] == "collection" and types[0] == "Patient" and bundle["entry"][0]["resource"]["id"] == pid
    assert types.count("Observation") == 27 and types.count("DocumentReference") == 9 and types.count("Communication") == 3
    assert "AuditEvent" not in types and "Binary" not in types
    for e in bundle["entry"]:
        if e["resource"]["resourceType"] == "DocumentReference":
            att = e["resource"]["content"][0]["attachment"]
            assert "url" not in att and len(base64.b64decode(att["data"])) == att["size"]
    assert all(e["fullUrl"].endswith(f"/{e['resource']['resourceType']}/{e['resource']['id']}") for e in bundle["entry"])
    events = client.application.extensions["fhir_service"].search(pd.SYS, "AuditEvent", [("patient", pid), ("_count", "500")])[1]
    assert "Download: 41 records as a FHIR Bundle" in " ".join(t for _, _, t in events.matches)


def test_download_view_is_readable_and_printable(client: Any, signed_in: tuple[str, int]) -> None:
    for path in ("/health/download/view", "/health/download?view=1"):
        html = client.get(path).get_data(as_text=True)
        assert "Health record of Pat Sender" in html and "Labs (27)" in html and "Documents (9)" in html
        assert "Potassium" in html and "Chest X-ray" in html and 'href="/health/download"' in html
    css = client.get("/static/bundles/bundles.css").get_data(as_text=True)
    assert "@media print" in css and ".topbar" in css.split("@media print", 1)[1]


def test_download_date_range_and_bad_dates(client: Any, signed_in: tuple[str, int]) -> None:
    today = datetime.now(UTC).date()
    start = (today - timedelta(days=35)).isoformat()
    bundle = client.get(f"/health/download?start={start}&end={today.isoformat()}").get_json()
    docs = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"]
    assert len(docs) == 3 and all(d["date"][:10] >= start for d in docs)  # 5, 12 and 30 days ago
    r = client.get("/health/download?start=yesterday")
    assert r.status_code == 400 and "Start date must be a date" in r.get_data(as_text=True)


def test_form_labels_rule_channel_and_preview(client: Any, signed_in: tuple[str, int]) -> None:
    html = client.get("/health/send-record").get_data(as_text=True)
    for field, label in [("recipient", "Recipient email"), ("start", "Start date"), ("end", "End date"),
                         ("notes", "Notes"), ("password", "Password"), ("confirm", "Confirm password")]:
        assert f'<label for="{field}">{label}</label>' in html and f'id="{field}"' in html
    assert "Minimum strength: at least 12 characters" in html
    assert "Give the password to the recipient by another channel" in html
    assert re.search(r"<th scope=\"row\">Labs</th><td>27</td>", html)
    assert re.search(r"<th scope=\"row\">Documents</th><td>9</td>", html)
    assert ">Send Record</button>" in html
    today = datetime.now(UTC).date()
    r = client.post("/health/send-record", data={"csrf_token": pd.csrf(client, "/health/send-record"),
                                                 "action": "preview", "start": (today - timedelta(days=35)).isoformat(),
                                                 "end": today.isoformat(), "password": SECRET, "recipient": DR})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and re.search(r"<th scope=\"row\">Documents</th><td>3</td>", html)
    assert SECRET not in html and f'value="{DR}"' in html  # the password is never echoed back


def test_validation_errors_named_per_field(app: Any, client: Any, signed_in: tuple[str, int]) -> None:
    r = send(client, recipient="not-an-email", start="2024-05-01", end="2024-04-01", password="short",
             confirm="different")
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "Recipient email</a>: Recipient email must be an email address" in html
    assert "End date</a>: End date must be on or after the start date." in html
    assert "Password</a>: Password needs at least 12 characters" in html
    assert "Confirm password</a>: Confirm password must match the password." in html
    assert 'aria-invalid="true"' in html and "short" not in re.findall(r'value="([^"]*)"', html)
    r = send(client, start="", end="")
    assert "Enter the start date." in r.get_data(as_text=True) and "Enter the end date." in r.get_data(as_text=True)
    assert app.extensions["mailer"].outbox() == [] and app.extensions["bundles"].sent(signed_in[0]) == []


def test_send_mail_retrieve_decrypt_and_opened(app: Any, client: Any, signed_in: tuple[str, int]) -> None:
    pid, _ = signed_in
    r = send(client)
    assert r.status_code == 303 and r.headers["Location"] == "/health/sent-records"
    listing = client.get("/health/sent-records").get_data(as_text=True)
    assert "Your record was sent to dr.outside@example.org" in listing and "Not opened yet" in listing
    mail = app.extensions["mailer"].outbox(last=1)[0]
    assert mail["to"] == DR and "Pat Sender sent you a health record" in mail["subject"]
    body = mail["text"] + mail["html"]
    assert "Records for my new-patient visit on Monday." in body and SECRET not in body
    assert "Potassium" not in body and "X-ray" not in body and "1970-05-04" not in body  # no health information
    link = last_link(app)
    token = link.rsplit("/", 1)[1]
    assert link.startswith("http://localhost/records/") and len(token) >= 40

    anon = app.test_client()
    page = anon.get(f"/records/{token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and '<label for="record-password">Password</label>' in html
    assert "record.js" in html and page.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "Not opened yet" in client.get("/health/sent-records").get_data(as_text=True)  # a page view is no open

    r = anon.get(f"/records/{token}", headers={"Accept": "application/jose"})
    assert r.status_code == 200 and r.mimetype == "application/jose"
    bundle = open_jwe(r.get_data(as_text=True))
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types[0] == "Patient" and types.count("Observation") == 27 and types.count("DocumentReference") == 9
    notes = [e["resource"] for e in bundle["entry"] if e["resource"].get("category", [{}])[0].get("text")
             == "Notes for the recipient"]
    assert notes[0]["payload"][0]["contentString"] == "Records for my new-patient visit on Monday."
    assert notes[0]["sender"]["reference"] == f"Patient/{pid}" and notes[0]["recipient"][0]["display"] == DR
    with pytest.raises(jwe.InvalidJWEData):
        open_jwe(r.get_data(as_text=True), "Wrong-password-1!")

    listing = client.get("/health/sent-records").get_data(as_text=True)
    assert "Opened 20" in listing and "Revoke link" in listing
    events = app.extensions["fhir_service"].search(pd.SYS, "AuditEvent", [("patient", pid), ("_count", "200")])[1]
    details = " ".join(text for _, _, text in events.matches)
    assert "encrypted record retrieved" in details and "Send Record recipient dr.outside@example.org" in details


def test_password_is_stored_nowhere(app: Any, client: Any, signed_in: tuple[str, int]) -> None:
    send(client)
    engine = app.extensions["carespace.engine"]
    from carespace.db import metadatas
    with engine.connect() as conn:
        for md in metadatas():
            for table in md.sorted_tables:
                for row in conn.execute(table.select()):
                    assert SECRET not in json.dumps([str(v) for v in row]), table.name
    rows = app.extensions["bundles"].sent(signed_in[0])
    assert len(rows) == 1 and rows[0].jwe and rows[0].jwe.count(".") == 4


def test_revoke_expire_unknown_and_other_patients(app: Any, client: Any, fhir: Any, signed_in: tuple[str, int]) -> None:
    send(client)
    first = last_link(app).rsplit("/", 1)[1]
    send(client, recipient="second@example.org")
    second = last_link(app).rsplit("/", 1)[1]
    rows = app.extensions["bundles"].sent(signed_in[0])
    by_email = {r.recipient_email: r for r in rows}

    # another patient's user cannot see or revoke these
    other_pid = pd.add_patient(fhir, "Oth", "Er", "1980-01-01")
    other = app.test_client()
    pd.sign_in(app, other, pd.add_user(app, "other@example.com", "Oth Er", "1980-01-01", other_pid))
    assert DR not in other.get("/health/sent-records").get_data(as_text=True)
    r = other.post(f"/health/sent-records/{by_email[DR].id}/revoke",
                   data={"csrf_token": pd.csrf(other, "/health/sent-records")})
    assert r.status_code == 404

    r = client.post(f"/health/sent-records/{by_email[DR].id}/revoke",
                    data={"csrf_token": pd.csrf(client, "/health/sent-records")})
    assert r.status_code == 303
    listing = client.get("/health/sent-records").get_data(as_text=True)
    assert "no longer works" in listing and "Revoked" in listing
    anon = app.test_client()
    r = anon.get(f"/records/{first}")
    assert r.status_code == 410 and "This link was withdrawn" in r.get_data(as_text=True)
    assert anon.get(f"/records/{first}", headers={"Accept": "application/jose"}).status_code == 410
    assert app.extensions["bundles"].sent(signed_in[0])[-1].jwe is None  # erased, not just hidden

    with app.extensions["carespace.sessions"].begin() as s:
        from bundles.models import SentRecord
        s.execute(update(SentRecord).where(SentRecord.id == by_email["second@example.org"].id)
                  .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    r = anon.get(f"/records/{second}")
    assert r.status_code == 410 and "This link has expired" in r.get_data(as_text=True)
    r = anon.get(f"/records/{second}", headers={"Accept": "application/jose"})
    assert r.status_code == 410 and "expired" in r.get_data(as_text=True)
    assert "Expired" in client.get("/health/sent-records").get_data(as_text=True)
    r = anon.get("/records/not-a-real-token")
    assert r.status_code == 404 and "This link is not valid" in r.get_data(as_text=True)


def test_retrievals_rate_limited_per_record_and_per_ip(app: Any, client: Any, signed_in: tuple[str, int]) -> None:
    send(client)
    token = last_link(app).rsplit("/", 1)[1]
    service = app.extensions["bundles"]
    service.record_limit = (2, 3600)
    anon = app.test_client()
    codes = [anon.get(f"/records/{token}", headers={"Accept": "application/jose"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = anon.get(f"/records/{token}", headers={"Accept": "application/jose"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    service.record_limit, service.ip_limit = (100, 3600), (1, 900)
    r = app.test_client().get(f"/records/{token}", environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert r.status_code == 200
    r = app.test_client().get(f"/records/{token}", environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert r.status_code == 429 and "Too many attempts" in r.get_data(as_text=True)


def test_proxy_sends_for_the_patient(app: Any, client: Any, fhir: Any, patient: tuple[str, int]) -> None:
    pid, _ = patient
    uid = pd.add_proxy(app, fhir, pid, "kid@example.com", "Kid Sender", "2001-01-01")
    pd.sign_in(app, client, uid)
    assert send(client).status_code == 303
    row = app.extensions["bundles"].sent(pid)[0]
    assert row.sender_name == "Kid Sender" and (row.sender_ref or "").startswith("RelatedPerson/")
    assert "Kid Sender sent you a health record" in app.extensions["mailer"].outbox(last=1)[0]["subject"]


def test_decrypt_record_command(app: Any, client: Any, signed_in: tuple[str, int], tmp_path: Any,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from carespace.cli import main
    send(client)
    token = last_link(app).rsplit("/", 1)[1]
    path = tmp_path / "record.jwe"
    path.write_text(app.test_client().get(f"/records/{token}", headers={"Accept": "application/jose"})
                    .get_data(as_text=True))
    assert main(["decrypt-record", str(path), "--password", SECRET]) == 0
    out = capsys.readouterr().out
    Bundle(json.loads(out), strict=True)
    assert main(["decrypt-record", str(path), "--password", "Nope-nope-nope-1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "carespace decrypt-record: error: wrong password (or the record was altered)"
    assert main(["decrypt-record", str(tmp_path / "missing.jwe"), "--password", SECRET]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_csrf_required(client: Any, signed_in: tuple[str, int]) -> None:
    r = client.post("/health/send-record", data={"recipient": DR, "password": SECRET, "confirm": SECRET})
    assert r.status_code == 400


def test_no_record_yet_preview(app: Any, client: Any, fhir: Any) -> None:
    pid = pd.add_patient(fhir, "New", "Patient", "1990-01-01")
    pd.sign_in(app, client, pd.add_user(app, "new@example.com", "New Patient", "1990-01-01", pid))
    html = client.get("/health/send-record").get_data(as_text=True)
    assert "No records in these dates." in html
    with app.extensions["carespace.engine"].connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM bundles_sent_record")).scalar() == 0
