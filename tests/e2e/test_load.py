"""Issue 15, item 2: the load test's short version (python -m bench.load, 15 s) on each backend: a practice's
mixed traffic (patients in the portal, SMART apps with tokens and refreshes, the EHR writing results and
messages) against a real `carespace serve`; no error of any kind, every write read back, every access
audited, and the server's audit queue reported."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.load import run, table
from tests.conftest import BACKENDS

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_load_for_15_seconds(backend: str, pg_cluster: Any, tmp_path: Path) -> None:
    folder = tmp_path / "load"
    db_url = (f"sqlite:///{folder / 'carespace.db'}" if backend == "sqlite"
              else pg_cluster.create_database("load15"))
    result = run(backend, db_url, users=30, seconds=15, patients=8, folder=folder, quiet=True)
    print(table(result))
    assert not result["problems"], result["problems"]
    assert result["errors"] == 0 and result["lost_writes"] == 0
    kinds = result["kinds"]
    for kind in ("portal sign-in", "portal health", "portal messages", "oauth authorize", "token: code exchange",
                 "app search labs", "app read Patient", "ehr create result", "token: backend services"):
        assert kinds.get(kind, {}).get("n", 0) >= 1, (kind, sorted(kinds))
    assert result["writes"] >= 5 and result["audit_queue"]["written"] == result["audit_queue"]["queued"]
