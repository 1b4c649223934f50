"""CareSpace composition root: the app factory wires configuration, database and every package."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Flask

__version__ = "0.1.0"


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app; nothing connects or writes until a request or command needs it."""
    from fhir_server import api as fhir_api
    from fhir_server.access import AccessContext
    from fhir_server.capability import capability_statement
    from fhir_server.service import FhirService

    from . import config, db

    cfg = config.load(test_config)
    app = Flask(__name__, instance_path=cfg["INSTANCE_DIR"], instance_relative_config=False)
    app.config.update(cfg)
    engine = db.make_engine(cfg["DATABASE_URL"])
    sessions = db.make_sessions(engine)
    app.extensions["carespace.engine"] = engine
    app.extensions["carespace.sessions"] = sessions
    fhir = FhirService(sessions, cfg["FHIR_BASE_URL"], cfg["SECRET_KEY"].encode())
    app.extensions["fhir_service"] = fhir
    security_hooks: list[Any] = []
    app.extensions["capability_security_hooks"] = security_hooks

    def _security(rest: dict[str, Any]) -> None:
        for hook in security_hooks:
            hook(rest)

    app.extensions["capability_statement"] = lambda: capability_statement(
        cfg["FHIR_BASE_URL"], __version__, _security)
    fhir_api.register(app, cfg.get("FHIR_ACCESS_RESOLVER") or (lambda: AccessContext.system("open")))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        db.ping(engine)
        return {"status": "ok"}

    return app
