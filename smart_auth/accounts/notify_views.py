"""Email settings on the account page and the one-click unsubscribe link (RFC 8058), which needs no sign-in."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, flash, redirect, render_template, request

from . import session as auth
from .errors import InputError
from .notifications import KINDS
from .service import Accounts

bp = Blueprint("notify", __name__, template_folder="../templates")


def svc() -> Accounts:
    return current_app.extensions["accounts"]  # type: ignore[no-any-return]


@bp.post("/account/notifications")
@auth.login_required
def choose() -> Any:
    user = auth.current_user()
    assert user is not None  # login_required
    svc().notifications.choose(user, {k: request.form.get(k) == "on" for k in KINDS})
    flash("Your email settings are saved.", "success")
    return redirect("/account")


@bp.get("/unsubscribe")
def confirm() -> Any:
    """A mail's link opened in a browser: ask first (link scanners open links too), then POST."""
    token = request.args.get("t", "")
    try:
        recipient = svc().people.recipient_of(token)
    except InputError as err:
        return render_template("accounts/unsubscribe.html", error=err.message), 400
    return render_template("accounts/unsubscribe.html", token=token, practice=recipient == "practice")


@bp.post("/unsubscribe")
def unsubscribe() -> Any:
    """RFC 8058: a POST of List-Unsubscribe=One-Click (or the confirm button) turns the mails off."""
    token = request.args.get("t") or request.form.get("t", "")
    try:
        recipient = svc().notifications.unsubscribe(token)
    except InputError as err:
        return render_template("accounts/unsubscribe.html", error=err.message), 400
    return render_template("accounts/unsubscribe.html", done=True, practice=recipient == "practice")


def init_app(app: Flask) -> None:
    """Register the pages; the unsubscribe POST comes from mail programs, so it carries no CSRF token."""
    app.extensions.setdefault("csrf_exempt_prefixes", ["/fhir"]).append("/unsubscribe")
    app.register_blueprint(bp)

    @app.context_processor
    def _choices() -> dict[str, Any]:
        def notification_choices() -> dict[str, bool]:
            user = auth.current_user()
            return svc().notifications.of(user.id) if user is not None else dict.fromkeys(KINDS, True)
        return {"notification_choices": notification_choices}
