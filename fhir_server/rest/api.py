"""The /fhir blueprint: thin HTTP handlers over FhirService."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from ..access.context import AccessContext
from ..errors import BadRequest, FhirError, InternalError, MethodNotAllowed, NotFound, for_status, outcome
from ..operations.everything import EverythingRequest
from ..service import FhirService
from .bundle_text import history_bundle, search_bundle, shape
from .export import add_routes as add_export_routes
from .fastpath import ReadFastPath
from .http import error_response, fhir_response, form_items, json_body, page_links, prefer, resource_response
from .openapi import openapi_text


class _Blueprint(Blueprint):
    """Every FHIR route answers with and without a trailing slash (`POST {BASE}/fhir/`, `GET /fhir/Patient/`):
    clients build URLs from the base as given, some ending in `/`."""

    def add_url_rule(self, rule: str, endpoint: str | None = None, view_func: Any = None,
                     provide_automatic_options: bool | None = None, **options: Any) -> None:
        options.setdefault("strict_slashes", False)
        super().add_url_rule(rule, endpoint, view_func, provide_automatic_options, **options)


bp = _Blueprint("fhir", __name__, url_prefix="/fhir")
AccessResolver = Callable[[], AccessContext]


def svc() -> FhirService:
    return current_app.extensions["fhir_service"]  # type: ignore[no-any-return]


def ctx() -> AccessContext:
    """The caller's access context, from the resolver the composition root installed (SMART)."""
    return current_app.extensions["fhir_access_resolver"]()  # type: ignore[no-any-return]


def base() -> str:
    return svc().base_url


@bp.errorhandler(FhirError)
def _fhir_error(err: FhirError) -> Response:
    return error_response(err)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException) -> Response:
    if err.code == 405:
        return error_response(MethodNotAllowed(f"{request.method} is not allowed on {request.path}"))
    if err.code == 404:
        return error_response(NotFound(f"No FHIR endpoint at {request.path}"))
    return error_response(for_status(err.code or 500, err.description or err.name))


@bp.errorhandler(Exception)
def _unexpected(err: Exception) -> Response:
    unavailable = current_app.extensions.get("carespace.db_unavailable")  # the composition root's judgement
    if unavailable is not None and unavailable(err):
        current_app.logger.warning("database busy or unavailable: %s", str(err).splitlines()[0])
        busy = FhirError("The server is busy; nothing was changed. Try again in a moment",
                         headers={"Retry-After": str(current_app.config.get("RETRY_AFTER_S", 2))})
        busy.status, busy.code = 503, "transient"
        return error_response(busy)
    current_app.logger.exception("Unhandled error in FHIR API")
    return error_response(InternalError("An internal error occurred; nothing was changed"))


@bp.get("/metadata")
def metadata() -> Response:
    return fhir_response(current_app.extensions["capability_statement"]())


@bp.get("/openapi.json")
def openapi() -> Response:
    """The API as OpenAPI 3.0, generated from the CapabilityStatement (as HAPI serves one)."""
    return Response(openapi_text(current_app.extensions["capability_statement"]()), content_type="application/json")


@bp.route("/metadata", methods=["POST", "PUT", "DELETE", "PATCH"])
def metadata_write() -> Response:
    raise MethodNotAllowed(f"{request.method} is not allowed on /metadata; it is read-only")


@bp.post("")
def system_bundle() -> Response:
    return fhir_response(svc().process_bundle(ctx(), json_body(request)))


@bp.get("")
def system_search() -> Response:
    return _search(None, list(request.args.items(multi=True)))


@bp.get("/_history")
def system_history() -> Response:
    return _history(None, None)


@bp.get("/<rtype>")
def search_type(rtype: str) -> Response:
    return _search(rtype, list(request.args.items(multi=True)))


@bp.post("/<rtype>/_search")
def search_post(rtype: str) -> Response:
    items = list(request.args.items(multi=True)) + form_items(request)
    return _search(rtype, items)


@bp.post("/<rtype>")
def create(rtype: str) -> Response:
    result = svc().create(ctx(), rtype, json_body(request), request.headers.get("If-None-Exist"))
    return resource_response(result.stored, base(), 201 if result.created else 200, result.created)


@bp.put("/<rtype>")
def conditional_update(rtype: str) -> Response:
    result = svc().conditional_update(ctx(), rtype, request.query_string.decode(), json_body(request))
    return resource_response(result.stored, base(), 201 if result.created else 200, result.created)


@bp.delete("/<rtype>")
def conditional_delete(rtype: str) -> Response:
    n = svc().conditional_delete(ctx(), rtype, request.query_string.decode())
    return fhir_response({"resourceType": "OperationOutcome", "issue": [
        outcome("information", "informational", f"Deleted {n} {rtype} resource(s)")]})


@bp.get("/<rtype>/<fid>")
def read(rtype: str, fid: str) -> Response:
    st = svc().read(ctx(), rtype, fid)
    if request.headers.get("If-None-Match", "").strip() in (st.etag, f'"{st.version}"'):
        return Response(status=304, headers={"ETag": st.etag})
    summary, elements = request.args.get("_summary"), request.args.get("_elements")
    if summary or elements:
        st.text = shape(st.text, summary if summary != "false" else None,
                        elements.split(",") if elements else None)
    return resource_response(st, base())


