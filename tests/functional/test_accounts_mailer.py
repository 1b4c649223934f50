"""The outbox mailer: stored first, sent after commit, retried when SMTP is down, nothing lost."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from carespace import close_app
from carespace.mailer import OutboxMailer, SmtpTarget, backoff_s
from carespace.models import OutboxMail
from tests.conftest import _new_db_url, make_app
from tests.support.postgres import free_port


@pytest.fixture
def mail_app(backend: str, pg_cluster: Any, tmp_path: Path, smtp_server: Any) -> Iterator[Any]:
    app = make_app(_new_db_url(backend, pg_cluster, tmp_path), tmp_path / "instance", SMTP_URL=smtp_server.url)
    yield app
    close_app(app)


def test_without_smtp_mail_stays_in_outbox(app: Any) -> None:
    mailer = app.extensions["mailer"]
    mail_id = mailer.send("a@example.org", "Hello", "Body https://x/y", links=["https://x/y"])
    [row] = mailer.outbox()
    assert row["id"] == mail_id and row["status"] == "queued" and row["links"] == ["https://x/y"]
    assert mailer.deliver_due() == 0


def test_sent_over_smtp_after_commit(mail_app: Any, smtp_server: Any) -> None:
    mailer = mail_app.extensions["mailer"]
    after = len(smtp_server.messages)
    mailer.send("b@example.org", "Plain hello", "Text part https://h/1", html="<p>Html part</p>",
                links=["https://h/1"])
    msg = smtp_server.wait_for("b@example.org", "Plain hello", after=after)
    assert "Text part" in msg.text and "Html part" in msg.html and "https://h/1" in msg.links()
    assert mailer.flush(5)
    assert mailer.outbox(last=1)[0]["status"] == "sent"


def test_joins_the_callers_transaction(mail_app: Any, smtp_server: Any) -> None:
    mailer = mail_app.extensions["mailer"]
    sessions = mail_app.extensions["carespace.sessions"]
    after = len(smtp_server.messages)
    with sessions() as s:
        mailer.send("rolled@example.org", "Never", "x", session=s)
        s.rollback()
    assert mailer.outbox() == []
    with sessions() as s:
        mailer.send("committed@example.org", "Committed mail", "x", session=s)
        mail_app.extensions["mailer"].deliver_due()  # not committed yet: nothing to deliver
        assert all("committed@example.org" not in m.to for m in smtp_server.messages[after:])
        s.commit()
    smtp_server.wait_for("committed@example.org", "Committed mail", after=after)


def test_smtp_down_is_retried_and_nothing_lost(mail_app: Any, smtp_server: Any) -> None:
    sessions = mail_app.extensions["carespace.sessions"]
    down = OutboxMailer(sessions, f"smtp://127.0.0.1:{free_port()}", "CareSpace <no-reply@localhost>",
                        worker=False)
    after = len(smtp_server.messages)
    down.send("later@example.org", "Retried mail", "x")
    assert down.deliver_due() == 0
    [row] = down.outbox()
    assert row["status"] == "retrying" and row["attempts"] == 1 and row["last_error"]
    assert down.deliver_due() == 0  # not due yet: backoff
    with sessions.begin() as s:
        s.execute(update(OutboxMail).values(due_at=0))
    up = OutboxMailer(sessions, smtp_server.url, "CareSpace <no-reply@localhost>", worker=False)
    assert up.deliver_due() == 1
    smtp_server.wait_for("later@example.org", "Retried mail", after=after)
    assert up.outbox()[0]["status"] == "sent" and up.deliver_due() == 0


def test_smtp_url_and_backoff() -> None:
    t = SmtpTarget.parse("smtps://me%40x.org:p%3Ass@mail.example.org:2465")
    assert (t.host, t.port, t.ssl, t.user, t.password) == ("mail.example.org", 2465, True, "me@x.org", "p:ss")
    assert SmtpTarget.parse("smtp://localhost").port == 25
    with pytest.raises(ValueError):
        SmtpTarget.parse("http://x")
    assert backoff_s(1) == 5 and backoff_s(2) == 10 and backoff_s(30) == 3600
