"""Issue 16, item 8 in Chromium: a page on another loopback port (same site, so SameSite=Lax cookies go
along) frames /oauth/authorize for a signed-in patient. The consent ("Allow ...") must not show in the
frame: frame-ancestors 'none' and X-Frame-Options: DENY make the browser refuse it (clickjacking)."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.test_smart_browser import BIRTH, PASSWORD, REDIRECT, _seed

pytestmark = pytest.mark.e2e


@pytest.fixture
def framing_site() -> Iterator[tuple[str, dict[str, str]]]:
    """A plain HTTP server on another loopback port; its page frames whatever URL `frame["src"]` holds."""
    frame: dict[str, str] = {"src": "about:blank"}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
            body = (f'<!doctype html><title>Win a prize</title><h1>Click the button!</h1>'
                    f'<iframe id="victim" title="prize" src="{frame["src"]}" width="800" height="600"></iframe>').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", frame
    server.shutdown()
    server.server_close()


def test_another_loopback_port_cannot_frame_the_consent_page(live_server: Any, page: Any,
                                                             framing_site: tuple[str, dict[str, str]]) -> None:
    page.set_default_timeout(60_000)  # the machine is shared: be patient, not flaky
    _seed(live_server)
    reg = json.loads(live_server.cli("register-client", "--name", "Prize App", "--redirect-uri", REDIRECT).stdout)
    authorize = live_server.url + "/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": reg["client_id"], "redirect_uri": REDIRECT, "state": "s-1",
        "scope": "launch/patient patient/Patient.rs", "aud": live_server.url + "/fhir",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"})
    page.goto(authorize)  # signed in at the top level, the consent shows: what a frame would show
    page.get_by_label("Email").fill("phone@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Date of birth").fill(BIRTH)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Prize App").wait_for()
    assert page.get_by_role("button", name="Allow").is_visible()

    refused: list[str] = []
    page.on("console", lambda msg: refused.append(msg.text) if "frame" in msg.text.lower() else None)
    site, frame = framing_site
    frame["src"] = authorize
    with page.expect_response(lambda r: r.url.startswith(live_server.url + "/oauth/authorize")) as answer:
        page.goto(site)
    assert answer.value.status == 200  # the browser got the consent page, and then refused to show it framed
    assert answer.value.headers["x-frame-options"] == "DENY"
    page.get_by_role("heading", name="Click the button!").wait_for()
    page.wait_for_timeout(1000)
    victim = page.frame_locator("#victim")
    assert victim.get_by_role("button", name="Allow").count() == 0
    assert victim.get_by_text("Prize App").count() == 0
    assert any("frame-ancestors" in m or "X-Frame-Options" in m for m in refused), refused
