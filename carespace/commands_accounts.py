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


def _invite_patient(args: argparse.Namespace) -> int:
    from smart_auth.accounts.errors import AccountError
    if args.patient_id and (args.name or args.birth_date):
        raise CommandError("give --patient-id ID alone (optionally with --email), "
                           "or --email, --birth-date and --name")
    app = _app()
    try:
        r = app.extensions["accounts"].invitations.invite_patient(patient_id=args.patient_id, email=args.email,
                                                      birth_date=args.birth_date, name=args.name)
    except AccountError as exc:
        raise CommandError(exc.message) from None
    made = "created Patient/" if r.created_patient else "Patient/"
    verb = "re-sent the registration invite (the earlier link no longer works)" if r.resent else \
        "sent the registration invite"
    print(f"{verb} to {r.email} for {made}{r.patient_id}; the link is valid for 4 days (outbox #{r.mail_id})")
    _flush(app)
    return 0


def _invite_staff(args: argparse.Namespace) -> int:
    from smart_auth.accounts.errors import AccountError
    app = _app()
    try:
        r = app.extensions["accounts"].invitations.invite_staff(args.email, args.name, args.birth_date)
        if args.admin:
            from smart_auth.accounts.models import User
            from smart_auth.accounts.staff import make_admin
            with app.extensions["carespace.sessions"]() as dbs:
                ref = dbs.get(User, r.user_id).fhir_user
            make_admin(app.extensions["accounts"], ref)
    except AccountError as exc:
        raise CommandError(exc.message) from None
    verb = ("re-sent the staff invite" if r.resent else "sent the staff invite") + (
        " (administrator)" if args.admin else "")
    print(f"{verb} to {r.email}; the link is valid for 4 days (outbox #{r.mail_id})")
    _flush(app)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from smart_auth.accounts.demo import load_demo
    app = _app()
    logins = load_demo(app.extensions["fhir_service"])
    base = app.config["BASE_URL"]
    print(f"Demo practice loaded. Sign in at {base}/login with email, password and date of birth:")
    for d in logins:
        print(f"  {d.who:<16} {d.note}")
        print(f"      email: {d.email}   password: {d.password}   date of birth: {d.birth_date}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("invite-patient", help="create the Patient if needed and email the registration invite")
    p.add_argument("--patient-id", metavar="ID", help="an existing Patient (again: resend, the old link dies)")
    p.add_argument("--email", metavar="E")
    p.add_argument("--birth-date", metavar="YYYY-MM-DD")
    p.add_argument("--name", metavar='"Given Family"')
    p.set_defaults(func=_invite_patient)
    p = sub.add_parser("invite-staff", help="invite a practice staff member")
    p.add_argument("--email", metavar="E", required=True)
    p.add_argument("--name", metavar="N", required=True)
    p.add_argument("--birth-date", metavar="YYYY-MM-DD", help="else the staff member enters it when registering")
    p.add_argument("--admin", action="store_true", help="an administrator: manages staff, apps and the audit trail")
    p.set_defaults(func=_invite_staff)
    p = sub.add_parser("demo", help="load the demo practice, staff user and patients and print their logins")
    p.set_defaults(func=_demo)
    p = sub.add_parser("outbox", help="print the mails in the outbox: to, subject, status, links")
    p.add_argument("--last", type=int, default=None, metavar="N", help="only the newest N mails")
    p.set_defaults(func=_outbox)
