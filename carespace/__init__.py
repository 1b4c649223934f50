"""CareSpace composition root: the app factory wires configuration, database and every package."""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from flask import Flask, g, request

__version__ = "0.1.0"

# Packages wired into the app, in order; each module has init_app(app).  The security headers come first
# (every answer), the accounts package next (sessions), then the OAuth server (replaces the FHIR access
# resolver), then the UIs.
PACKAGE_MODULES = ["carespace.headers", "carespace.csrf", "carespace.mailer", "smart_auth.accounts.views",
                   "carespace.notifications", "carespace.exports", "smart_auth.oauth.views", "carespace.changes",
                   "portal_ui", "bundles.views", "bundles.share_views"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app; nothing connects or writes until a request or command needs it."""
    from fhir_server import AuditLog, FhirService, ReadReplica, capability_statement, register_api

    from . import config, db

    cfg = config.load(test_config)
    app = Flask(__name__, instance_path=cfg["INSTANCE_DIR"], instance_relative_config=False)
    app.config.update(cfg)
    https = str(cfg["BASE_URL"]).startswith("https://")
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=https,
                      SESSION_COOKIE_NAME="carespace_session", PERMANENT_SESSION_LIFETIME=8 * 3600)
    engine = db.make_engine(cfg["DATABASE_URL"])
    sessions = db.make_sessions(engine)
    app.extensions["carespace.engine"] = engine
    app.extensions["carespace.sessions"] = sessions
    app.extensions["carespace.write_sessions"] = db.make_sessions(engine, write=True)
    app.extensions["carespace.db_unavailable"] = db.unavailable  # the packages' error handlers answer 503
    app.config.setdefault("RETRY_AFTER_S", db.RETRY_AFTER_S)
    replica = None
    if cfg.get("DATABASE_REPLICA_URL"):  # searches, reads and $everything may go to a streaming replica
        replica_engine = db.make_engine(cfg["DATABASE_REPLICA_URL"], connect_timeout=2)
        app.extensions["carespace.replica_engine"] = replica_engine
        replica = ReadReplica(db.make_sessions(replica_engine), engine, retry_s=float(cfg["REPLICA_RETRY_S"]))
    fhir = FhirService(sessions, cfg["FHIR_BASE_URL"], cfg["SECRET_KEY"].encode(), replica=replica)
    app.extensions["fhir_service"] = fhir
    audit = AuditLog(fhir)
    fhir.audit = audit.access
    fhir.settle = audit.flush
    app.extensions["audit_log"] = audit
    app.extensions["patient_name_lookup"] = lambda pid: _patient_name(fhir, pid)
    security_hooks: list[Any] = []
    app.extensions["capability_security_hooks"] = security_hooks

    def _security(rest: dict[str, Any]) -> None:
        for hook in security_hooks:
            hook(rest)

    app.extensions["capability_statement"] = lambda: capability_statement(
        cfg["FHIR_BASE_URL"], __version__, _security)
    register_api(app, cfg.get("FHIR_ACCESS_RESOLVER") or _no_authorization_server)

    for name in PACKAGE_MODULES:
        importlib.import_module(name).init_app(app)
    from portal_ui import register_error_pages
    register_error_pages(app)  # app-wide: pages a person can act on, OperationOutcomes under /fhir

    @app.teardown_appcontext
    def _close_db(_exc: BaseException | None) -> None:
        dbs = g.pop("auth_db", None)
        if dbs is not None:
            dbs.close()
        for record in g.pop("audit_after_unit", []):  # security events held back while the request held the lock
            record()

    _answer_unavailable(app)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        db.ping(engine)
        return {"status": "ok"}

    return app


BUSY_PAGE = ("<!doctype html><html lang=en><title>CareSpace is busy</title><h1>CareSpace is busy right now</h1>"
             "<p>Nothing was changed. Wait a few seconds, then reload the page or send the form again.</p></html>")


def _answer_unavailable(app: Flask) -> None:
    """A busy or unreachable database is a 503 with Retry-After, never a 500 page: an OperationOutcome under
    /fhir and RFC 6749 JSON under /oauth (their blueprints' own handlers), JSON for programs, else a page
    saying what to do. Other database errors stay 500s."""
    from sqlalchemy.exc import SQLAlchemyError

    from . import db

    def busy(err: SQLAlchemyError) -> Any:
        if not db.unavailable(err):
            raise err  # the app's 500 handling, which logs it
        app.logger.warning("database busy or unavailable on %s %s: %s", request.method, request.path,
                           str(err).splitlines()[0])
        headers = {"Retry-After": str(app.config["RETRY_AFTER_S"]), "Cache-Control": "no-store"}
        best = request.accept_mimetypes.best_match(["text/html", "application/json"])
        if request.path == "/healthz" or best == "application/json":
            return {"error": "temporarily_unavailable",
                    "error_description": "The database is busy; nothing was changed. Try again in a moment."}, \
                503, headers
        from portal_ui import error_page
        try:
            body, status = error_page(503)
        except Exception:  # noqa: BLE001 - the page's menu reads the database too; say it plainly without it
            body, status = BUSY_PAGE, 503
        return body, status, headers

    app.register_error_handler(SQLAlchemyError, busy)


def close_app(app: Flask) -> None:
    """Write the queued AuditEvents, stop the background senders and close the database connections."""
    app.extensions["audit_log"].flush()
    for name in ("notifier", "mailer"):
        job = app.extensions.get(name)
        if job is not None:
            job.sender.close()
    exports = app.extensions.get("exports")
    if exports is not None:
        exports.close()
    feed = app.extensions.get("carespace.changes")
    if feed is not None:
        feed.stop()
    app.extensions["carespace.engine"].dispose()
    if "carespace.replica_engine" in app.extensions:
        app.extensions["carespace.replica_engine"].dispose()


def _no_authorization_server() -> Any:
    """Fail closed: until the SMART package installs its token resolver, nobody reaches the FHIR API."""
    from fhir_server import Unauthorized
    raise Unauthorized("No authorization server is configured")


def _patient_name(fhir: Any, patient_id: str) -> str:
    """A patient's display name ("Given Family") for menus and banners."""
    from fhir_server import AccessContext, FhirError, human_name
    try:
        res = fhir.read(AccessContext.system("portal"), "Patient", patient_id).json()
    except FhirError:
        return patient_id
    return human_name(res, with_prefix=False) or patient_id
