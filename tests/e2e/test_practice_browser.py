"""The practice console in Chromium at desktop (1280 px) and phone (375 px) width, on `carespace demo`
data, as Dr. Maya Chen would use it: sign in, find and add patients, invite, post and correct a result,
upload a document, answer the Inbox, write a new message; axe-core finds no serious or critical problem
on any page, nothing scrolls sideways, and a patient cannot open the console."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carespace.demo_clinical import _pdf
from tests.conftest import LiveServer
from tests.support.browser import check_page

pytestmark = pytest.mark.e2e
PASSWORD = "CareSpace-Demo1!"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, smtp_server: Any, e2e_store: Any) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("console") / "live"
    folder.mkdir()
    db_url, serve_args = e2e_store(folder)
    server = LiveServer(folder, db_url, smtp_server.url, serve_args=serve_args)
    server.cli("db", "upgrade")
    server.cli("demo")
    server.start()
    yield {"server": server, "url": server.url, "smtp": smtp_server}
    server.stop()


@pytest.fixture(params=["desktop", "phone"])
def view(request: pytest.FixtureRequest) -> Any:
    pg = request.getfixturevalue("page" if request.param == "desktop" else "phone_page")
    pg.viewport_kind = request.param
    return pg


def sign_in(pg: Any, url: str, email: str = "dr.chen@example.com", birth: str = "1975-05-14") -> None:
    pg.goto(url + "/login")
    pg.get_by_label("Email").fill(email)
    pg.get_by_label("Password", exact=True).fill(PASSWORD)
    pg.get_by_label("Date of birth").fill(birth)
    pg.get_by_role("button", name="Sign in").click()


def open_patient(pg: Any, url: str, name: str) -> None:
    pg.goto(url + "/practice/patients")
    pg.get_by_label("Name").fill(name)
    pg.get_by_role("button", name="Search").click()
    pg.get_by_role("link", name=name, exact=True).click()
    pg.get_by_role("heading", name=name, exact=True).wait_for()


def test_sign_in_lands_on_the_console_and_patients(view: Any, console: dict[str, Any], axe_js: Path) -> None:
    pg, url = view, console["url"]
    sign_in(pg, url)
    pg.wait_for_url(url + "/practice")
    assert pg.get_by_role("heading", name="Practice console").is_visible()
    assert pg.get_by_role("link", name="Turn on two-step verification").is_visible()
    check_page(pg, axe_js, "console-home")
    pg.get_by_role("navigation", name="Practice console").get_by_role("link", name="Patients").click()
    rows = pg.locator("table.patients tbody tr")
    assert rows.count() == 5
    for name, state in (("Taylor Brooks", "Not invited"), ("Jamie Rivera", "Invited"),
                        ("Casey Nguyen", "Invite expired"), ("Alex Morgan", "Registered")):
        assert state in pg.locator("tr", has_text=name).inner_text()
    check_page(pg, axe_js, "console-patients")
    pg.get_by_label("Date of birth").fill("1974-01-30")
    pg.get_by_role("button", name="Search").click()
    assert rows.count() == 1 and "Jamie Rivera" in rows.first.inner_text()


def test_new_patient_and_invite(view: Any, console: dict[str, Any], axe_js: Path) -> None:
    pg, url = view, console["url"]
    sign_in(pg, url)
    pg.goto(url + "/practice/patients")
    pg.get_by_role("link", name="New patient").click()
    pg.get_by_role("button", name="Add patient").click()
    assert pg.get_by_text("Enter the patient's full name").first.is_visible()
    check_page(pg, axe_js, "console-new-patient-errors")
    who = f"Robin {'Desk' if pg.viewport_kind == 'desktop' else 'Phone'}"
    email = f"robin.{pg.viewport_kind}@example.com"
    pg.get_by_label("Name").fill(who)
    pg.get_by_label("Date of birth").fill("1988-04-12")
    pg.get_by_label("Sex").select_option(label="Female")
    pg.get_by_label("Email").fill(email)
    pg.get_by_role("button", name="Add patient").click()
    pg.get_by_role("heading", name=who).wait_for()
    assert pg.get_by_text("Not invited").is_visible()
    pg.get_by_role("button", name="Invite", exact=True).click()
    assert pg.get_by_text(f"The invite was sent to {email}").is_visible()
    assert pg.get_by_text(re.compile(r"valid until \d{4}-\d{2}-\d{2}")).is_visible()
    assert pg.get_by_role("button", name="Resend invite").is_visible()
    check_page(pg, axe_js, "console-patient")
    mail = console["smtp"].wait_for(email, "Complete Your Registration")
    assert "4 days" in mail.text and mail.links


def test_post_and_correct_a_result_the_patient_sees(view: Any, console: dict[str, Any], axe_js: Path,
                                                    browser: Any) -> None:
    pg, url = view, console["url"]
    sign_in(pg, url)
    open_patient(pg, url, "Sam Lee")
    pg.get_by_role("link", name="Post result").click()
    check_page(pg, axe_js, "console-post-result")
    pg.get_by_label("Test", exact=True).select_option(value="2823-3")
    value = "6.9" if pg.viewport_kind == "desktop" else "7.1"
    pg.get_by_label("Value").fill(value)
    pg.get_by_label("Date", exact=True).fill(dt.date.today().isoformat())
    pg.get_by_role("button", name="Post result").click()
    assert pg.get_by_text("The result was posted").is_visible()
    assert pg.locator(".flag.critical", has_text="HH").first.is_visible()
    check_page(pg, axe_js, "console-result")
    pg.get_by_label("Corrected value").fill("4.4")
    pg.get_by_label("Reason for the correction").fill("Haemolysed sample; repeat was normal")
    pg.get_by_role("button", name="Correct result").click()
    assert pg.get_by_text("The result was corrected").is_visible()
    assert "amended" in pg.locator("table", has_text="Version").inner_text()
    # the patient sees the corrected value in Health at once
    ctx = browser.new_context(viewport=pg.viewport_size)
    patient = ctx.new_page()
    try:
        sign_in(patient, url, "sam.lee@example.com", "1990-11-02")
        patient.wait_for_url(url + "/health")
        row = patient.locator("tbody.lab", has_text="Potassium").first
        assert "4.4" in row.inner_text() and "Corrected" in row.inner_text()
        patient.goto(url + "/practice")
        assert patient.get_by_role("heading", name="You cannot open this page").is_visible()
    finally:
        ctx.close()


def test_upload_document(view: Any, console: dict[str, Any], axe_js: Path, tmp_path: Path) -> None:
    pg, url = view, console["url"]
    sign_in(pg, url)
    open_patient(pg, url, "Alex Morgan")
    pg.get_by_role("link", name="Upload document").click()
    bad = tmp_path / "notes.pdf"
    bad.write_text("just text pretending to be a PDF")
    pg.get_by_label("File").set_input_files(str(bad))
    pg.get_by_label("Title").fill("Pretend PDF")
    pg.get_by_label("Document type").select_option(label="Laboratory report")
    pg.get_by_label("Date", exact=True).fill("2026-01-10")
    pg.get_by_role("button", name="Upload document").click()
    assert pg.get_by_text("not a PDF or an image").first.is_visible()
    check_page(pg, axe_js, "console-upload-refused")
    good = tmp_path / "lipids.pdf"
    good.write_bytes(_pdf("Lipid panel"))
    title = f"Lipid panel ({pg.viewport_kind})"
    pg.get_by_label("File").set_input_files(str(good))
    pg.get_by_label("Title").fill(title)
    pg.get_by_label("Document type").select_option(label="Laboratory report")
    pg.get_by_label("Date", exact=True).fill("2026-01-10")
    pg.get_by_role("button", name="Upload document").click()
    assert pg.get_by_text("The document was uploaded").is_visible()
    assert pg.locator("ul.doclist", has_text=title).is_visible()


def test_inbox_conversation_reply_done_and_new_message(view: Any, console: dict[str, Any], axe_js: Path) -> None:
    pg, url = view, console["url"]
    sign_in(pg, url)
    pg.goto(url + "/practice/inbox")
    assert pg.locator("ul.msglist li").count() >= 3
    check_page(pg, axe_js, "console-inbox")
    pg.get_by_label("Category").select_option(label="Rx")
    pg.get_by_role("button", name="Filter").click()
    items = pg.locator("ul.msglist li")
    assert items.count() >= 1 and all("Rx" in items.nth(i).inner_text() for i in range(items.count()))
    pg.goto(url + "/practice/inbox")
    first = pg.locator("ul.msglist li").first
    first.get_by_role("link").click()
    check_page(pg, axe_js, "console-conversation")
    reply = pg.get_by_role("button", name="Reply", exact=True)
    pg.get_by_label(re.compile("Your reply to")).fill(f"Thanks, we will call you ({pg.viewport_kind}).")
    reply.click()
    assert pg.get_by_text("Your reply was sent").is_visible()
    assert pg.get_by_text(f"Thanks, we will call you ({pg.viewport_kind}).").is_visible()
    assert pg.get_by_role("button", name="Reply", exact=True).count() == 0
    pg.get_by_role("button", name="Open again").first.click()
    assert pg.get_by_text("back among the open ones").is_visible()
    pg.get_by_role("button", name="Mark done").first.click()
    assert pg.get_by_text("Marked done.").is_visible()
    pg.goto(url + "/practice/inbox")
    pg.get_by_role("link", name="New message").click()
    pg.get_by_label("Name").fill("Taylor")
    pg.get_by_role("button", name="Find patient").click()
    pg.get_by_role("link", name="Write to Taylor Brooks").click()
    check_page(pg, axe_js, "console-new-message")
    pg.get_by_label("Category").select_option(label="Health")
    pg.get_by_label("Subject").fill(f"Welcome ({pg.viewport_kind})")
    pg.get_by_label("Message", exact=True).fill("Your first appointment is on Monday at 9.")
    pg.get_by_role("button", name="Send").click()
    assert pg.get_by_text("Your message was sent to Taylor Brooks.").is_visible()


def test_administration_staff_apps_and_audit_trail(view: Any, console: dict[str, Any], axe_js: Path) -> None:
    pg, url = view, console["url"]
    sign_in(pg, url)
    pg.get_by_role("navigation", name="Practice console").get_by_role("link", name="Administration").click()
    assert "Maya Chen" in pg.locator("table").inner_text() and pg.get_by_text("Administrator").first.is_visible()
    check_page(pg, axe_js, "console-admin-staff")
    email = f"nina.{pg.viewport_kind}@example.com"
    pg.get_by_label("Name").fill("Nina Nurse")
    pg.get_by_label("Email").fill(email)
    pg.get_by_role("button", name="Invite staff").click()
    assert pg.get_by_text(f"The staff invite was sent to {email}").is_visible()
    pg.get_by_role("link", name="SMART apps").click()
    check_page(pg, axe_js, "console-admin-apps")
    pg.get_by_label("App name").fill(f"Diary ({pg.viewport_kind})")
    pg.get_by_label("Redirect URIs").fill("https://diary.example/callback")
    pg.get_by_role("button", name="Register app").click()
    assert pg.get_by_role("heading", name=re.compile("Registered: Diary")).is_visible()
    pg.get_by_role("link", name="Audit trail").click()
    pg.get_by_label("Action").select_option(label="Invitation")
    pg.get_by_role("button", name="Filter").click()
    assert pg.locator("table.audit tbody tr").count() >= 1
    assert "Invitation" in pg.locator("table.audit tbody tr").first.inner_text()
    check_page(pg, axe_js, "console-admin-audit")
