"""CSRF protection for every cookie-authenticated form (synchronizer token in the session)."""
from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, request, session

SAFE = {"GET", "HEAD", "OPTIONS"}


def csrf_token() -> str:
    """The session's token, created on first use; forms send it as `csrf_token`."""
    tok = session.get("_csrf")
    if not tok:
        tok = secrets.token_urlsafe(32)
        session["_csrf"] = tok
    return str(tok)


def init_app(app: Flask) -> None:
    """Check the token on unsafe methods; token-authenticated APIs register exempt prefixes."""
    app.extensions.setdefault("csrf_exempt_prefixes", ["/fhir"])
    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.before_request
    def _check() -> None:
        if request.method in SAFE:
            return
        if any(request.path.startswith(p) for p in app.extensions["csrf_exempt_prefixes"]):
            return
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        expected = session.get("_csrf") or ""
        if not expected or not hmac.compare_digest(str(sent), str(expected)):
            abort(400, description="This form has expired or was not sent from CareSpace. "
                                   "Go back, reload the page and try again.")
