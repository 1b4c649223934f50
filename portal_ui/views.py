"""Portal blueprint: layout context, patient switching, Resources, Access log and app-wide error pages."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Flask, current_app, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from fhir_server.access import AccessContext
from fhir_server.display import human_name
from fhir_server.errors import FhirError
from fhir_server.service import FhirService
from smart_auth.accounts import session as auth

from . import access_log
from .fhir_data import PortalError

bp = Blueprint("portal", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/portal")

DEFAULT_RESOURCES = [
    {"name": "National Cancer Institute", "url": "https://www.cancer.gov",
     "description": "Cancer types, treatment, clinical trials and support from the U.S. National Cancer Institute."},
    {"name": "American Cancer Society", "url": "https://www.cancer.org",
     "description": "Information, programs and a 24/7 helpline for people with cancer and their caregivers."},
    {"name": "CancerCare", "url": "https://www.cancercare.org",
     "description": "Free professional counseling, support groups, education and financial help."},
]


@dataclass(frozen=True)
class Viewer:
    """The signed-in person, whose record they are looking at, and what they may do with it."""

    user: Any
    choice: auth.PatientChoice
    ctx: AccessContext

    @property
    def patient_id(self) -> str:
        return self.choice.patient_id

    @property
    def ref(self) -> str | None:
        return auth.fhir_user_ref(self.user, self.choice)

    @property
    def author(self) -> tuple[str | None, str]:
        return self.ref, str(self.user.name)


def viewer() -> Viewer:
    """The current viewer; a page explaining the situation when they may not see any record now."""
    user = auth.current_user()
    choice = auth.selected_patient()
    if user is None or choice is None:
        raise PortalError("You do not have access to a patient's record right now. If someone shared their "
                          "record with you, ask them to invite you again.", 403)
    return Viewer(user, choice, auth.portal_access(user, choice))


def fhir() -> FhirService:
    return current_app.extensions["fhir_service"]  # type: ignore[no-any-return]


def name_of(ref: str) -> str:
    """Display name of a person or app reference, looked up once per request (trusted, not audited)."""
    cache: dict[str, str] = request.environ.setdefault("carespace.names", {})
    if ref not in cache:
        name = ""
        if ref.startswith("client:"):
            lookup = current_app.extensions.get("client_name_lookup")
            name = str(lookup(ref[7:]) or "") if lookup else ""
        elif "/" in ref:
            rtype, rid = ref.split("/", 1)
            try:
                name = human_name(fhir().read(AccessContext.system("portal"), rtype, rid).json())
            except FhirError:
                name = ""
        cache[ref] = name
    return cache[ref]


class Names:
    """A lazy mapping reference -> display name for templates and services."""

    def get(self, ref: str, default: str = "") -> str:
        return name_of(ref) or default if ref else default


@bp.app_context_processor
def _layout() -> dict[str, Any]:
    """Variables base.html needs on every page."""
    user = auth.current_user()
    if user is None:
        return {"cs_user": None, "cs_patient": None, "cs_patients": []}
    return {"cs_user": user, "cs_patient": auth.selected_patient(),
            "cs_patients": auth.patients_for(auth.db(), user)}


@bp.get("/")
def index() -> Any:
    return redirect("/health" if auth.current_user() is not None else "/login")


@bp.post("/switch-patient")
@auth.login_required
def switch_patient() -> Any:
    auth.select_patient(request.form.get("patient_id", ""))
    return redirect(_same_site(request.referrer) or "/health")


@bp.get("/resources")
@auth.login_required
def resources() -> str:
    return render_template("portal/resources.html", active_tab="resources", links=portal_resources())


@bp.get("/access-log")
@auth.login_required
def access_log_page() -> str:
    v = viewer()
    rows, nxt = access_log.entries(fhir(), v.patient_id, name_of, v.ref, request.args.get("cursor") or None)
    return render_template("portal/access_log.html", active_tab=None, rows=rows, next_cursor=nxt,
                           first=not request.args.get("cursor"))


def portal_resources() -> list[dict[str, str]]:
    """The Resources links: app config PORTAL_RESOURCES, else CARESPACE_PORTAL_RESOURCES (JSON), else
    <instance>/portal_resources.json, else the three the user guide names."""
    configured = current_app.config.get("PORTAL_RESOURCES")
    if configured:
        return list(configured)
    raw = os.environ.get("CARESPACE_PORTAL_RESOURCES")
    path = Path(current_app.instance_path) / "portal_resources.json"
    try:
        if raw:
            return list(json.loads(raw))
        if path.exists():
            return list(json.loads(path.read_text()))
    except (ValueError, OSError):
        current_app.logger.error("PORTAL_RESOURCES is not a JSON list of {name, url, description}")
    return DEFAULT_RESOURCES


def _same_site(url: str | None) -> str | None:
    """The path of a URL on this site (no open redirects)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.netloc and parts.netloc != request.host:
        return None
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


