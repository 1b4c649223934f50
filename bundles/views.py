"""Download, Send Record, Sent records and the recipient's /records/<token> page (HTTP only)."""
from __future__ import annotations

import json
from datetime import date
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, flash, redirect, render_template, request, url_for

from smart_auth.accounts import session as auth

from . import builder, summary
from .service import PASSWORD_RULE, LinkProblem, Sender, SendForm, SendRecordService, date_errors, validate

bp = Blueprint("bundles", __name__, template_folder="templates", static_folder="static/bundles",
               static_url_path="/static/bundles")
JOSE = "application/jose"
_PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
             "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def svc() -> SendRecordService:
    return current_app.extensions["bundles"]  # type: ignore[no-any-return]


def sender() -> Sender:
    """The signed-in user acting for the selected patient (403 page when there is none)."""
    user, choice = auth.current_user(), auth.selected_patient()
    if user is None or choice is None:
        abort(403, description="You do not have access to a patient's record right now.")
    return Sender(int(user.id), str(user.name), auth.fhir_user_ref(user, choice), choice.patient_id,
                  auth.portal_access(user, choice))


def _range_args() -> tuple[str, str]:
    form = SendForm(start=request.args.get("start", ""), end=request.args.get("end", ""))
    errors = date_errors(form, required=False)
    if errors:
        abort(400, description=" ".join(errors.values()))
    return form.start, form.end


# ---- the patient's own Download ----
@bp.get("/health/download")
@auth.login_required
def download() -> Any:
    if request.args.get("view"):
        return download_view()
    who = sender()
    start, end = _range_args()
    built = svc().download(who, start, end)
    resp = Response(json.dumps(built.bundle, ensure_ascii=False, indent=1), mimetype="application/fhir+json")
    resp.headers["Content-Disposition"] = (f'attachment; filename="carespace-record-{who.patient_id}-'
                                           f'{date.today().isoformat()}.json"')
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@bp.get("/health/download/view")
@auth.login_required
def download_view() -> Any:
    who = sender()
    start, end = _range_args()
    built = svc().download(who, start, end)
    resp = Response(render_template("bundles/view.html", active_tab="health", s=summary.summarize(built.bundle),
                                    counts=built.counts, start=start, end=end))
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


# ---- Send Record ----
def _form_page(form: SendForm, errors: dict[str, str], status: int = 200) -> Any:
    who = sender()
    counts = builder.preview(current_app.extensions["fhir_service"], who.ctx, who.patient_id,
                             form.start if "start" not in errors else None, form.end if "end" not in errors else None)
    html = render_template("bundles/send.html", active_tab="health", form=form, errors=errors, counts=counts,
                           rule=PASSWORD_RULE, ttl_days=svc().ttl_days, today=date.today().isoformat())
    return Response(html, status=status, headers={"Cache-Control": "private, no-store"})


@bp.get("/health/send-record")
@auth.login_required
def send_form() -> Any:
    form = SendForm(start=request.args.get("start", ""), end=request.args.get("end", date.today().isoformat()))
    return _form_page(form, date_errors(form, required=False))


@bp.post("/health/send-record")
@auth.login_required
def send_record() -> Any:
    f = request.form
    form = SendForm(f.get("recipient", "").strip(), f.get("start", "").strip(), f.get("end", "").strip(),
                    f.get("notes", "").replace("\r\n", "\n"), f.get("password", ""), f.get("confirm", ""))
    if f.get("action") == "preview":
        return _form_page(SendForm(form.recipient, form.start, form.end, form.notes), date_errors(form, False))
    errors = validate(form)
    if errors:
        return _form_page(SendForm(form.recipient, form.start, form.end, form.notes), errors, 400)
    row = svc().send(sender(), form)
    flash(f"Your record was sent to {row.recipient_email}. Tell them the password by phone or in person: "
          "it is not in the email.", "success")
    return redirect(url_for("bundles.sent_records"), 303)


