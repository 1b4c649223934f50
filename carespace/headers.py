"""Security headers on every answer, installed once by the app factory (OWASP HTTP Headers Cheat Sheet).

Flask's answers, error answers included, get them in an after_request hook; the FHIR read fast path
answers before Flask, so it gets the same list through the `fhir_response_headers` extension it reads
(fhir_server knows nothing of this module). A view that sets one of these headers itself keeps its
value: a document's bytes framed by its own page (SAMEORIGIN), a sent record's page, the discovery
documents' public caching.
"""
from __future__ import annotations

from flask import Flask, Response, request

# No inline script or style anywhere: scripts and styles come from the static folders. Forms post to
# the same origin, but form-action is left out: Chromium checks it on the redirects after a submit, and
# signing in or allowing an app ends in a redirect to the app's own redirect_uri.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
# JSON, FHIR, files: nothing in them may run or be framed (OWASP REST Security Cheat Sheet).
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
HSTS = "max-age=31536000"


def common(https: bool) -> dict[str, str]:
    """What every answer carries, whatever its type."""
    out = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
           "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()"}
    if https:
        out["Strict-Transport-Security"] = HSTS
    return out


def for_answer(html: bool, static: bool, https: bool) -> dict[str, str]:
    """The headers of one answer: pages get the page policy; nothing but static files may be stored by a cache
    (every page, FHIR answer and token answer can hold health data or credentials)."""
    out = common(https)
    out["Content-Security-Policy"] = PAGE_CSP if html else API_CSP
    if not static:
        out["Cache-Control"] = "no-store"
    return out


def fast_path_headers(https: bool) -> list[tuple[str, str]]:
    """The fast path's FHIR reads carry what the same read answered by Flask carries."""
    return list(for_answer(html=False, static=False, https=https).items())


def init_app(app: Flask) -> None:
    """Add the headers to every Flask answer and hand the fast path its list."""
    https = str(app.config["BASE_URL"]).startswith("https://")
    app.extensions["fhir_response_headers"] = fast_path_headers(https)

    @app.after_request
    def _secure(resp: Response) -> Response:
        static = (request.endpoint or "").rsplit(".", 1)[-1] == "static"
        for name, value in for_answer(resp.mimetype == "text/html", static, https).items():
            resp.headers.setdefault(name, value)
        return resp
