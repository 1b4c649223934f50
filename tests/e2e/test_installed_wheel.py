"""CareSpace installed the way users install it: a wheel built from the checkout, in a new venv that
cannot see the checkout, run from another folder. Every package, template, static file and data
table must be in the wheel, and the installed `carespace` must upgrade, load, import and serve."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from carespace import migrations
from tests.conftest import ROOT, synthea_files
from tests.support.postgres import free_port, stop_process

pytestmark = pytest.mark.e2e
PACKAGES = ("carespace", "fhir_server", "smart_auth", "portal_ui", "bundles")
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                    "instance", "test-artifacts", ".tmp", ".pytest_cache", ".mypy_cache",
                                    ".ruff_cache")
STATIC_URLS = {"portal_ui/static/": "/static/portal/", "bundles/static/bundles/": "/static/bundles/"}
CONTENT_TYPES = {".css": ("text/css",), ".js": ("text/javascript", "application/javascript")}


def package_files() -> set[str]:
    """What the wheel must hold: every file of the product's packages in the checkout (no caches)."""
    out = set()
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                out.add(path.relative_to(ROOT).as_posix())
    return out


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a step; on failure the assertion shows the command and the end of its stderr (the missing module)."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-3000:]}{done.stdout[-1000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from a copy of the checkout (the copy keeps build/ out of the working tree)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=NOT_SOURCE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(src)])
    found = sorted((base / "dist").glob("carespace-*.whl"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A new venv with the wheel and its dependencies (the versions this suite runs with), and a folder elsewhere."""
    base = tmp_path_factory.mktemp("installed")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    frozen = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"]).stdout
    pins = [line for line in frozen.splitlines()  # name==version only: constraints take no URLs
            if "==" in line and " @ " not in line and not line.lower().startswith("carespace")]
    (base / "constraints.txt").write_text("\n".join(pins) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
          "-c", str(base / "constraints.txt"), str(wheel)])
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CARESPACE_"))}
    env = {**keep, "PATH": f"{venv / 'bin'}{os.pathsep}{keep.get('PATH', '')}", "PYTHONNOUSERSITE": "1",
           "CARESPACE_INSTANCE_DIR": str(elsewhere / "instance"),
           "CARESPACE_DATABASE_URL": f"sqlite:///{elsewhere / 'carespace.db'}",
           "CARESPACE_BASE_URL": f"http://127.0.0.1:{port}"}
    return {"venv": venv, "cwd": elsewhere, "env": env, "port": port}


def carespace(installed: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return _run([str(installed["venv"] / "bin" / "carespace"), *args], cwd=installed["cwd"], env=installed["env"])


def test_the_wheel_holds_every_package_file_and_nothing_else(wheel: Path) -> None:
    names = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    expected = package_files()
    assert sorted(expected - names) == [], "missing from the wheel"
    assert sorted(names - expected) == [], "in the wheel but not a product file (tests, bench, scripts, caches?)"
    assert {"smart_auth/oauth/__init__.py", "fhir_server/capability_statement.json",
            "carespace/migrations/versions/0001_baseline.py", "portal_ui/templates/base.html"} <= names
    meta = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist()
                                            if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "carespace = carespace.cli:main" in meta


def test_the_installed_product_never_imports_from_the_checkout(installed: dict[str, Any]) -> None:
    code = ("import json, sys, importlib; mods = " + repr(list(PACKAGES)) + "; print(json.dumps("
            "{'path': sys.path, 'files': {m: importlib.import_module(m).__file__ for m in mods}}))")
    found = json.loads(_run([str(installed["venv"] / "bin" / "python"), "-c", code], cwd=installed["cwd"],
                            env=installed["env"]).stdout)
    site = str(installed["venv"])
    assert all(f.startswith(site) for f in found["files"].values()), found["files"]
    assert not [p for p in found["path"] if p and Path(p).resolve().is_relative_to(ROOT)], found["path"]


@pytest.fixture(scope="module")
def served(installed: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The command-line steps a new user takes, then `carespace serve` on a free port."""
    steps: dict[str, Any] = {}
    steps["help"] = carespace(installed, "--help").stdout
    steps["upgrade"] = carespace(installed, "db", "upgrade").stdout
    steps["current"] = carespace(installed, "db", "current").stdout
    steps["demo"] = carespace(installed, "demo").stdout
    steps["import"] = carespace(installed, "import", str(min(synthea_files(), key=lambda p: p.stat().st_size))).stdout
    url = f"http://127.0.0.1:{installed['port']}"
    log_path = installed["cwd"] / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(installed["venv"] / "bin" / "carespace"), "serve", "--port",
                                 str(installed["port"])], cwd=installed["cwd"], env=installed["env"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(url + "/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                assert proc.poll() is None, "carespace serve exited:\n" + log_path.read_text()[-3000:]
                time.sleep(0.2)
        else:
            raise AssertionError("carespace serve did not answer in 60 s:\n" + log_path.read_text()[-3000:])
        yield url, steps
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


def test_the_commands_a_new_user_runs(served: tuple[str, dict[str, Any]]) -> None:
    _, steps = served
    for command in ("serve", "db", "demo", "import", "invite-patient", "register-client", "outbox", "decrypt-record"):
        assert command in steps["help"], command
    head = migrations.head()
    assert steps["upgrade"].startswith(f"created the database schema at revision {head}")
    assert steps["current"] == f"{head} (head)\n"
    assert "alex.morgan@example.com" in steps["demo"] and "CareSpace-Demo1!" in steps["demo"]
    assert re.match(r"imported \d+ resources from 1 file", steps["import"]), steps["import"]


def test_the_server_answers_metadata_smart_discovery_and_refuses_anonymous_reads(served: tuple[str, Any]) -> None:
    url, _ = served
    meta = requests.get(url + "/fhir/metadata", timeout=30)
    assert meta.status_code == 200, meta.text[:500]
    assert meta.json()["resourceType"] == "CapabilityStatement" and meta.json()["fhirVersion"] == "4.0.1"
    smart = requests.get(url + "/fhir/.well-known/smart-configuration", timeout=30)
    assert smart.status_code == 200 and smart.json()["token_endpoint"].startswith(url)
    for path in ("/fhir/Patient?_count=1", "/fhir/Patient/anything"):
        refused = requests.get(url + path, timeout=30)
        assert refused.status_code == 401 and refused.json()["resourceType"] == "OperationOutcome", path


def test_the_pages_and_every_static_file_come_from_the_installed_package(served: tuple[str, Any]) -> None:
    url, _ = served
    login = requests.get(url + "/login", timeout=30)
    assert login.status_code == 200 and 'name="email"' in login.text
    linked = re.findall(r'(?:href|src)="(/static/[^"?]+)', login.text)
    assert "/static/portal/portal.css" in linked and "/static/portal/portal.js" in linked, linked
    files = [f for f in package_files() for prefix in STATIC_URLS if f.startswith(prefix)]
    assert len(files) >= 5, files
    for name in sorted(files):
        prefix = next(p for p in STATIC_URLS if name.startswith(p))
        got = requests.get(url + STATIC_URLS[prefix] + name[len(prefix):], timeout=30)
        assert got.status_code == 200, name
        assert got.headers["Content-Type"].split(";")[0] in CONTENT_TYPES[Path(name).suffix], (name, got.headers)
        assert got.content == (ROOT / name).read_bytes(), name
    assert requests.get(url + "/forgot-password", timeout=30).status_code == 200  # smart_auth's templates
    gone = requests.get(url + "/records/not-a-record", timeout=30)  # bundles' templates
    assert gone.status_code == 404 and "<html" in gone.text.lower() and "Traceback" not in gone.text
