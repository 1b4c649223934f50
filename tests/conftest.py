"""Shared fixtures: an app per database backend (SQLite and a throwaway PostgreSQL cluster),
Synthea data, a real SMTP server, a running server process and headless Chromium.

Every test stays inside the repository (tests/support/outside.py): the data it needs is in tests/data.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import outside
from tests.support.data import ROOT, synthea_dir
from tests.support.outside import pytest_sessionfinish, repository_boundary  # noqa: F401 - hook and fixture

outside.install()  # before the product and the test modules are imported

from carespace import close_app  # noqa: E402
from tests.support.postgres import Cluster, free_port, stop_process  # noqa: E402
from tests.support.smtp import SmtpServer  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
BACKENDS = [b for b in os.environ.get("CARESPACE_TEST_BACKENDS", "sqlite,postgres").split(",") if b]
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster | None]:
    if "postgres" not in BACKENDS:
        yield None
        return
    cluster = Cluster().start()
    yield cluster
    cluster.stop()


def _new_db_url(backend: str, cluster: Cluster | None, folder: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'carespace.db'}"
    assert cluster is not None
    return cluster.create_database(f"t{os.getpid()}_{next(_db_counter)}")


def make_app(db_url: str, folder: Path, **extra: Any) -> Any:
    from carespace import create_app, db
    cfg = {"INSTANCE_DIR": str(folder), "DATABASE_URL": db_url, "BASE_URL": "http://localhost",
           "TESTING": True, "SECRET_KEY": "test-secret", **extra}
    app = create_app(cfg)
    db.upgrade(app.extensions["carespace.engine"])
    return app


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(backend: str, pg_cluster: Cluster | None, tmp_path: Path) -> Iterator[Any]:
    """A fresh app and empty database on each backend."""
    application = make_app(_new_db_url(backend, pg_cluster, tmp_path), tmp_path / "instance")
    yield application
    close_app(application)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def fhir(app: Any) -> Any:
    return app.extensions["fhir_service"]


def synthea_files() -> list[Path]:
    """The 12 Synthea patients unpacked from tests/data/synthea.tar.xz."""
    return sorted(synthea_dir().glob("*.json"))


def synthea_bundles() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in synthea_files()]


@pytest.fixture(scope="module", params=BACKENDS)
def synthea_app(request: pytest.FixtureRequest, pg_cluster: Cluster | None,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An app whose database holds all 12 Synthea patients (loaded once per module and backend)."""
    from carespace.importer import run_import
    folder = tmp_path_factory.mktemp("synthea")
    application = make_app(_new_db_url(str(request.param), pg_cluster, folder), folder / "instance")
    run_import(application.extensions["fhir_service"], synthea_files(), out=open(os.devnull, "w"))
    yield application
    close_app(application)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


class LiveServer:
    """`carespace serve` in a subprocess with its own instance folder and database."""

    def __init__(self, folder: Path, db_url: str, smtp_url: str | None, env: dict[str, str] | None = None,
                 serve_args: tuple[str, ...] = ()) -> None:
        self.serve_args = serve_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        self.env = {**os.environ, "CARESPACE_INSTANCE_DIR": str(folder), "CARESPACE_DATABASE_URL": db_url,
                    "CARESPACE_BASE_URL": self.url, **({"CARESPACE_SMTP_URL": smtp_url} if smtp_url else {}),
                    **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a `carespace` command against this server's instance and database."""
        return subprocess.run([sys.executable, "-m", "carespace", *args], env=self.env, capture_output=True,
                              text=True, check=check, timeout=300)

    def start(self) -> "LiveServer":
        import requests
        self.cli("db", "upgrade")
        log = open(self.folder / "server.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "carespace", "serve", "--port", str(self.port),
                                      *self.serve_args], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return self
            except requests.RequestException:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError("server did not start: " + (self.folder / "server.log").read_text()[-3000:])

    def stop(self) -> None:
        stop_process(self.proc)


# The e2e servers: SQLite and one process, or (CARESPACE_TEST_E2E_SERVER=workers) a PostgreSQL database and
# `carespace serve --workers 2`, so the whole e2e suite can run against several processes.
E2E_SERVER = os.environ.get("CARESPACE_TEST_E2E_SERVER", "sqlite")
Store = Callable[[Path], tuple[str, tuple[str, ...]]]


@pytest.fixture(scope="session")
def e2e_store(pg_cluster: Cluster | None) -> Store:
    """folder -> (database URL, serve arguments) of an e2e server, as CARESPACE_TEST_E2E_SERVER says."""
    if E2E_SERVER not in ("sqlite", "workers"):
        raise pytest.UsageError(f"CARESPACE_TEST_E2E_SERVER must be sqlite or workers, not {E2E_SERVER!r}")

    def store(folder: Path) -> tuple[str, tuple[str, ...]]:
        if E2E_SERVER == "sqlite":
            return f"sqlite:///{folder / 'carespace.db'}", ()
        if pg_cluster is None:
            raise pytest.UsageError("CARESPACE_TEST_E2E_SERVER=workers needs postgres in CARESPACE_TEST_BACKENDS")
        return pg_cluster.create_database(f"e2e_{next(_db_counter)}_{os.getpid()}"), ("--workers", "2")
    return store


@pytest.fixture
def live_server(tmp_path: Path, smtp_server: SmtpServer, e2e_store: Store) -> Iterator[LiveServer]:
    folder = tmp_path / "live"
    folder.mkdir()
    url, serve_args = e2e_store(folder)
    server = LiveServer(folder, url, smtp_server.url, serve_args=serve_args).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian's package, driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                               args=["--no-sandbox", "--disable-background-networking", "--disable-gpu",
                                     "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A desktop-sized page; screenshots of failures land in test-artifacts/."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    except Exception:  # noqa: BLE001 - a screenshot is a courtesy
        pass
    context.close()


@pytest.fixture
def phone_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A 375 px wide phone page."""
    context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    pg = context.new_page()
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-phone.png"), full_page=True)
    except Exception:  # noqa: BLE001
        pass
    context.close()


@pytest.fixture
def smart(app: Any, client: Any) -> Any:
    """SMART driver (tests/functional/test_smart_helpers.py): users, apps, authorize -> consent -> token."""
    from tests.support.smart import Smart
    return Smart(app, client)


def trusted_client(application: Any) -> Any:
    """A test client whose FHIR calls run as the trusted system context (no SMART token needed)."""
    from fhir_server.access.context import AccessContext
    from fhir_server.rest.fastpath import HeaderResolver
    ctx = AccessContext.system("tests")
    application.extensions["fhir_access_resolver"] = HeaderResolver(lambda _header: ctx)  # plain reads: fast path
    return application.test_client()


@pytest.fixture
def fhir_client(app: Any) -> Any:
    """A client of a fresh, empty FHIR store acting as the trusted system (FHIR API tests)."""
    return trusted_client(app)


@pytest.fixture(scope="module")
def synthea_client(synthea_app: Any) -> Any:
    """A trusted client of the module's Synthea-loaded app."""
    return trusted_client(synthea_app)


@pytest.fixture(scope="module", params=BACKENDS)
def module_app(request: pytest.FixtureRequest, pg_cluster: Cluster | None,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An empty app shared by one module's tests on each backend (for data the module writes once)."""
    folder = tmp_path_factory.mktemp("module")
    application = make_app(_new_db_url(str(request.param), pg_cluster, folder), folder / "instance")
    yield application
    close_app(application)


@pytest.fixture(scope="module")
def module_client(module_app: Any) -> Any:
    """A trusted client of `module_app`."""
    return trusted_client(module_app)