@bp.get("/health/sent-records")
@auth.login_required
def sent_records() -> Any:
    from .service import aware, status_of
    rows = [{"row": r, "status": status_of(r), "counts": json.loads(r.counts or "{}"), "created": aware(r.created_at),
             "expires": aware(r.expires_at), "first_opened": aware(r.first_opened_at),
             "last_opened": aware(r.last_opened_at), "revoked": aware(r.revoked_at)}
            for r in svc().sent(sender().patient_id)]
    return render_template("bundles/sent.html", active_tab="health", rows=rows)


@bp.post("/health/sent-records/<int:record_id>/revoke")
@auth.login_required
def revoke(record_id: int) -> Any:
    row = svc().revoke(sender(), record_id)
    if row is None:
        abort(404)
    flash(f"The link sent to {row.recipient_email} no longer works and the encrypted record was deleted.", "success")
    return redirect(url_for("bundles.sent_records"), 303)


# ---- the recipient's link ----
def _wants_jose() -> bool:
    if request.args.get("format") == "jose":
        return True
    best = request.accept_mimetypes.best_match(["text/html", JOSE])
    return best == JOSE and request.accept_mimetypes[JOSE] >= request.accept_mimetypes["text/html"]


_PROBLEMS = {
    "unknown": (404, "This link is not valid",
                "Check that you copied the whole link from the email. If it still does not work, ask the sender "
                "to send the record again."),
    "expired": (410, "This link has expired",
                "Records sent through CareSpace can only be opened for a limited time. Ask the sender to send "
                "the record again."),
    "revoked": (410, "This link was withdrawn",
                "The sender withdrew this record, so it can no longer be opened. Ask the sender if you still "
                "need it."),
    "limited": (429, "Too many attempts",
                "This record was requested too many times. Wait a while, then try again."),
}


def _problem(err: LinkProblem, jose: bool) -> Response:
    status, title, message = _PROBLEMS[err.reason]
    if jose:
        resp = Response(f"{title}. {message}\n", status=status, mimetype="text/plain")
    else:
        resp = Response(render_template("bundles/problem.html", title=title, message=message), status=status)
    if err.retry_after:
        resp.headers["Retry-After"] = str(err.retry_after)
    return resp


@bp.get("/records/<token>")
def record(token: str) -> Response:
    jose = _wants_jose()
    ip, agent = request.remote_addr or "unknown", request.headers.get("User-Agent", "")
    try:
        row = svc().retrieve(token, ip, agent) if jose else svc().lookup(token, ip)
    except LinkProblem as err:
        resp = _problem(err, jose)
    else:
        if jose:
            resp = Response(row.jwe or "", mimetype=JOSE)
            resp.headers["Content-Disposition"] = 'inline; filename="record.jwe"'
        else:
            resp = Response(render_template("bundles/record.html", row=row))
    resp.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "Vary": "Accept",
                         "X-Robots-Tag": "noindex", "X-Content-Type-Options": "nosniff",
                         "Content-Security-Policy": _PAGE_CSP})
    return resp


def init_app(app: Flask) -> None:
    """Register the routes and build the service (SEND_RECORD_* settings from carespace.config)."""
    def setting(key: str, default: int) -> int:
        return int(app.config.get(key) or default)

    app.extensions["bundles"] = SendRecordService(
        app.extensions["carespace.sessions"], app.extensions["fhir_service"], app.extensions["mailer"],
        app.extensions["audit_log"], str(app.config["BASE_URL"]), ttl_days=setting("SEND_RECORD_TTL_DAYS", 30),
        ip_limit=(setting("SEND_RECORD_LIMIT_PER_IP", 60), setting("SEND_RECORD_LIMIT_WINDOW_S", 900)),
        record_limit=(setting("SEND_RECORD_LIMIT_PER_RECORD", 30), 3600),
        writes=app.extensions.get("carespace.write_sessions"))
    app.register_blueprint(bp)