# ---- errors: a page a person can act on, never a traceback ----
_TITLES = {400: "Something was wrong with that request", 403: "You cannot open this page",
           404: "Page not found", 405: "That action is not possible here", 422: "That could not be done",
           500: "Something went wrong on our side", 503: "CareSpace is busy right now"}
_ADVICE = {400: "Go back, reload the page and try again.",
           403: "If you think you should have access, ask the patient or the practice.",
           404: "The page may have moved, or the link was mistyped. Start again from the Health page.",
           405: "Use the buttons on the page instead of typing the address.",
           500: "Nothing was changed. Please try again in a few minutes; if it keeps happening, call the practice.",
           503: "Many people are using CareSpace at this moment and your request could not be finished. Nothing "
                "was changed. Wait a few seconds, then try again (send the form again if you were filling one in)."}


def error_page(status: int, message: str | None = None) -> tuple[str, int]:
    return render_template("portal/error.html", status=status, title=_TITLES.get(status, "Something went wrong"),
                           message=message or _ADVICE.get(status, _ADVICE[500]), active_tab=None), status


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def _http_error(err: HTTPException) -> Any:
    status = err.code or 500
    if request.path.startswith("/fhir"):
        from fhir_server.http import error_response
        fe = FhirError(err.description or err.name)
        fe.status, fe.code = status, {404: "not-found", 405: "not-supported"}.get(status, "invalid")
        return error_response(fe)
    if status == 400 and request.method == "POST" and auth.current_user() is None:
        # The session expired while a form was open: sign in again, then come back to that page.
        back = _same_site(request.referrer) or "/health"
        return redirect("/login?" + urlencode({"next": back}))
    if _wants_json():
        return {"error": err.name, "message": err.description}, status
    detail = err.description if status in (400, 403, 405) and err.description and "browser" not in err.description \
        else None
    return error_page(status, detail)


def _portal_error(err: PortalError) -> Any:
    return error_page(err.status, err.message)


def _fhir_error(err: FhirError) -> Any:
    status = 404 if err.status in (403, 404, 410) else err.status
    return error_page(status, None if status >= 500 else err.diagnostics)


def _unexpected(err: Exception) -> Any:
    if isinstance(err, HTTPException):
        return _http_error(err)
    current_app.logger.exception("Unhandled error on %s", request.path)
    if request.path.startswith("/fhir"):
        from fhir_server.http import error_response
        fe = FhirError("An internal error occurred; nothing was changed")
        fe.status, fe.code = 500, "exception"
        return error_response(fe)
    return error_page(500)


def init_app(app: Flask) -> None:
    from . import views_health, views_messages  # noqa: F401 - their routes join this blueprint
    app.register_blueprint(bp)
    for code in (400, 403, 404, 405, 500):
        app.register_error_handler(code, _http_error)
    app.register_error_handler(PortalError, _portal_error)
    app.register_error_handler(FhirError, _fhir_error)  # /fhir keeps its OperationOutcome handler
    app.register_error_handler(Exception, _unexpected)
