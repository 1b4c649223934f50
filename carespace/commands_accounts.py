"""Account commands: invite-patient, invite-staff, outbox, demo."""
from __future__ import annotations

import argparse
from typing import Any

from .cli import CommandError


def _app() -> Any:
    """The app for a short-lived command: no background sender, mail is flushed before exit."""
    from . import create_app, db
    app = create_app({"MAIL_WORKER": False})
    db.upgrade(app.extensions["carespace.engine"])
    return app


def _flush(app: Any) -> None:
    mailer = app.extensions["mailer"]
    if mailer.target is None:
        print("SMTP is not configured (CARESPACE_SMTP_URL): the mail is kept in the outbox, see `carespace outbox`")
    elif not mailer.flush():
        print("the mail server did not accept the mail yet; it stays in the outbox and is retried")


def _outbox(args: argparse.Namespace) -> int:
    if args.last is not None and args.last < 1:
        raise CommandError("--last must be a positive number")
    app = _app()
    rows = app.extensions["mailer"].outbox(last=args.last)
    if not rows:
        print("the outbox is empty")
    for r in rows:
        when = r["created_at"].strftime("%Y-%m-%d %H:%M") if r["created_at"] else ""
        print(f"#{r['id']}  {when}  {r['status']}  to: {r['to']}  subject: {r['subject']}")
        for link in r["links"]:
            print(f"    link: {link}")
        if r["last_error"] and r["status"] != "sent":
            print(f"    last error: {r['last_error']}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("outbox", help="print the mails in the outbox: to, subject, status, links")
    p.add_argument("--last", type=int, default=None, metavar="N", help="only the newest N mails")
    p.set_defaults(func=_outbox)
