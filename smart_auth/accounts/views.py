"""Account pages: login (+ two-step), logout, registration, forgot/reset password, Manage Users, Account security."""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, flash, redirect, render_template, request, session

from . import notify_views, security
from . import session as auth
from .errors import AccountError, InputError, LinkProblem, NotAllowed, PolicyError, Throttled
from .passwords import RULES
from .service import Accounts

bp = Blueprint("accounts", __name__, template_folder="../templates", static_folder="../static/accounts",
               static_url_path="/static/accounts")
SECOND_STEP_S = 5 * 60
DEVICE_COOKIE = "carespace_device"  # "this browser signed in to this account before" (security.py), sign-in only


def svc() -> Accounts:
    return current_app.extensions["accounts"]  # type: ignore[no-any-return]


def safe_next(target: str | None) -> str | None:
    """Only local paths: never an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def landing(user: Any) -> str:
    if user.role == "staff" and any(r.rule == "/practice" for r in current_app.url_map.iter_rules()):
        return "/practice"
    return "/health"


def _page(template: str, status: int = 200, **ctx: Any) -> tuple[str, int]:
    return render_template(f"accounts/{template}.html", rules=[text for _check, text in RULES], active_tab=None,
                           **ctx), status


# ---- login ------------------------------------------------------------------------------------------
@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    nxt = safe_next(request.values.get("next"))
    if request.method == "GET":
        if auth.current_user() is not None:
            return redirect(nxt or landing(auth.current_user()))
        return _page("login", next=nxt or "", email="", birth_date="",
                     expired=request.args.get("expired") == "1")
    form = request.form
    try:
        user = svc().login.authenticate(form.get("email", ""), form.get("password", ""), form.get("birth_date", ""),
                                        request.remote_addr, request.cookies.get(DEVICE_COOKIE))
    except AccountError as err:
        status = 429 if isinstance(err, Throttled) else 401
        return _page("login", status, error=err.message, next=nxt or "", email=form.get("email", ""),
                     birth_date=form.get("birth_date", ""))
    if user.totp_secret:
        session.clear()
        session["2fa"] = {"uid": user.id, "epoch": user.session_epoch, "at": int(time.time()), "next": nxt or ""}
        return redirect("/login/verify")
    auth.login_user(user)
    return _trusted(redirect(nxt or landing(user)), user)


def _trusted(resp: Any, user: Any) -> Any:
    """Remember that this browser signed in to this account: its sign-ins are throttled on their own."""
    cookie = svc().login.device_cookie(user, request.cookies.get(DEVICE_COOKIE))
    resp.set_cookie(DEVICE_COOKIE, cookie, max_age=int(security.DEVICE_TTL_S), path="/login", httponly=True,
                    samesite="Lax", secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))
    return resp


@bp.route("/login/verify", methods=["GET", "POST"])
def login_verify() -> Any:
    pending = session.get("2fa")
    if not pending or time.time() - pending.get("at", 0) > SECOND_STEP_S:
        session.pop("2fa", None)
        flash("Please sign in again.", "error")
        return redirect("/login")
    if request.method == "GET":
        return _page("verify")
    try:
        user = svc().login.verify_second_factor(int(pending["uid"]), request.form.get("code", ""), request.remote_addr)
    except AccountError as err:
        return _page("verify", 429 if isinstance(err, Throttled) else 401, error=err.message)
    if user.session_epoch != pending.get("epoch"):
        return redirect("/login")
    auth.login_user(user)
    return _trusted(redirect(safe_next(pending.get("next")) or landing(user)), user)


@bp.post("/logout")
def logout() -> Any:
    auth.logout_user()
    flash("You have signed out.", "success")
    return redirect("/login")


@bp.get("/session/ping")
def session_ping() -> Any:
    """The idle-timeout warning's "Stay signed in" button: any request renews the session."""
    user = auth.current_user()
    timeout = int(current_app.config.get("IDLE_TIMEOUT_S", auth.IDLE_TIMEOUT_S))
    return {"signed_in": user is not None, "idle_timeout_s": timeout}


# ---- registration -------------------------------------------------------------------------------------
@bp.route("/register", methods=["GET", "POST"])
def register() -> Any:
    token = request.values.get("token", "")
    try:
        info = svc().registrations.link_info(token)
    except LinkProblem as err:
        return _page("link_problem", 410 if err.reason != "invalid" else 404, message=err.message,
                     heading="This registration link cannot be used")
    if request.method == "GET":
        return _page("register", token=token, info=info)
    form = request.form
    try:
        svc().registrations.register(token, form.get("password", ""), form.get("confirm", ""), form.get("birth_date", ""),
                       form.get("name", ""))
    except PolicyError as err:
        return _page("register", 422, token=token, info=info, error=err.message, failures=err.failures,
                     name=form.get("name", ""), birth_date=form.get("birth_date", ""))
    except LinkProblem as err:
        return _page("link_problem", 410, message=err.message, heading="This registration link cannot be used")
    except InputError as err:
        return _page("register", 422, token=token, info=info, error=err.message, name=form.get("name", ""),
                     birth_date=form.get("birth_date", ""))
    auth.logout_user()
    flash("Your registration is complete. Sign in with your email, password and date of birth."
          if not info.existing_account else "You now have access. Sign in to see the shared record.", "success")
    return redirect("/login")


# ---- forgot / reset password -------------------------------------------------------------------------
@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password() -> Any:
    if request.method == "GET":
        return _page("forgot")
    svc().recovery.request_reset(request.form.get("email", ""), request.remote_addr)
    return _page("forgot_sent")


