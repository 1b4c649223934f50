"""Share by link pages (make, list, revoke), the SHL manifest and file endpoints, and the /shl viewer (HTTP only)."""
from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

import segno
from flask import Blueprint, Flask, Response, abort, current_app, flash, redirect, render_template, request, url_for

from smart_auth.accounts import session as auth

from . import builder
from .share_links import (
    EXPIRY_DAYS,
    LABEL_MAX,
    PASSCODE_MIN,
    BadManifestRequest,
    LinkGone,
    ShareForm,
    ShareLinkService,
    TooManyRequests,
    WrongPasscode,
    validate,
)
from .views import sender

bp = Blueprint("share_links", __name__, template_folder="templates")
JOSE = "application/jose"
NO_STORE = {"Cache-Control": "private, no-store"}
# The viewer fetches manifests of any SHL server (https), and never sends the fragment anywhere.
VIEWER_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
              "connect-src 'self' https:; object-src 'none'; base-uri 'none'; form-action 'self'; "
              "frame-ancestors 'none'")
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600", "Cache-Control": "no-store"}


def svc() -> ShareLinkService:
    return current_app.extensions["share_links"]  # type: ignore[no-any-return]


def qr_svg(text: str) -> str:
    """The QR code of `text` as inline SVG markup, drawn here (error correction M, as SHL suggests)."""
    return str(segno.make(text, error="m", micro=False).svg_inline(scale=4, border=4, omitsize=True,
                                                                   svgclass="qr", lineclass="qr-line"))


# ---- making a link ----
def _form_from_request() -> ShareForm:
    f = request.form
    return ShareForm(label=f.get("label", "").strip(), share=f.get("share", "all"), kinds=f.getlist("kind"),
                     start=f.get("start", "").strip(), end=f.get("end", "").strip(), passcode=f.get("passcode", ""),
                     no_passcode=f.get("no_passcode") == "1", expires=f.get("expires", "30").strip(),
                     long_term=f.get("long_term") == "1")


def _form_page(form: ShareForm, errors: dict[str, str], status: int = 200) -> Response:
    who = sender()
    fhir = current_app.extensions["fhir_service"]
    dates_ok = "start" not in errors and "end" not in errors
    everything = builder.preview(fhir, who.ctx, who.patient_id, form.start if dates_ok else None,
                                 form.end if dates_ok else None)
    chosen = form.kinds if form.share == "kinds" and "kinds" not in errors else None
    counts = {k: n for k, n in everything.items() if not chosen or k in chosen}
    html = render_template("bundles/share.html", active_tab="health", form=form, errors=errors, counts=counts,
                           all_kinds=list(everything) or builder.KINDS[:6], expiry_days=EXPIRY_DAYS,
                           label_max=LABEL_MAX, passcode_min=PASSCODE_MIN, attempts=svc().attempts, today=date.today().isoformat())
    return Response(html, status=status, headers=NO_STORE)


@bp.get("/health/share-link")
@auth.login_required
def share_form() -> Any:
    return _form_page(ShareForm(), {})


@bp.post("/health/share-link")
@auth.login_required
def share_link() -> Any:
    form = _form_from_request()
    if request.form.get("action") == "preview":
        form.passcode = ""
        return _form_page(form, {k: v for k, v in validate(form).items() if k in ("start", "end", "kinds")})
    errors = validate(form)
    if errors:
        form.passcode = ""
        return _form_page(form, errors, 400)
    made = svc().create(sender(), form)
    html = render_template("bundles/share_made.html", active_tab="health", made=made, qr=qr_svg(made.viewer_link),
                           counts=json.loads(made.row.counts))
    return Response(html, headers=NO_STORE)  # shown once: the key is in this page and kept nowhere else


@bp.get("/health/share-links")
@auth.login_required
def share_links() -> Any:
    html = render_template("bundles/share_links.html", active_tab="health", links=svc().links(sender().patient_id))
    return Response(html, headers=NO_STORE)


@bp.post("/health/share-links/<int:link_id>/revoke")
@auth.login_required
def revoke(link_id: int) -> Any:
    row = svc().revoke(sender(), link_id)
    if row is None:
        abort(404)
    flash(f"The link \u201c{row.label}\u201d no longer works and its encrypted records were deleted.", "success")
    return redirect(url_for("share_links.share_links"), 303)


# ---- the recipient's side (SMART Health Links) ----
def _json(body: dict[str, Any], status: int, **headers: str) -> Response:
    resp = current_app.response_class(json.dumps(body), status=status, mimetype="application/json")
    resp.headers.update(CORS)
    resp.headers.update(headers)
    return resp


@bp.route("/shl/manifest/<token>", methods=["POST", "OPTIONS"])
def manifest(token: str) -> Response:
    if request.method == "OPTIONS":
        return _json({}, 204)
    body = request.get_json(force=True, silent=True)
    try:
        answer = svc().manifest(token, body, request.remote_addr or "unknown")
    except BadManifestRequest as err:
        return _json({"error": "invalid_request", "error_description": str(err)}, 400)
    except WrongPasscode as err:
        return _json({"error": "invalid_passcode", "remainingAttempts": err.remaining_attempts,
                      "error_description": "The passcode is not correct."}, 401)
    except LinkGone:
        return _json({"error": "not_found", "error_description": "This link is not valid or no longer works."}, 404)
    except TooManyRequests as err:
        return _json({"error": "too_many_requests", "error_description": "Too many requests; try again later."},
                     429, **{"Retry-After": str(err.retry_after)})
    return _json(answer, 200)


@bp.route("/shl/file/<token>", methods=["GET", "OPTIONS"])
def file(token: str) -> Response:
    if request.method == "OPTIONS":
        return _json({}, 204)
    try:
        jwe = svc().file(token)
    except LinkGone:
        return _json({"error": "not_found", "error_description": "This file location is not valid or was used."},
                     404)
    resp = Response(jwe, mimetype=JOSE)
    resp.headers.update(CORS)
    return resp


@bp.get("/shl")
def viewer() -> Response:
    resp = Response(render_template("bundles/shl_viewer.html"))
    resp.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
                         "Content-Security-Policy": VIEWER_CSP})
    return resp


def init_app(app: Flask) -> None:
    """Register the routes and build the service (SHARE_LINK_* settings from carespace.config)."""
    def setting(key: str, default: int) -> int:
        return int(app.config.get(key) or default)

    secret = str(app.config["SHARE_LINK_SERVER_KEY"]).encode("utf-8")
    app.extensions["share_links"] = ShareLinkService(
        app.extensions["carespace.sessions"], app.extensions["carespace.write_sessions"],
        app.extensions["fhir_service"], app.extensions["audit_log"], str(app.config["BASE_URL"]),
        hashlib.sha256(b"carespace share link keys\x00" + secret).digest(),
        attempts=setting("SHARE_LINK_PASSCODE_ATTEMPTS", 10), file_ttl_s=setting("SHARE_LINK_FILE_TTL_S", 300),
        ip_limit=(setting("SHARE_LINK_LIMIT_PER_IP", 120), 900))
    app.extensions.setdefault("csrf_exempt_prefixes", ["/fhir"]).extend(["/shl/manifest/", "/shl/file/"])
    app.register_blueprint(bp)
