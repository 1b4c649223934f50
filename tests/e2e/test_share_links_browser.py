"""Share by link end to end: a served CareSpace, headless Chromium at 375 px, the portal makes the link and
CareSpace's /shl viewer opens it (manifest POST, WebCrypto decryption), the key never sent anywhere."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from carespace import close_app
from carespace.demo_clinical import add_clinical_demo
from tests.conftest import make_app
from tests.support import portal_data as pd

pytestmark = pytest.mark.e2e
BIRTH = "1970-05-04"
PASSCODE = "tulip-42"


@pytest.fixture
def world(live_server: Any) -> Any:
    app = make_app(live_server.env["CARESPACE_DATABASE_URL"], Path(live_server.env["CARESPACE_INSTANCE_DIR"]),
                   MAIL_WORKER=False)
    svc = app.extensions["fhir_service"]
    pid = pd.add_patient(svc, "Pat", "Sharer", BIRTH)
    add_clinical_demo(svc, pid)
    pd.add_user(app, "pat@example.com", "Pat Sharer", BIRTH, pid)
    yield {"app": app, "pid": pid}
    close_app(app)


def no_sideways_scroll(pg: Any) -> None:
    assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_a_link_made_in_the_portal_opens_in_the_viewer_at_375px(live_server: Any, phone_page: Any, browser: Any,
                                                                world: Any) -> None:
    base, pg = live_server.url, phone_page
    pg.goto(base + "/login?next=/health")
    pg.get_by_label("Email").fill("pat@example.com")
    pg.get_by_label("Password", exact=True).fill(pd.PASSWORD)
    pg.get_by_label("Date of birth").fill(BIRTH)
    pg.get_by_role("button", name="Sign in").click()
    pg.wait_for_url(re.compile(r"/health"))
    pg.get_by_role("link", name="Share by link").click()
    pg.get_by_label("Label").fill("For Dr. Lee")
    pg.get_by_label("Passcode", exact=True).fill(PASSCODE)
    assert pg.get_by_label("Share without a passcode").is_visible() and pg.get_by_label("Labs").is_visible()
    no_sideways_scroll(pg)
    pg.get_by_role("button", name="Make link").click()
    assert pg.get_by_role("heading", name="Your share link is ready").is_visible()
    assert pg.get_by_role("img", name="QR code of your share link").is_visible()
    no_sideways_scroll(pg)
    viewer_link = pg.get_by_label("Link to open in a browser").input_value()
    assert viewer_link.startswith(base + "/shl#shlink:/")
    body = viewer_link.split("shlink:/", 1)[1]
    key = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["key"]

    # the recipient: another browser context, at 375 px, with only the link
    ctx = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    sent: list[str] = []
    ctx.on("request", lambda req: sent.append(req.url + " " + (req.post_data or "")))
    viewer = ctx.new_page()
    try:
        viewer.goto(viewer_link)
        assert viewer.get_by_text("Shared records: \u201cFor Dr. Lee\u201d").is_visible()
        viewer.get_by_label("Your name or organization").fill("Riverside Clinic")
        viewer.get_by_label("Passcode").fill("wrong-one")
        viewer.get_by_role("button", name="Open records").click()
        viewer.get_by_text("The passcode is not correct. Attempts left: 9.").wait_for()
        viewer.get_by_label("Passcode").fill(PASSCODE)
        viewer.get_by_role("button", name="Open records").click()
        viewer.get_by_role("heading", name="Health records").wait_for()
        text = viewer.inner_text("main")
        assert "Pat Sharer" in text and "Labs (27)" in text and "Potassium" in text
        assert viewer.get_by_role("button", name="Open records").is_hidden()
        no_sideways_scroll(viewer)
        with viewer.expect_download() as dl:
            viewer.get_by_role("link", name="Download FHIR JSON").click()
        bundle = json.loads(Path(dl.value.path()).read_text())
        assert bundle["resourceType"] == "Bundle" and bundle["entry"][0]["resource"]["resourceType"] == "Patient"
        assert all(key not in s for s in sent), "the key left the browser"
    finally:
        ctx.close()

    pg.goto(base + "/health/share-links")
    listing = pg.inner_text("main")
    assert "For Dr. Lee" in listing and "Riverside Clinic" in listing and "1 time" in listing