@bp.route("/reset-password", methods=["GET", "POST"])
def reset_password() -> Any:
    token = request.values.get("token", "")
    try:
        svc().recovery.reset_info(token)
        if request.method == "POST":
            svc().recovery.reset_password(token, request.form.get("password", ""), request.form.get("confirm", ""))
            auth.logout_user()
            flash("Your password has been changed. Sign in with your new password.", "success")
            return redirect("/login")
    except LinkProblem as err:
        return _page("link_problem", 410 if err.reason != "invalid" else 404, message=err.message,
                     heading="This password reset link cannot be used")
    except PolicyError as err:
        return _page("reset", 422, token=token, error=err.message, failures=err.failures)
    except InputError as err:
        return _page("reset", 422, token=token, error=err.message)
    return _page("reset", token=token)


# ---- Manage Users -------------------------------------------------------------------------------------
def _owner() -> tuple[Any, Any]:
    user = auth.current_user()
    choice = auth.selected_patient()
    if choice is None:
        raise NotAllowed("You do not have access to a patient's record right now.")
    return user, choice


def _manage(status: int = 200, **ctx: Any) -> tuple[str, int]:
    user, choice = _owner()
    owner = choice.relationship == "self"
    return _page("manage_users", status, users=svc().invitations.shared_users(choice.patient_id) if owner else [],
                 owner=owner, patient=choice, **ctx)


@bp.get("/manage-users")
@auth.login_required
def manage_users() -> Any:
    return _manage()


@bp.post("/manage-users")
@auth.login_required
def grant_access() -> Any:
    user, choice = _owner()
    form = request.form
    try:
        row = svc().invitations.grant(user, choice.patient_id, form.get("email", ""), form.get("birth_date", ""),
                          auth.portal_access(user, choice))
    except InputError as err:
        return _manage(422, error=err.message, email=form.get("email", ""), birth_date=form.get("birth_date", ""))
    flash(f"Access granted. We emailed {row.email} an invite to register.", "success")
    return redirect("/manage-users")


@bp.post("/manage-users/<int:access_id>/resend")
@auth.login_required
def resend_invite(access_id: int) -> Any:
    user, choice = _owner()
    try:
        svc().invitations.resend(user, choice.patient_id, access_id)
    except InputError as err:
        return _manage(422, error=err.message)
    flash("We sent a new invite. The link in the earlier email no longer works.", "success")
    return redirect("/manage-users")


@bp.post("/manage-users/<int:access_id>/revoke")
@auth.login_required
def revoke_access(access_id: int) -> Any:
    user, choice = _owner()
    try:
        who = svc().invitations.revoke(user, choice.patient_id, access_id, auth.portal_access(user, choice))
    except InputError as err:
        return _manage(422, error=err.message)
    flash(f"Access revoked: {who} can no longer see this record.", "success")
    return redirect("/manage-users")


# ---- Account security (two-step verification) --------------------------------------------------------
@bp.get("/account")
@auth.login_required
def account() -> Any:
    user = auth.current_user()
    assert user is not None  # login_required
    secret = None if user.totp_secret else svc().recovery.pending_totp(user)
    return _page("account", enabled=bool(user.totp_secret), secret=secret,
                 uri=security.totp_uri(secret, user.email) if secret else None)


@bp.post("/account/totp/setup")
@auth.login_required
def totp_setup() -> Any:
    user = auth.current_user()
    assert user is not None  # login_required
    svc().recovery.start_totp(user.id)
    return redirect("/account")


@bp.post("/account/totp/enable")
@auth.login_required
def totp_enable() -> Any:
    user = auth.current_user()
    assert user is not None  # login_required
    secret = svc().recovery.pending_totp(user)
    if not secret or user.totp_secret:
        return redirect("/account")
    try:
        svc().recovery.enable_totp(user.id, request.form.get("code", ""))
    except InputError as err:
        return _page("account", 422, enabled=False, secret=secret, uri=security.totp_uri(secret, user.email),
                     error=err.message)
    flash("Two-step verification is on. You will be asked for a code each time you sign in.", "success")
    return redirect("/account")


@bp.post("/account/totp/disable")
@auth.login_required
def totp_disable() -> Any:
    user = auth.current_user()
    assert user is not None  # login_required
    try:
        svc().recovery.disable_totp(user.id, request.form.get("password", ""), request.remote_addr)
    except AccountError as err:
        return _page("account", 429 if isinstance(err, Throttled) else 422, enabled=True, secret=None, uri=None,
                     error=err.message)
    flash("Two-step verification is off.", "success")
    return redirect("/account")


@bp.errorhandler(NotAllowed)
def _not_allowed(err: NotAllowed) -> Any:
    return _page("link_problem", 403, heading="You cannot do this here", message=err.message)


def _clock(app: Flask) -> Any:
    """time.time(), shifted by CLOCK_OFFSET_S (CARESPACE_CLOCK_OFFSET_S; tests move the clock)."""
    def now() -> float:
        offset = app.config.get("CLOCK_OFFSET_S") or 0
        return time.time() + float(offset)
    return now


def init_app(app: Flask) -> None:
    """Register the pages and the accounts service (app.extensions["accounts"])."""
    app.extensions.setdefault("on_password_reset", [])
    app.extensions.setdefault("on_access_revoked", [])
    app.extensions["accounts"] = Accounts(app.extensions["fhir_service"], app.extensions["mailer"],
                                             app.extensions["audit_log"], app.config["BASE_URL"], app.extensions,
                                             _clock(app), secret_key=str(app.config["SECRET_KEY"]).encode())
    app.jinja_env.globals.setdefault("cs_idle_timeout_s", int(app.config.get("IDLE_TIMEOUT_S", auth.IDLE_TIMEOUT_S)))
    app.register_blueprint(bp)
    notify_views.init_app(app)
