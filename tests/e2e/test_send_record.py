"""Send Record end to end: a served CareSpace, a real SMTP server, headless Chromium, jwcrypto and fhirclient.

The patient signs in and sends a Synthea patient's records for a date range; the recipient follows the
mailed link, decrypts with jwcrypto and with the page (WebCrypto in Chromium), and both give an R4
Bundle holding exactly the records in the range (expected set computed from the Synthea JSON).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from fhirclient.models.bundle import Bundle
from jwcrypto import jwa, jwe, jwk

from carespace import close_app
from tests.conftest import make_app, synthea_files
from tests.support import synthea as sy
from tests.support.synthea import expected

pytestmark = pytest.mark.e2e
PATIENT = "Fletcher_Hyatt"  # imaging studies on both sides of the range
START, END = "1990-01-01", "1994-12-31"
LOGIN_PW = "Login-Pass-1!"
SECRET = "Tell-by-phone-42!"
DR = "dr.elsewhere@example.org"
NOTES = "For my cardiology referral next week."


@pytest.fixture(autouse=True)
def _jwcrypto_p2c(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwa, "default_max_pbkdf2_iterations", 1_000_000)  # our p2c is 210,000


@pytest.fixture
def world(live_server: Any) -> dict[str, Any]:
    """The live server with one Synthea patient imported and a patient account for it."""
    path = next(p for p in synthea_files() if p.stem.startswith(PATIENT))
    live_server.cli("import", str(path))
    app = make_app(live_server.env["CARESPACE_DATABASE_URL"], Path(live_server.env["CARESPACE_INSTANCE_DIR"]),
                   MAIL_WORKER=False)
    p = next(q for q in sy.patients() if q.name == path.stem)
    from fhir_server.access.context import AccessContext
    _, page = app.extensions["fhir_service"].search(AccessContext.system("t"), "Patient",
                                                    [("identifier", f"{sy.SYNTHEA_ID}|{p.identifier}")])
    pid = page.matches[0][1]
    birth = p.patient.resource["birthDate"]
    from smart_auth.accounts import passwords
    from smart_auth.accounts.models import PatientAccess, User
    with app.extensions["carespace.sessions"].begin() as s:
        user = User(email="fletcher@example.org", name="Fletcher Hyatt", birth_date=birth, role="patient",
                    status="active", password_hash=passwords.hash_password(LOGIN_PW), fhir_user=f"Patient/{pid}")
        s.add(user)
        s.flush()
        s.add(PatientAccess(user_id=user.id, patient_id=pid, relationship="self", status="active"))
    yield {"app": app, "pid": pid, "birth": birth, "p": p}
    close_app(app)


def sign_in(page: Any, base: str, birth: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill("fletcher@example.org")
    page.get_by_label("Password", exact=True).fill(LOGIN_PW)
    page.get_by_label("Date of birth").fill(birth)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/health"))


def send_record(page: Any, base: str, recipient: str = DR) -> None:
    page.goto(base + "/health")
    page.get_by_role("link", name="Send Record").click()
    page.get_by_label("Recipient email").fill(recipient)
    page.get_by_label("Start date").fill(START)
    page.get_by_label("End date").fill(END)
    page.get_by_label("Notes").fill(NOTES)
    page.get_by_label("Password", exact=True).fill(SECRET)
    page.get_by_label("Confirm password").fill(SECRET)
    page.get_by_role("button", name="Send Record").click()
    page.wait_for_url(re.compile(r"/health/sent-records"))


def check_bundle(bundle: dict[str, Any], world: dict[str, Any]) -> None:
    """Valid R4 per fhirclient; exactly the Synthea records in range, plus the notes for the recipient."""
    Bundle(bundle, strict=True)
    resources = [e["resource"] for e in bundle["entry"]]
    notes = [r for r in resources if r["resourceType"] == "Communication"]
    assert [n["payload"][0]["contentString"] for n in notes] == [NOTES]
    records = [r for r in resources if r["resourceType"] != "Communication"]
    assert records[0] == {**records[0], "resourceType": "Patient", "id": world["pid"]}
    want = expected(world["p"], START, END)
    assert Counter(sy.server_fingerprint(r) for r in records) == sy.bundle_fingerprints(world["p"], want)
    assert 100 < len(records) < len(world["p"].entries) / 2  # a real subset


def test_send_record_mail_jwcrypto_browser_cli_revoke(live_server: Any, smtp_server: Any, page: Any,
                                                       browser: Any, tmp_path: Path, world: dict[str, Any]) -> None:
    base = live_server.url
    sign_in(page, base, world["birth"])
    page.get_by_role("link", name="Send Record").click()
    form_text = page.inner_text("main")
    assert "another channel" in form_text and "Minimum strength: at least 12 characters" in form_text
    page.get_by_label("Password", exact=True).fill("weak")
    page.get_by_role("button", name="Send Record").click()
    errors = page.get_by_role("alert").inner_text()
    assert "Recipient email" in errors and "Password needs at least 12 characters" in errors
    assert "Enter the start date." in errors

    after = len(smtp_server.messages)
    send_record(page, base)
    assert "Not opened yet" in page.inner_text("main")
    mail = smtp_server.wait_for(DR, "sent you a health record", after=after)
    assert "Fletcher Hyatt" in mail.subject and NOTES in mail.text and SECRET not in mail.text + mail.html
    assert "Immunization" not in mail.text and world["birth"] not in mail.text  # no health information
    link = next(u for u in mail.links() if "/records/" in u)

    # a program: Accept: application/jose, decrypted by jwcrypto
    r = requests.get(link, headers={"Accept": "application/jose"}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/jose")
    token = jwe.JWE()
    token.deserialize(r.text, key=jwk.JWK.from_password(SECRET))
    assert token.jose_header["alg"] == "PBES2-HS512+A256KW" and token.jose_header["enc"] == "A256GCM"
    assert token.jose_header["cty"] == "application/fhir+json" and token.jose_header["p2c"] >= 210_000
    from_jwcrypto = json.loads(token.payload)
    check_bundle(from_jwcrypto, world)

    # the command line
    jwe_file = tmp_path / "record.jwe"
    jwe_file.write_text(r.text)
    out = live_server.cli("decrypt-record", str(jwe_file), "--password", SECRET)
    assert json.loads(out.stdout) == from_jwcrypto
    bad = live_server.cli("decrypt-record", str(jwe_file), "--password", "Not-the-one-1!", check=False)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "wrong password" in bad.stderr

    # a person: the page decrypts in Chromium (WebCrypto), wrong password first
    recipient = browser.new_context(viewport={"width": 375, "height": 800}, accept_downloads=True)
    rp = recipient.new_page()
    rp.goto(link)
    rp.get_by_label("Password").fill("Wrong-password-1!")
    rp.get_by_role("button", name="Open record").click()
    rp.get_by_text("The password is not correct").wait_for()
    rp.get_by_label("Password").fill(SECRET)
    rp.get_by_role("button", name="Open record").click()
    rp.get_by_role("heading", name="Health record", exact=True).wait_for()
    summary = rp.inner_text("#summary")
    assert "Fletcher" in summary and NOTES in summary
    from bundles.builder import kind_of
    kinds = Counter(kind_of(e["resource"]) for e in from_jwcrypto["entry"]
                    if e["resource"]["resourceType"] not in ("Patient", "Communication"))
    for kind, n in kinds.items():
        assert f"{kind} ({n})" in summary
    assert rp.evaluate("document.documentElement.scrollWidth") <= 375
    with rp.expect_download() as dl:
        rp.get_by_role("link", name="Download FHIR JSON").click()
    from_browser = json.loads(Path(dl.value.path()).read_text())
    assert from_browser == from_jwcrypto
    rp.screenshot(path=str(Path(__file__).resolve().parents[2] / "test-artifacts" / "send-record-recipient-phone.png"),
                  full_page=True)

    # the patient sees it was opened, then revokes it
    page.goto(base + "/health/sent-records")
    assert "Opened 20" in page.inner_text("main")
    page.get_by_role("button", name=f"Revoke link sent to {DR}").click()
    page.wait_for_url(re.compile(r"/health/sent-records"))
    assert "no longer works" in page.inner_text("main")
    rp.goto(link)
    assert "This link was withdrawn" in rp.inner_text("main")
    assert requests.get(link, headers={"Accept": "application/jose"}, timeout=30).status_code == 410
    recipient.close()


def test_expired_link_and_wrong_password_cli(live_server: Any, smtp_server: Any, page: Any,
                                              world: dict[str, Any]) -> None:
    base = live_server.url
    sign_in(page, base, world["birth"])
    after = len(smtp_server.messages)
    send_record(page, base, "late@example.org")
    link = next(u for u in smtp_server.wait_for("late@example.org", "health record", after=after).links()
                if "/records/" in u)
    from sqlalchemy import update

    from bundles.models import SentRecord
    with world["app"].extensions["carespace.sessions"].begin() as s:
        s.execute(update(SentRecord).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    page.goto(link)
    assert "This link has expired" in page.inner_text("main")
    assert requests.get(link, headers={"Accept": "application/jose"}, timeout=30).status_code == 410
    page.goto(base + "/health/sent-records")
    assert "Expired" in page.inner_text("main")


def test_download_and_readable_view_in_browser(live_server: Any, phone_page: Any, world: dict[str, Any]) -> None:
    base = live_server.url
    sign_in(phone_page, base, world["birth"])
    with phone_page.expect_download() as dl:
        phone_page.get_by_role("link", name="Download", exact=True).click()
    bundle = json.loads(Path(dl.value.path()).read_text())
    Bundle(bundle, strict=True)
    everything = [e["resource"] for e in bundle["entry"]]
    assert Counter(sy.server_fingerprint(r) for r in everything) == sy.bundle_fingerprints(
        world["p"], expected(world["p"], "0001-01-01", "9999-12-30"))
    phone_page.goto(base + "/health/download/view")
    assert "Health record of Mr. Fletcher Hyatt" in phone_page.inner_text("main")
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 375
    phone_page.emulate_media(media="print")
    assert not phone_page.locator("header.topbar").is_visible()
    phone_page.emulate_media(media="screen")
    phone_page.goto(base + "/health/send-record")
    phone_page.get_by_role("button", name="Send Record").click()
    assert "Please correct these" in phone_page.get_by_role("alert").inner_text()
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 375
    phone_page.screenshot(path=str(Path(__file__).resolve().parents[2] / "test-artifacts" / "send-record-form-phone.png"),
                          full_page=True)
