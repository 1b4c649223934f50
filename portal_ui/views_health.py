"""Health tab: the Labs table with history and trend charts, and the patient's documents."""
from __future__ import annotations

from typing import Any

from flask import Response, render_template, request

from smart_auth.accounts import session as auth

from . import documents, labs
from .blueprint import bp
from .context import fhir, viewer


@bp.get("/health")
@auth.login_required
def health() -> str:
    v = viewer()
    tests = labs.lab_tests(fhir(), v.ctx, v.patient_id)
    docs, more = documents.recent(fhir(), v.ctx, v.patient_id)
    return render_template("portal/health.html", active_tab="health", tests=tests, docs=docs, more=more)


@bp.get("/health/documents")
@auth.login_required
def all_documents() -> str:
    v = viewer()
    a = request.args
    doc_type, start, end = a.get("type", ""), a.get("from", ""), a.get("to", "")
    docs, nxt, prev = documents.listing(fhir(), v.ctx, v.patient_id, doc_type, start, end, a.get("cursor") or None)
    return render_template("portal/documents.html", active_tab="health", docs=docs, next_cursor=nxt,
                           prev_cursor=prev, first=not a.get("cursor"),
                           types=documents.type_options(fhir(), v.ctx, v.patient_id),
                           filters={"type": doc_type, "from": start, "to": end})


@bp.get("/health/documents/<doc_id>")
@auth.login_required
def document(doc_id: str) -> str:
    v = viewer()
    raw = documents.get(fhir(), v.ctx, doc_id)
    doc = documents.to_document(raw)
    text = None
    if doc.kind == "text":
        data, _, _ = documents.content(fhir(), v.ctx, raw)
        text = documents.text_of(data)
    return render_template("portal/document.html", active_tab="health", doc=doc, text=text)


@bp.get("/health/documents/<doc_id>/content")
@auth.login_required
def document_content(doc_id: str) -> Any:
    """The document's bytes with its own type; inline for the viewer, as an attachment to download."""
    v = viewer()
    raw = documents.get(fhir(), v.ctx, doc_id)
    data, ctype, name = documents.content(fhir(), v.ctx, raw)
    inline = request.args.get("download") != "1" and ctype in documents.INLINE_TYPES
    resp = Response(data, mimetype=ctype)
    if ctype.startswith("text/"):
        resp.headers["Content-Type"] = f"{ctype}; charset=utf-8"
    resp.headers["Content-Disposition"] = f'{"inline" if inline else "attachment"}; filename="{name}"'
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    # Stored content never runs script in the portal's origin (PDF viewers need an unsandboxed frame).
    resp.headers["Content-Security-Policy"] = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                                               "frame-ancestors 'self'") + (
        "" if ctype == "application/pdf" else "; sandbox")
    return resp
