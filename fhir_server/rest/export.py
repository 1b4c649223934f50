"""The Bulk Data routes (hl7.org/fhir/uv/bulkdata/export.html): kick-off, status, cancel and file download."""
from __future__ import annotations

import json
from email.utils import formatdate
from typing import cast

from flask import Blueprint, Response, current_app, request, send_file

from ..access.context import AccessContext
from ..errors import BadRequest, NotFound, outcome
from ..operations.export import ExportService, kickoff_items, parse_kickoff
from .http import fhir_response, json_body, prefer

NDJSON = "application/fhir+ndjson"


def ctx() -> AccessContext:
    """The caller's access context (the resolver the composition root installed, as every FHIR route uses)."""
    return current_app.extensions["fhir_access_resolver"]()  # type: ignore[no-any-return]


def exports() -> ExportService:
    service = current_app.extensions.get("fhir_exports")
    if service is None:
        raise NotFound("Bulk export is not enabled on this server")
    return service  # type: ignore[no-any-return]


def _kick_off(level: str, group_id: str | None = None) -> Response:
    """202 with the status URL in Content-Location (export.html#response---success)."""
    if prefer("respond-async") is None:
        raise BadRequest("$export runs asynchronously: send the header Prefer: respond-async")
    body = json_body(request) if request.method == "POST" and request.get_data(cache=True) else None
    items = kickoff_items(request.args.items(multi=True), body)
    service = exports()
    job_id = service.kick_off(ctx(), parse_kickoff(level, items, request.url, group_id))
    url = service.status_url(job_id)
    return fhir_response({"resourceType": "OperationOutcome", "issue": [
        outcome("information", "informational", f"The export was queued; poll {url}")]}, 202,
        {"Content-Location": url})


def add_routes(bp: Blueprint) -> None:
    """Route the kick-offs, the status URL and the files on the /fhir blueprint."""

    @bp.route("/$export", methods=["GET", "POST"])
    def export_system() -> Response:
        return _kick_off("system")


    @bp.route("/Patient/$export", methods=["GET", "POST"])
    def export_patients() -> Response:
        return _kick_off("patient")


    @bp.route("/Group/<fid>/$export", methods=["GET", "POST"])
    def export_group(fid: str) -> Response:
        return _kick_off("group", fid)


    @bp.get("/$export-status/<job_id>")
    def export_status(job_id: str) -> Response:
        service = exports()
        st = service.status(ctx(), job_id)
        if st.state == "in-progress":
            wait = str(max(1, round(service.settings.min_poll_s)))
            return fhir_response(None, 202, {"X-Progress": st.progress, "Retry-After": wait})
        expires = {"Expires": formatdate(st.expires, usegmt=True)} if st.expires else {}
        if st.state == "failed":
            return fhir_response({"resourceType": "OperationOutcome", "issue": [
                outcome("error", "exception", st.error or "The export failed")]}, 500, expires)
        return Response(json.dumps(st.manifest, separators=(",", ":")), content_type="application/json",
                        headers=expires)


    @bp.delete("/$export-status/<job_id>")
    def export_cancel(job_id: str) -> Response:
        exports().cancel(ctx(), job_id)
        return fhir_response({"resourceType": "OperationOutcome", "issue": [
            outcome("information", "informational", "The export was cancelled and its files removed")]}, 202)


    @bp.get("/$export-file/<job_id>/<name>")
    def export_file(job_id: str, name: str) -> Response:
        path = exports().file(ctx(), job_id, name)
        return cast(Response, send_file(path, mimetype=NDJSON, conditional=False, max_age=0))