@bp.put("/<rtype>/<fid>")
def update(rtype: str, fid: str) -> Response:
    result = svc().update(ctx(), rtype, fid, json_body(request), request.headers.get("If-Match"))
    return resource_response(result.stored, base(), 201 if result.created else 200, result.created)


@bp.delete("/<rtype>/<fid>")
def delete(rtype: str, fid: str) -> Response:
    svc().delete(ctx(), rtype, fid)
    return fhir_response({"resourceType": "OperationOutcome", "issue": [
        outcome("information", "informational", f"{rtype}/{fid} deleted")]})


@bp.get("/<rtype>/<fid>/_history/<vid>")
def vread(rtype: str, fid: str, vid: str) -> Response:
    return resource_response(svc().vread(ctx(), rtype, fid, vid), base())


@bp.get("/<rtype>/<fid>/_history")
def instance_history(rtype: str, fid: str) -> Response:
    return _history(rtype, fid)


@bp.get("/<rtype>/_history")
def type_history(rtype: str) -> Response:
    return _history(rtype, None)


@bp.get("/Patient/<fid>/_history")
def patient_history(fid: str) -> Response:
    """A Patient's history: routed by name, or the compartment search below would take `_history` for a type."""
    return _history("Patient", fid)


@bp.get("/Patient/<fid>/<rtype>")
def compartment_search(fid: str, rtype: str) -> Response:
    """GET [base]/Patient/[id]/[type]: a search of the type within that patient's compartment."""
    return _search(rtype, list(request.args.items(multi=True)), within=fid)


@bp.post("/Patient/<fid>/<rtype>/_search")
def compartment_search_post(fid: str, rtype: str) -> Response:
    return _search(rtype, list(request.args.items(multi=True)) + form_items(request), within=fid)


@bp.route("/Patient/<fid>/$everything", methods=["GET", "POST"])
def patient_everything(fid: str) -> Response:
    a = request.args
    count = a.get("_count")
    if count and not count.isdigit():
        raise BadRequest(f"_count must be a non-negative integer, not {count!r}", expression=["_count"])
    req = EverythingRequest(fid, a.get("start"), a.get("end"), a.get("_since"),
                            (a.get("_type") or "").split(",") if a.get("_type") else None,
                            max(1, min(int(count), 5000)) if count else 1000, a.get("_cursor"))
    page = svc().everything(ctx(), req)
    links = page_links(f"{base()}/Patient/{fid}/$everything", list(a.items(multi=True)), page.next_cursor, None)
    return fhir_response(search_bundle(base(), ((t, i, x, "match") for t, i, x in page.entries), page.total, links))


add_export_routes(bp)  # Bulk Data $export: kick-offs, status, files (rest/export.py)


def _search(rtype: str | None, items: list[tuple[str, str]], within: str | None = None) -> Response:
    strict = prefer("handling", "lenient") == "strict"
    req, page = svc().search(ctx(), rtype, items, strict=strict, within=within)
    entries: list[tuple[str, str, str, str]] = [
        (t, i, shape(x, req.summary, req.elements), "match") for t, i, x in page.matches]
    entries += [(t, i, shape(x, req.summary, req.elements), "include") for t, i, x in page.included]
    oo = None
    if req.ignored:
        oo = {"resourceType": "OperationOutcome", "issue": [
            outcome("warning", "not-supported", f"Unknown search parameter {k!r} was ignored") for k in req.ignored]}
    path = f"{base()}/Patient/{within}/{rtype}" if within else f"{base()}/{rtype}" if rtype else base()
    links = page_links(path, items, page.next_cursor, page.prev_cursor)
    return fhir_response(search_bundle(base(), entries, page.total, links, oo))


def _history(rtype: str | None, fid: str | None) -> Response:
    a = request.args
    rows, next_cursor = svc().history(ctx(), rtype, fid, a.get("_since"), a.get("_count"), a.get("_cursor"))
    path = f"{base()}/{rtype}/{fid}/_history" if fid else (f"{base()}/{rtype}/_history" if rtype else f"{base()}/_history")
    links = page_links(path, list(a.items(multi=True)), next_cursor, None)
    return fhir_response(history_bundle(base(), rows, links, None))


class _NoCookieSessionForApi(SecureCookieSessionInterface):
    """Flask's cookie session, except under /fhir: the API authenticates by token and never uses it,
    so it skips verifying and re-signing the cookie (a measurable part of a read by id)."""

    def open_session(self, app: Flask, request: Any) -> Any:
        if request.path == bp.url_prefix or request.path.startswith(f"{bp.url_prefix}/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def register(app: Any, resolver: AccessResolver) -> None:
    """Attach the blueprint; `resolver` turns the current request into an AccessContext."""
    app.extensions["fhir_access_resolver"] = resolver
    if type(app.session_interface) is SecureCookieSessionInterface:
        app.session_interface = _NoCookieSessionForApi()
    app.register_blueprint(bp)
    app.wsgi_app = ReadFastPath(app)  # type: ignore[method-assign]
