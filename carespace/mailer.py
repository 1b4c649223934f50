"""The Mailer: mail is written to the outbox table first, then sent over SMTP after commit, with retries.

Nothing is lost when SMTP is down: a row stays queued until a delivery succeeds (backoff up to an hour).
Without CARESPACE_SMTP_URL the mail stays in the outbox and is logged; `carespace outbox` lists it.
Several processes (server, CLI) may deliver: a row is claimed with a conditional UPDATE before sending.
"""
from __future__ import annotations

import json
import logging
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from .background import Background
from .models import OutboxMail, utcnow

log = logging.getLogger("carespace.mail")
CLAIM_S = 120.0  # a claimed row is retried by anyone if its sender vanished for this long
MAX_BACKOFF_S = 3600.0
POLL_S = 30.0
RESERVED_HEADERS = {"from", "to", "subject", "date", "message-id", "content-type", "mime-version",
                    "content-transfer-encoding"}


@dataclass(frozen=True)
class SmtpTarget:
    """Where to send: parsed from smtp://host:port or smtps://user:pass@host:port."""

    host: str
    port: int
    ssl: bool
    user: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"SMTP URL must be smtp://host:port or smtps://user:pass@host:port, not {url!r}")
        ssl = parts.scheme == "smtps"
        return cls(parts.hostname, parts.port or (465 if ssl else 25), ssl,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)


def backoff_s(attempts: int) -> float:
    """Seconds before retry number `attempts`: 5 s, 10 s, 20 s ... capped at an hour."""
    return min(MAX_BACKOFF_S, 5.0 * 2 ** max(0, attempts - 1))


