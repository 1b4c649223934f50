"""The patient portal in Chromium at phone and desktop sizes, on a Synthea patient imported as FHIR plus
documents and messages written through the FHIR service; axe-core checks every page (WCAG 2.1 AA)."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carespace import close_app
from carespace.demo_clinical import add_clinical_demo
from tests.conftest import ARTIFACTS, LiveServer, make_app
from tests.support import portal_data as pd
from tests.support.browser import check_page
from tests.support.data import synthea_dir

pytestmark = pytest.mark.e2e
SYNTHEA_FILE = "Frank_McDermott_e4b360e5-2fcb-44e7-8388-bc2281f27ee9.json"
BIRTH = "1980-02-29"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, smtp_server: Any, e2e_store: Any) -> Iterator[dict[str, Any]]:
    """A served portal whose patient came in as a Synthea Bundle, with demo documents and messages."""
    from carespace.importer import run_import
    folder = tmp_path_factory.mktemp("portal") / "live"
    folder.mkdir()
    db_url, serve_args = e2e_store(folder)
    server = LiveServer(folder, db_url, smtp_server.url, env={"CARESPACE_SECRET_KEY": "portal-e2e-secret"},
                        serve_args=serve_args)
    app = make_app(db_url, folder, SECRET_KEY="portal-e2e-secret", BASE_URL=server.url)
    svc = app.extensions["fhir_service"]
    run_import(svc, [synthea_dir() / SYNTHEA_FILE], out=open("/dev/null", "w"))
    _, page = svc.search(pd.SYS, "Patient", [("family", "McDermott")])
    pid = page.matches[0][1]
    add_clinical_demo(svc, pid)
    email = "frank@example.com"
    uid = pd.add_user(app, email, "Frank McDermott", BIRTH, pid)
    server.start()
    yield {"server": server, "url": server.url, "app": app, "svc": svc, "pid": pid, "uid": uid, "email": email}
    server.stop()
    close_app(app)


@pytest.fixture(params=["desktop", "phone"])
def view(request: pytest.FixtureRequest) -> Any:
    """The same flow at 1280 px and at 375 px."""
    pg = request.getfixturevalue("page" if request.param == "desktop" else "phone_page")
    pg.viewport_kind = request.param
    return pg


def sign_in(pg: Any, portal: dict[str, Any], target: str = "/health") -> None:
    """Through the login form when it is there; otherwise a real login session cookie."""
    url = portal["url"]
    pg.goto(f"{url}/login?next={target}")
    if pg.get_by_label("Date of birth").count():
        pg.get_by_label("Email").fill(portal["email"])
        pg.get_by_label("Password", exact=True).fill(pd.PASSWORD)
        pg.get_by_label("Date of birth").fill(BIRTH)
        pg.get_by_role("button", name="Sign in").click()
    else:
        pg.context.add_cookies([{"name": "carespace_session", "value": pd.session_cookie(portal["app"], portal["uid"]),
                                 "url": url}])
        pg.goto(url + target)
    pg.wait_for_url(re.compile(re.escape(url + target)))


def test_health_labs_history_and_documents(view: Any, portal: dict[str, Any], axe_js: Path) -> None:
    pg = view
    sign_in(pg, portal)
    assert pg.get_by_role("heading", name="Health", exact=True).is_visible()
    assert pg.get_by_text("Viewing the record of").is_visible()
    assert pg.get_by_role("link", name="Download").get_attribute("href") == "/health/download"
    assert pg.get_by_role("link", name="Send Record").get_attribute("href") == "/health/send-record"
    # a Synthea lab (no reference range) and a demo lab with history
    assert pg.get_by_role("button", name=re.compile("Show history for Glucose")).count() >= 1
    btn = pg.get_by_role("button", name=re.compile(r"Show history for Potassium"))
    assert btn.get_attribute("aria-expanded") == "false"
    history = pg.locator("#" + btn.get_attribute("aria-controls"))
    assert history.is_hidden()
    btn.click()
    assert btn.get_attribute("aria-expanded") == "true" and history.is_visible()
    rows = history.locator("table.history-table tbody tr")
    assert rows.count() == 4 and "4.5" in rows.nth(0).inner_text() and "Critical high" in rows.nth(1).inner_text()
    assert history.locator("svg[role=img]").is_visible()
    check_page(pg, axe_js, "health")
    docs = pg.locator("ul.doclist li")
    assert docs.count() == 6
    pg.get_by_role("link", name="View All Documents").click()
    pg.wait_for_url(re.compile(r"/health/documents"))
    assert pg.locator("ul.doclist li").count() == 9
    check_page(pg, axe_js, "documents")
    pg.get_by_label("Type").select_option(label="Diagnostic imaging study")
    pg.get_by_role("button", name="Filter").click()
    assert pg.locator("ul.doclist li").count() == 1
    pg.get_by_role("link", name="Chest X-ray").click()
    img = pg.get_by_role("img", name="Chest X-ray, two views")
    img.wait_for()
    pg.wait_for_function("(el) => el.complete", arg=img.element_handle())  # loaded (or failed), then measured
    assert pg.evaluate("(el) => el.naturalWidth", img.element_handle()) == 160
    check_page(pg, axe_js, "document-image")
    with pg.expect_download() as dl:
        pg.get_by_role("link", name="Download this document").click()
    assert dl.value.suggested_filename == "Chest-X-ray.png"
    pg.goto(portal["url"] + "/health/documents")
    pg.get_by_role("link", name="After-visit summary").click()
    frame = pg.locator("iframe.docframe")
    assert frame.get_attribute("title") == "After-visit summary (PDF)"
    resp = pg.request.get(portal["url"] + frame.get_attribute("src"))
    assert resp.headers["content-type"] == "application/pdf" and resp.body().startswith(b"%PDF")
    check_page(pg, axe_js, "document-pdf")
    pg.goto(portal["url"] + "/health/documents")
    pg.get_by_role("link", name="Care plan").click()
    assert "Assessment: stable" in pg.locator("pre.doctext").inner_text()


def test_messages_read_reply_once_and_compose(view: Any, portal: dict[str, Any], axe_js: Path) -> None:
    pg = view
    svc, pid = portal["svc"], portal["pid"]
    subject = f"Checking in ({pg.viewport_kind})"
    dr = json.loads(svc.search(pd.SYS, "Practitioner", [("name", "Chen")])[1].matches[0][2])["id"]
    svc.create(pd.SYS, "Communication", {
        "resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
        "sender": {"reference": f"Practitioner/{dr}", "display": "Dr. Maya Chen"},
        "recipient": [{"reference": f"Patient/{pid}"}], "sent": f"2099-01-0{1 if pg.viewport_kind == 'desktop' else 2}T09:00:00Z",
        "topic": {"text": subject}, "payload": [{"contentString": "How are you feeling after the new dose?"}]})
    sign_in(pg, portal, "/messages")
    first = pg.locator("ul.msglist li").first
    assert subject in first.inner_text() and "Unread" in first.inner_text()
    check_page(pg, axe_js, "messages")
    pg.get_by_role("link", name=re.compile(re.escape(subject))).click()
    assert pg.get_by_text("How are you feeling after the new dose?").is_visible()
    check_page(pg, axe_js, "message")
    pg.get_by_label("Your reply").fill("Much better, thank you.")
    pg.get_by_role("button", name="Reply").click()
    assert pg.get_by_text("Your reply was sent.").is_visible()
    assert pg.get_by_text("Much better, thank you.").is_visible()
    assert pg.get_by_role("button", name="Reply").count() == 0
    pg.get_by_role("link", name="← Messages").click()
    assert "Unread" not in pg.locator("ul.msglist li").first.inner_text()
    pg.get_by_role("link", name="Compose").click()
    check_page(pg, axe_js, "compose")
    pg.get_by_label("Category").select_option(label="Rx")
    pg.get_by_label("Subject").fill(f"Refill ({pg.viewport_kind})")
    pg.get_by_label("Message").fill("Please renew my prescription.")
    pg.get_by_role("button", name="Send").click()
    assert pg.get_by_text("Your message was sent to your care team.").is_visible()
    pg.goto(portal["url"] + "/messages")
    assert f"Refill ({pg.viewport_kind})" in pg.locator("section", has_text="Sent messages").inner_text()


def test_resources_access_log_menu_and_errors(view: Any, portal: dict[str, Any], axe_js: Path) -> None:
    pg = view
    sign_in(pg, portal)
    pg.get_by_role("link", name="Resources").click()
    for name, url in (("National Cancer Institute", "https://www.cancer.gov"),
                      ("American Cancer Society", "https://www.cancer.org"), ("CancerCare", "https://www.cancercare.org")):
        assert pg.get_by_role("link", name=name).get_attribute("href") == url
    check_page(pg, axe_js, "resources")
    pg.locator("details.usermenu summary").click()
    for name in ("Manage Users", "Connected apps", "Access log", "Sign out"):
        assert pg.get_by_role("link", name=name).or_(pg.get_by_role("button", name=name)).first.is_visible()
    pg.get_by_role("link", name="Access log").click()
    pg.wait_for_url(re.compile(r"/access-log"))
    assert pg.get_by_role("heading", name="Access log").is_visible()
    assert pg.get_by_text("Frank McDermott (you)").first.is_visible()
    check_page(pg, axe_js, "access-log")
    pg.goto(portal["url"] + "/health/no-such-page")
    assert pg.get_by_role("heading", name="Page not found").is_visible()
    assert pg.get_by_role("link", name="Go to Health").is_visible()
    check_page(pg, axe_js, "error")
    pg.context.clear_cookies()  # the session ends (expiry): back to login, then to the page
    pg.goto(portal["url"] + "/messages")
    assert "/login" in pg.url and "next=%2Fmessages" in pg.url


def test_keyboard_only(page: Any, portal: dict[str, Any]) -> None:
    page.viewport_kind = "desktop"
    sign_in(page, portal)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", "")
    btn = page.get_by_role("button", name=re.compile("Show history for Potassium"))
    btn.focus()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") not in ("none", "")
    page.keyboard.press("Enter")
    assert btn.get_attribute("aria-expanded") == "true"
    page.keyboard.press("Space")
    assert btn.get_attribute("aria-expanded") == "false"


def test_without_javascript_history_opens_by_a_page_load(browser: Any, portal: dict[str, Any]) -> None:
    ctx = browser.new_context(java_script_enabled=False, viewport={"width": 768, "height": 1024})
    pg = ctx.new_page()
    pg.viewport_kind = "tablet-nojs"
    try:
        ctx.add_cookies([{"name": "carespace_session", "value": pd.session_cookie(portal["app"], portal["uid"]),
                          "url": portal["url"]}])
        pg.goto(portal["url"] + "/health")
        btn = pg.get_by_role("button", name=re.compile("Show history for Potassium"))
        btn.click()
        pg.wait_for_url(re.compile(r"open=loinc-2823-3"))
        assert pg.locator("#hist-loinc-2823-3").is_visible()
        assert pg.evaluate("document.documentElement.scrollWidth") <= 768
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "portal-health-tablet-nojs.png"), full_page=True)
    finally:
        ctx.close()
