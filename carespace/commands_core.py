"""Core commands: serve, db upgrade, db current, import."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .cli import CommandError


def app_and_engine() -> tuple[Any, Any]:
    from . import create_app
    app = create_app()
    return app, app.extensions["carespace.engine"]


def _database_error(exc: Exception) -> CommandError:
    """One line a person can act on for a database that cannot be reached or migrated (the driver's words)."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return CommandError(f"cannot reach or migrate the database: {exc.__class__.__name__}: {first}")


def _upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from . import migrations
    app, engine = app_and_engine()
    try:
        done = migrations.upgrade(engine)
        # Releases before schema revisions released a Binary through any document pointing at it; now only
        # its securityContext does, so their documents' Binaries are filed under their patient once.
        filed = app.extensions["fhir_service"].file_document_binaries() if done.legacy else 0
    except SQLAlchemyError as exc:
        raise _database_error(exc) from None
    if filed:
        print(f"filed {filed} document files under their patient (Binary.securityContext)")
    if done.before == done.after:
        print(f"database is up to date (revision {done.after})")
    elif done.legacy:
        print(f"upgraded a database from before schema revisions to revision {done.after}, keeping every row "
              f"({len(done.created)} tables created)")
    elif done.before is None:
        print(f"created the database schema at revision {done.after} ({len(done.created)} tables)")
    else:
        print(f"upgraded the database from revision {done.before} to {done.after} ({len(done.created)} tables created)")
    return 0


def _current(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from . import migrations
    _, engine = app_and_engine()
    try:
        rev, legacy = migrations.current(engine)
    except SQLAlchemyError as exc:
        raise _database_error(exc) from None
    head = migrations.head()
    if rev == head:
        print(f"{rev} (head)")
    elif rev is not None and not migrations.known(rev):
        print(f"{rev} (unknown to this CareSpace, whose head is {head}: a newer release migrated the database)")
    elif rev is not None:
        print(f"{rev} (this CareSpace's head is {head}: run `carespace db upgrade`)")
    elif legacy:
        print(f"none: a CareSpace database from before schema revisions (run `carespace db upgrade` for {head})")
    else:
        print(f"none: the database is empty (run `carespace db upgrade` for {head})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from . import db
    app, engine = app_and_engine()
    if args.workers < 1:
        raise CommandError("--workers must be 1 or more")
    if args.workers > 1 and engine.dialect.name == "sqlite":
        raise CommandError("--workers needs PostgreSQL (CARESPACE_DATABASE_URL=postgresql+psycopg://...): "
                           "SQLite lets one process write at a time, so serve it with one worker")
    db.upgrade(engine)
    if args.workers > 1:
        from . import workers
        engine.dispose()  # nothing of this process's is shared with the workers it forks
        print(f"CareSpace serving on http://{args.host}:{args.port} with {args.workers} workers "
              f"(base URL {app.config['BASE_URL']})", flush=True)
        workers.serve(args.host, args.port, args.workers, args.threads, args.connection_limit)
        return 0
    import signal

    import waitress

    def _stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # exit through atexit, which writes the queued AuditEvents
    signal.signal(signal.SIGTERM, _stop)
    print(f"CareSpace serving on http://{args.host}:{args.port} (base URL {app.config['BASE_URL']})", flush=True)
    try:
        waitress.serve(app, host=args.host, port=args.port, threads=args.threads, ident="CareSpace",
                       max_request_body_size=64 * 1024 * 1024, connection_limit=args.connection_limit)
    finally:  # the access-event queue's figures (memory and lag under load), once everything queued is written
        audit = app.extensions["audit_log"]
        audit.flush(timeout=60)
        print("audit queue: " + json.dumps(audit.stats()), flush=True)
    return 0


def _import(args: argparse.Namespace) -> int:
    from . import db
    from .importer import ImportError_, run_import
    app, engine = app_and_engine()
    db.upgrade(engine)
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CommandError(f"no such file: {missing[0]}")
    try:
        totals, secs = run_import(app.extensions["fhir_service"], paths, notify=args.notify)
    except ImportError_ as exc:
        raise CommandError(str(exc)) from None
    n = sum(totals.values())
    top = ", ".join(f"{t} {c}" for t, c in totals.most_common(6))
    print(f"imported {n} resources from {len(paths)} file(s) in {secs:.1f} s ({n / max(secs, 1e-9):,.0f} resources/s): {top}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the web server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=8, help="threads per worker")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes on the port (gunicorn; PostgreSQL only); 1: one waitress process")
    p.add_argument("--connection-limit", type=int, default=1000,
                   help="open connections accepted at once (waitress's own default, 100, refuses the 101st "
                        "keep-alive client)")
    p.set_defaults(func=_serve)
    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dsub.required = True
    u = dsub.add_parser("upgrade", help="create or migrate the schema to the newest revision (idempotent)")
    u.set_defaults(func=_upgrade)
    c = dsub.add_parser("current", help="print the database's schema revision")
    c.set_defaults(func=_current)
    p = sub.add_parser("import", help="load FHIR Bundles or NDJSON files")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--notify", action="store_true",
                   help="tell patients and their people by email about new results, documents and messages in the "
                        "files (historical data tells nobody without it); the running server sends the mails "
                        "after the batching window")
    p.set_defaults(func=_import)
