"""Helpers for the account tests (no tests here): forms with CSRF, invites, registration, sign-in."""
from __future__ import annotations

import re
from typing import Any

PASSWORD = "Str0ng!pass"


def csrf(client: Any, url: str = "/login") -> str:
    html = client.get(url).get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def post(client: Any, url: str, data: dict[str, str], page: str | None = None) -> Any:
    return client.post(url, data={"csrf_token": csrf(client, page or url.split("?")[0]),
                                  **data})


def last_link(app: Any, to: str) -> str:
    mails = [m for m in app.extensions["mailer"].outbox() if m["to"] == to]
    assert mails, f"no mail to {to}"
    return str(mails[-1]["links"][0])


def token_of(link: str) -> str:
    return link.split("token=", 1)[1]


def invite(app: Any, email: str = "pat@example.org", birth: str = "1980-02-03", name: str = "Pat Doe") -> tuple[str, str]:
    """Invite a new patient; returns (patient id, registration token)."""
    r = app.extensions["accounts"].invitations.invite_patient(email=email, birth_date=birth, name=name)
    return str(r.patient_id), token_of(last_link(app, email))


def register(client: Any, token: str, password: str = PASSWORD, confirm: str | None = None, **extra: str) -> Any:
    return post(client, "/register", {"token": token, "password": password,
                                      "confirm": password if confirm is None else confirm, **extra},
                page=f"/register?token={token}")


def login(client: Any, email: str, birth: str, password: str = PASSWORD, **extra: str) -> Any:
    return post(client, "/login", {"email": email, "password": password, "birth_date": birth, **extra})


def patient_user(app: Any, client: Any, email: str = "pat@example.org", birth: str = "1980-02-03",
                 name: str = "Pat Doe") -> str:
    """A registered, signed-in patient; returns the patient id."""
    pid, token = invite(app, email, birth, name)
    assert register(client, token).status_code == 302
    assert login(client, email, birth).status_code == 302
    return pid


def text(resp: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", resp.get_data(as_text=True)))
