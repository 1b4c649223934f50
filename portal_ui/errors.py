"""App-wide error pages: a page a person can act on, never a traceback (/fhir keeps OperationOutcomes)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Flask, current_app, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from fhir_server import FhirError, InternalError, error_response, for_status
from smart_auth.accounts import session as auth

from .context import same_site
from .fhir_data import PortalError

_TITLES = {400: "Something was wrong with that request", 403: "You cannot open this page",
           404: "Page not found", 405: "That action is not possible here", 409: "Someone else changed this meanwhile",
           413: "That file is too large", 422: "That could not be done",
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
        return error_response(for_status(status, err.description or err.name))
    if status == 400 and request.method == "POST" and auth.current_user() is None:
        # The session expired while a form was open: sign in again, then come back to that page.
        back = same_site(request.referrer) or "/health"
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
        return error_response(InternalError("An internal error occurred; nothing was changed"))
    return error_page(500)


def register_error_pages(app: Flask) -> None:
    """Installed by the composition root for the whole app."""
    for code in (400, 403, 404, 405, 500):
        app.register_error_handler(code, _http_error)
    app.register_error_handler(PortalError, _portal_error)
    app.register_error_handler(FhirError, _fhir_error)  # /fhir keeps its OperationOutcome handler
    app.register_error_handler(Exception, _unexpected)
