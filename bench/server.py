"""The real app and a raw floor app behind one waitress server, run as `python -m bench.server` in a subprocess.

/floor/<type>/<id> returns the stored row's text straight from the database (same pool, no FHIR logic),
so the ratio full/floor shows what the FHIR stack costs over the WSGI server and the database;
/trusted/fhir/... is the same app with the trusted access context, which splits that cost into the FHIR
layer's and the SMART layer's (token check, AuditEvent write).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests.support.postgres import free_port

FLOOR_SQL = "SELECT text FROM fhir_resource WHERE res_type = {p} AND fhir_id = {p}"
ROOT = Path(__file__).resolve().parent.parent


def floor_app(engine: Any) -> Callable[..., Iterable[bytes]]:
    """A WSGI app that answers GET /floor/<type>/<id> with the stored text: the least any server must do.

    Each server thread keeps one DBAPI connection in autocommit, so a read is exactly one round trip
    running the one SELECT: no pool checkout, ping, BEGIN or COMMIT.
    """
    sql = FLOOR_SQL.format(p="%s" if engine.dialect.paramstyle in ("format", "pyformat") else "?")
    local = threading.local()

    def cursor() -> Any:
        if not hasattr(local, "cursor"):
            raw = engine.raw_connection()  # the engine's own connect settings (SQLite pragmas)
            if engine.dialect.name == "postgresql":
                raw.driver_connection.autocommit = True
            local.raw, local.cursor = raw, raw.cursor()
        return local.cursor

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        _, _, rtype, fid = environ["PATH_INFO"].split("/", 3)
        cur = cursor()
        cur.execute(sql, (rtype, fid))
        row = cur.fetchone()
        if row is None:
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        body = row[0].encode()
        start_response("200 OK", [("Content-Type", "application/fhir+json; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app


def dispatcher(config: dict[str, Any]) -> Callable[..., Iterable[bytes]]:
    """/fhir...: the real app (SMART tokens, audit); /trusted/fhir...: the same app with the trusted in-process
    access context (no token, no audit), to separate the FHIR layer's cost; /uncached/fhir/...: the real app
with the token cache off (the token looked up on every request); /floor/...: the floor."""
    from carespace import create_app
    from fhir_server.access.context import AccessContext
    from fhir_server.rest.fastpath import HeaderResolver
    app = create_app(config)
    trusted_ctx = AccessContext.system("bench")
    trusted = create_app({**config, "FHIR_ACCESS_RESOLVER": HeaderResolver(lambda _header: trusted_ctx)})
    uncached = create_app({**config, "TOKEN_CACHE_SECONDS": 0})
    floor = floor_app(app.extensions["carespace.engine"])

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path.startswith("/floor/"):
            return floor(environ, start_response)
        if path.startswith("/trusted/"):
            environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/trusted", path[len("/trusted"):]
            return trusted(environ, start_response)  # type: ignore[no-any-return]
        if path.startswith("/uncached/"):
            environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/uncached", path[len("/uncached"):]
            return uncached(environ, start_response)  # type: ignore[no-any-return]
        return app(environ, start_response)  # type: ignore[no-any-return]
    return dispatch


class ServerProcess:
    """Starts `python -m bench.server` on a free loopback port for a store's configuration."""

    def __init__(self, config: dict[str, Any], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = {**config, "BASE_URL": self.url}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        import http.client
        env = {**os.environ, "BENCH_SERVER_CONFIG": json.dumps(self.config), "PYTHONPATH": str(ROOT)}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "bench.server", str(self.port)], env=env,
                                         stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError("bench server did not start: " + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def main() -> None:
    import waitress
    port = int(sys.argv[1])
    app = dispatcher(json.loads(os.environ["BENCH_SERVER_CONFIG"]))
    waitress.serve(app, host="127.0.0.1", port=port, threads=4, ident="CareSpace-bench",
                   channel_timeout=3600, _quiet=True)


if __name__ == "__main__":
    main()
