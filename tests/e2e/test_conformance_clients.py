"""Independent clients against a running CareSpace: SMART's client-js (`fhirclient` on npm), fhir-kit-client
and oauth4webapi, with Medplum's R4 validator on every answer (tests/e2e/conformance/run.mjs, pinned in its
package-lock.json; `make test` runs `npm ci` there). One test per check, so a failure names the client
and the interaction."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import synthea_files

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent / "conformance"
CHECKS = [
    "oauth4webapi: RFC 8414 discovery names revocation and introspection",
    "oauth4webapi: client_credentials token",
    "oauth4webapi: introspection of its own token is active",
    "oauth4webapi: revocation, then introspection says inactive",
    "fhir-kit-client: CapabilityStatement is valid R4",
    "fhir-kit-client: SMART metadata",
    "fhir-kit-client: create, read, update, history of a Basic",
    "fhir-kit-client: delete a second later (not held by AuditEvents), then read is 410",
    "fhir-kit-client: search with _elements keeps mandatory elements",
    "fhir-kit-client: search and the next page",
    "fhir-kit-client: transaction on the base with a trailing slash",
    "fhir-kit-client: batch",
    "fhir-kit-client: system search (_type) with a system token",
    "fhir-kit-client: system history with a system token",
    "fhir-kit-client: a bad request is an OperationOutcome",
    "fhirclient (client-js): request, patient read, paged flat search",
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, smtp_server: Any, e2e_store: Any) -> dict[str, dict[str, Any]]:
    """Run every check once against one server (a Synthea patient, a backend client)."""
    from tests.conftest import LiveServer
    if not (HERE / "node_modules").is_dir():
        pytest.fail("tests/e2e/conformance/node_modules is missing: run `make test` (it runs npm ci there)")
    node = shutil.which("node")
    assert node, "Node.js is needed for the conformance clients"
    folder = tmp_path_factory.mktemp("conformance")
    db_url, serve_args = e2e_store(folder)
    live = LiveServer(folder, db_url, smtp_server.url, serve_args=serve_args).start()
    try:
        bundle = min(synthea_files(), key=lambda p: p.stat().st_size)
        live.cli("import", str(bundle))
        pid = _patient_id(live)
        reg = json.loads(live.cli("register-client", "--name", "Conformance backend", "--secret",
                                  "--grant-type", "client_credentials", "--scope", "system/*.cruds").stdout)
        run = subprocess.run([node, "run.mjs"], cwd=HERE, capture_output=True, text=True, timeout=240,
                             env={**os.environ, "CS_BASE": live.url, "CS_CLIENT_ID": reg["client_id"],
                                  "CS_CLIENT_SECRET": reg["client_secret"], "CS_PATIENT_ID": pid})
        if run.returncode != 0:  # every check fails with the reason, without starting the server again
            return {name: {"name": name, "ok": False, "detail": run.stderr[-3000:]} for name in CHECKS}
        found = {r["name"]: r for r in json.loads(run.stdout.strip().splitlines()[-1])}
    finally:
        live.stop()
    return found


def _patient_id(live: Any) -> str:
    """The server's id of the imported Synthea patient (the only one)."""
    from carespace import close_app, create_app
    from fhir_server import AccessContext
    app = create_app({"INSTANCE_DIR": str(live.folder), "DATABASE_URL": live.env["CARESPACE_DATABASE_URL"],
                      "BASE_URL": live.url})
    try:
        _, page = app.extensions["fhir_service"].search(AccessContext.system("test"), "Patient", [])
        return str(page.matches[0][1])
    finally:
        close_app(app)


def test_every_check_ran(outcomes: dict[str, dict[str, Any]]) -> None:
    assert sorted(outcomes) == sorted(CHECKS)


@pytest.mark.parametrize("name", CHECKS)
def test_independent_client(outcomes: dict[str, dict[str, Any]], name: str) -> None:
    result = outcomes[name]
    assert result["ok"] is True, result["detail"]
