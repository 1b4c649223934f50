"""Account flows as a person walks them: a served CareSpace, a real SMTP server and headless Chromium."""
from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text as sql

pytestmark = pytest.mark.e2e
PASSWORD = "Str0ng!pass"
PAT, PAT_BIRTH = "pat.e2e@example.org", "1980-02-03"
KID, KID_BIRTH = "kid.e2e@example.org", "2001-05-06"


def invite_link(smtp: Any, to: str, after: int) -> str:
    msg = smtp.wait_for(to, "Complete Your Registration", after=after)
    assert "4 days" in msg.text and "Complete Your Registration" in msg.html
    return next(link for link in msg.links() if "/register?token=" in link)


def invite_patient(live: Any, smtp: Any) -> tuple[str, str]:
    """`carespace invite-patient`; returns (patient id, registration link from the mail)."""
    after = len(smtp.messages)
    out = live.cli("invite-patient", "--email", PAT, "--birth-date", PAT_BIRTH, "--name", "Pat Doe")
    pid = re.search(r"Patient/(\S+);", out.stdout)
    assert pid, out.stdout + out.stderr
    return pid.group(1), invite_link(smtp, PAT, after)


def set_password(page: Any, link: str, password: str = PASSWORD, **fields: str) -> None:
    page.goto(link)
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Confirm password", exact=True).fill(password)
    page.get_by_role("button", name="Complete Your Registration").click()


def sign_in(page: Any, base: str, email: str, birth: str, password: str = PASSWORD) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Date of birth").fill(birth)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page: Any) -> None:
    page.locator("details.usermenu > summary").click()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login"))


def test_invite_register_login_and_forgot_password(live_server: Any, smtp_server: Any, page: Any) -> None:
    base = live_server.url
    _pid, link = invite_patient(live_server, smtp_server)
    page.goto(link)
    rules = page.locator("#pw-rules")
    for weak, rule in [("Sh0rt!x", "at least 8 characters"), ("nouppercase1!", "an uppercase letter"),
                       ("NOLOWERCASE1!", "a lowercase letter"), ("NoNumbers!!", "a number"),
                       ("NoSpecial123", "a special character")]:
        page.get_by_label("Password", exact=True).fill(weak)
        page.get_by_label("Confirm password", exact=True).fill(weak)
        assert f"Needs {rule}" in rules.inner_text()  # named as you type
        assert rules.inner_text().count("Needs") == 1
        page.get_by_role("button", name="Complete Your Registration").click()
        assert "/register" in page.url  # refused
    set_password(page, link)
    page.wait_for_url(re.compile(r"/login$"))
    assert "registration is complete" in page.content()

    sign_in(page, base, PAT, "1980-02-04")  # wrong date of birth
    assert "The email, password or date of birth is not correct" in page.inner_text("main")
    sign_in(page, base, PAT, PAT_BIRTH)
    page.wait_for_url(re.compile(r"/health"))
    assert "Viewing the record of Pat Doe" in page.inner_text("body")
    sign_out(page)

    page.get_by_role("link", name="Forgot password").click()
    after = len(smtp_server.messages)
    page.get_by_label("Email").fill(PAT)
    page.get_by_role("button", name="Send reset link").click()
    assert "If a CareSpace account uses that email address" in page.inner_text("main")
    msg = smtp_server.wait_for(PAT, "Reset your CareSpace password", after=after)
    assert "1 hour" in msg.text
    reset = next(link for link in msg.links() if "/reset-password?token=" in link)
    page.goto(reset)
    page.get_by_label("Password", exact=True).fill("N3w!password")
    page.get_by_label("Confirm password", exact=True).fill("N3w!password")
    page.get_by_role("button", name="Set new password").click()
    page.wait_for_url(re.compile(r"/login$"))
    sign_in(page, base, PAT, PAT_BIRTH, "N3w!password")
    page.wait_for_url(re.compile(r"/health"))
    page.goto(reset)
    assert "already been used" in page.inner_text("main")


def test_resend_and_expired_link(live_server: Any, smtp_server: Any, page: Any) -> None:
    pid, first = invite_patient(live_server, smtp_server)
    after = len(smtp_server.messages)
    assert "re-sent" in live_server.cli("invite-patient", "--patient-id", pid).stdout
    second = invite_link(smtp_server, PAT, after)
    assert second != first
    page.goto(first)
    assert "replaced by a newer one" in page.inner_text("main")
    assert "ask our practice to resend" in page.inner_text("main")
    engine = create_engine(live_server.env["CARESPACE_DATABASE_URL"])  # move the clock past the 4 days
    with engine.begin() as db:
        db.execute(sql("UPDATE auth_link_token SET expires_at = expires_at - 4 * 24 * 3600 - 1 WHERE state = 'active'"))
    engine.dispose()
    page.goto(second)
    text = page.inner_text("main")
    assert "expired" in text and "4 days" in text and "ask our practice to resend" in text
    out = live_server.cli("outbox", "--last", "2").stdout
    assert out.count(f"to: {PAT}") == 2 and "sent" in out and "/register?token=" in out


def test_grant_proxy_registers_resend_and_revoke(live_server: Any, smtp_server: Any, page: Any,
                                                 browser: Any) -> None:
    base = live_server.url
    _pid, link = invite_patient(live_server, smtp_server)
    set_password(page, link)
    page.wait_for_url(re.compile(r"/login$"))
    sign_in(page, base, PAT, PAT_BIRTH)
    page.wait_for_url(re.compile(r"/health"))
    page.locator("details.usermenu > summary").click()
    page.get_by_role("link", name="Manage Users").click()
    after = len(smtp_server.messages)
    page.get_by_label("Email").fill(KID)
    page.get_by_label("Date of birth").fill(KID_BIRTH)
    page.get_by_role("button", name="Grant access").click()
    old = invite_link(smtp_server, KID, after)
    row = page.get_by_role("row").filter(has_text=KID)
    after = len(smtp_server.messages)
    row.get_by_role("button", name="Resend invite").click()
    new = invite_link(smtp_server, KID, after)
    assert new != old

    proxy = browser.new_context(viewport={"width": 375, "height": 812}).new_page()
    try:
        proxy.goto(old)
        assert "ask our practice to resend" in proxy.inner_text("main")
        set_password(proxy, new, **{"Full name": "Kid Doe", "Date of birth": "2001-05-07"})
        assert "does not match" in proxy.inner_text("main")
        set_password(proxy, new, **{"Full name": "Kid Doe", "Date of birth": KID_BIRTH})
        proxy.wait_for_url(re.compile(r"/login$"))
        sign_in(proxy, base, KID, KID_BIRTH)
        proxy.wait_for_url(re.compile(r"/health"))
        assert "Viewing the record of Pat Doe" in proxy.inner_text("body")

        page.reload()
        row = page.get_by_role("row").filter(has_text=KID)
        assert "Has access" in row.inner_text()
        row.get_by_role("button", name="Revoke access").click()
        assert "Access revoked" in page.inner_text("main")

        proxy.reload()  # the proxy's open session fails on its next request
        assert "Viewing the record of Pat Doe" not in proxy.inner_text("body")
        assert "do not have access" in proxy.inner_text("main")
    finally:
        proxy.context.close()