class OutboxMailer:
    """Implements carespace.mail.Mailer on the outbox table."""

    def __init__(self, sessions: sessionmaker[Session], smtp_url: str | None, mail_from: str,
                 worker: bool = True) -> None:
        from .db import make_sessions
        self.sessions = sessions
        self.writes = make_sessions(sessions.kw["bind"], write=True)  # units that claim or update a mail
        self.target = SmtpTarget.parse(smtp_url) if smtp_url else None
        self.mail_from = mail_from
        self.worker_enabled = worker
        self.sender = Background("carespace-mailer", self._step, log)

    # -- queueing -------------------------------------------------------------------------------
    def send(self, to: str, subject: str, text: str, *, html: str | None = None,
             links: list[str] | None = None, session: Session | None = None,
             headers: dict[str, str] | None = None) -> int:
        """Queue one mail; with `session` it joins the caller's transaction and goes out after its commit."""
        for name, value in (headers or {}).items():
            if name.lower() in RESERVED_HEADERS or "\n" in name + value or "\r" in name + value:
                raise ValueError(f"header {name!r} cannot be set here")
        row = OutboxMail(to_addr=to.strip(), subject=subject, text_body=text, html_body=html,
                         links=json.dumps(list(links or [])), status="queued", attempts=0, due_at=0.0,
                         headers=json.dumps(headers) if headers else None, created_at=utcnow())
        if session is not None:
            session.add(row)
            session.flush()
            mail_id = int(row.id)
            event.listen(session, "after_commit", lambda _s: self._queued(mail_id, to, subject, links),
                         once=True)
            return mail_id
        with self.writes.begin() as own:
            own.add(row)
            own.flush()
            mail_id = int(row.id)
        self._queued(mail_id, to, subject, links)
        return mail_id

    def _queued(self, mail_id: int, to: str, subject: str, links: list[str] | None) -> None:
        if self.target is None:
            log.warning("SMTP not configured; mail %s kept in the outbox: to=%s subject=%r links=%s",
                        mail_id, to, subject, links or [])
            return
        self.kick()

    # -- delivery -------------------------------------------------------------------------------
    def kick(self) -> None:
        """Wake the background sender (started on first use in server processes)."""
        if self.target is None or not self.worker_enabled:
            return
        self.sender.kick()

    def stop(self) -> None:
        self.sender.stop()

    def _step(self) -> float:
        self.deliver_due()
        return self._next_wait()

    def _next_wait(self) -> float:
        with self.sessions() as s:
            due = s.execute(select(OutboxMail.due_at).where(OutboxMail.status != "sent")
                            .order_by(OutboxMail.due_at).limit(1)).scalar()
        if due is None:
            return POLL_S
        return max(0.2, min(POLL_S, due - time.time()))

    def deliver_due(self) -> int:
        """Send every mail that is due now (in this thread); returns how many were sent."""
        if self.target is None:
            return 0
        now = time.time()
        with self.sessions() as s:
            ids = s.execute(select(OutboxMail.id).where(OutboxMail.status != "sent", OutboxMail.due_at <= now)
                            .order_by(OutboxMail.id).limit(100)).scalars().all()
        sent = 0
        for mail_id in ids:
            row = self._claim(mail_id)
            if row is not None:
                sent += self._attempt(row)
        return sent

    def flush(self, timeout: float = 20.0) -> bool:
        """Deliver what is due before a short-lived process (the CLI) exits; True when nothing is left due."""
        if self.target is None:
            return True
        deadline = time.time() + timeout
        while True:
            self.deliver_due()
            with self.sessions() as s:
                left = s.execute(select(OutboxMail.id).where(OutboxMail.status.in_(("queued", "sending")))
                                 .limit(1)).first()
            if left is None or time.time() > deadline:
                return left is None
            time.sleep(0.2)

    def _claim(self, mail_id: int) -> OutboxMail | None:
        now = time.time()
        with self.writes.begin() as s:
            res = s.execute(update(OutboxMail).where(OutboxMail.id == mail_id, OutboxMail.status != "sent",
                                                     OutboxMail.due_at <= now)
                            .values(status="sending", due_at=now + CLAIM_S)
                            .execution_options(synchronize_session=False))
            if res.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return s.get(OutboxMail, mail_id)

    def _attempt(self, row: OutboxMail) -> int:
        try:
            self._smtp_send(row)
        except (OSError, smtplib.SMTPException) as exc:
            attempts = row.attempts + 1
            retry = backoff_s(attempts)
            log.warning("mail %s to %s not sent (attempt %s, retry in %.0f s): %s", row.id, row.to_addr,
                        attempts, retry, exc)
            with self.writes.begin() as s:
                s.execute(update(OutboxMail).where(OutboxMail.id == row.id).values(
                    status="retrying", attempts=attempts, due_at=time.time() + retry,
                    last_error=f"{exc.__class__.__name__}: {exc}"[:500]))
            return 0
        with self.writes.begin() as s:
            s.execute(update(OutboxMail).where(OutboxMail.id == row.id).values(
                status="sent", attempts=row.attempts + 1, sent_at=utcnow(), last_error=None))
        log.info("mail %s sent to %s: %s", row.id, row.to_addr, row.subject)
        return 1

    def _smtp_send(self, row: OutboxMail) -> None:
        assert self.target is not None
        t = self.target
        msg = EmailMessage()
        msg["From"] = self.mail_from
        msg["To"] = row.to_addr
        msg["Subject"] = row.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=(parseaddr(self.mail_from)[1].split("@")[-1] or "carespace"))
        for name, value in json.loads(row.headers or "{}").items():
            msg[name] = value
        msg.set_content(row.text_body)
        if row.html_body:
            msg.add_alternative(row.html_body, subtype="html")
        smtp: smtplib.SMTP = (smtplib.SMTP_SSL(t.host, t.port, timeout=30) if t.ssl
                              else smtplib.SMTP(t.host, t.port, timeout=30))
        try:
            smtp.ehlo()
            if not t.ssl and t.user and smtp.has_extn("starttls"):
                smtp.starttls()
                smtp.ehlo()
            if t.user:
                smtp.login(t.user, t.password or "")
            smtp.send_message(msg)
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass

    # -- reading ----------------------------------------------------------------------------------
    def outbox(self, last: int | None = None) -> list[dict[str, Any]]:
        """The newest `last` mails (all when None), oldest first: for `carespace outbox` and tests."""
        with self.sessions() as s:
            q = select(OutboxMail).order_by(OutboxMail.id.desc())
            if last is not None:
                q = q.limit(last)
            rows = list(reversed(s.execute(q).scalars().all()))
        return [{"id": r.id, "to": r.to_addr, "subject": r.subject, "status": r.status,
                 "links": json.loads(r.links or "[]"), "text": r.text_body, "html": r.html_body,
                 "headers": json.loads(r.headers or "{}"),
                 "attempts": r.attempts, "last_error": r.last_error,
                 "created_at": r.created_at} for r in rows]


def init_app(app: Flask) -> None:
    """Put the outbox mailer at app.extensions["mailer"]; the sender thread starts on first mail or request."""
    mailer = OutboxMailer(app.extensions["carespace.sessions"], app.config.get("SMTP_URL"),
                          app.config.get("MAIL_FROM") or "CareSpace <no-reply@localhost>",
                          worker=bool(app.config.get("MAIL_WORKER", True)))
    app.extensions["mailer"] = mailer
    started = {"done": False}

    @app.before_request
    def _start_sender() -> None:  # picks up mail queued by other processes (CLI) or before a restart
        if not started["done"]:
            started["done"] = True
            mailer.kick()
