"""Tests stay inside the clone: the guard's rules, its live audit hook, and the static scan of every test module."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import outside
from tests.support.outside import GUARD_FILES, ROOT, Boundary, OutsideRepository, scan

BESIDE = ROOT.parent / "shared" / "synthea" / "README.md"


def test_rules_for_a_clone_beside_other_folders() -> None:
    b = Boundary(Path("/x/clone"), "/tmp", "/home/u", ["/opt/py"])
    for ok in ("/x/clone/tests/data/synthea.tar.xz", "/tmp/pytest-of-u/pytest-3/t0/db", "/tmp/tmpab12/x",
               "/tmp/carespace-pg-1/data", "/tmp/playwright-artifacts-Xy/dl", "/usr/lib/postgresql/15/bin/initdb", "/etc/ssl/certs/ca.pem",
               "/dev/null", "/home/u/.cache/pip/x", "/opt/py/lib/python3.11/os.py", "/x/clone"):
        assert b.allows(ok), ok
    for bad in ("/x/shared/synthea/a.json", "/x/clone-other/README.md", "/x", "/x/clone/../shared",
                "/tmp/shared/x", "/home/u/notes.txt", "/work/anything", "/opt/other", "/"):
        assert not b.allows(bad), bad


def test_rules_where_the_clone_sits_in_temp_or_home_or_at_the_top() -> None:
    in_mktemp = Boundary(Path("/tmp/tmpq1/cs"), "/tmp", "/root", [])
    assert not in_mktemp.allows("/tmp/tmpq1/shared/x") and in_mktemp.allows("/tmp/tmpz9/x")
    in_temp = Boundary(Path("/tmp/cs"), "/tmp", "/root", [])
    assert not in_temp.allows("/tmp/shared/x") and in_temp.allows("/tmp/pytest-of-root/p/x")
    in_home = Boundary(Path("/home/u/cs"), "/tmp", "/home/u", [])
    assert in_home.allows("/home/u/.netrc") and not in_home.allows("/home/u/shared/x")
    at_top = Boundary(Path("/cs"), "/tmp", "/root", [])
    assert at_top.allows("/usr/share/zoneinfo/UTC") and not at_top.allows("/work/shared/x")


def _forbidden(action: object) -> None:
    start = len(outside.violations)
    with pytest.raises(OutsideRepository, match="tests must stay inside the repository"):
        action()  # type: ignore[operator]
    assert len(outside.violations) == start + 1
    del outside.violations[start:]  # reached on purpose: not this test's failure


def test_the_live_guard_refuses_opening_listing_connecting_and_subprocess_arguments_outside() -> None:
    _forbidden(lambda: open(BESIDE))
    _forbidden(lambda: os.open(BESIDE, os.O_RDONLY))
    _forbidden(lambda: os.listdir(ROOT.parent))
    _forbidden(lambda: os.scandir(BESIDE.parent))  # what Path.glob lists with, where the folder exists
    _forbidden(lambda: sqlite3.connect(BESIDE.with_suffix(".db")))
    _forbidden(lambda: subprocess.run(["cat", str(BESIDE)], check=False))
    _forbidden(lambda: subprocess.run(["ls"], cwd=ROOT.parent, check=False))
    assert (ROOT / "README.md").read_text().startswith("# CareSpace")


def test_a_test_that_swallows_the_error_or_reaches_at_import_still_fails(tmp_path: Path) -> None:
    """A throwaway suite using the same guard: the run fails and names both paths."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        from tests.support import outside
        from tests.support.outside import pytest_sessionfinish, repository_boundary  # noqa: F401
        outside.install()
    """))
    (tmp_path / "test_reach.py").write_text(textwrap.dedent("""
        import os
        from tests.support.outside import ROOT
        try:
            os.listdir(ROOT.parent)
        except Exception:
            pass

        def test_swallows():
            try:
                open(ROOT.parent / "shared" / "synthea" / "README.md").close()
            except Exception:
                pass

        def test_inside():
            assert (ROOT / "README.md").read_text()
    """))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "2 passed, 1 error" in out, out
    assert f"open {ROOT.parent / 'shared' / 'synthea' / 'README.md'}" in out, out
    assert f"os.listdir {ROOT.parent}" in out, out


def test_the_scan_finds_every_way_of_naming_a_path_outside() -> None:
    src = textwrap.dedent("""
        from pathlib import Path
        A = Path(__file__).resolve().parents[2].parent / "shared"
        B = ROOT.parent / "x"
        C = Path(__file__).parent.parent.parent.parent
        D = open("../shared/synthea/x.json")
        E = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        F = "/work/shared/fhir-r4"
        OK1 = Path(__file__).resolve().parents[2] / "test-artifacts"
        OK2 = Path(__file__).parent.parent.parent / "README.md"
        OK3 = "/fhir/Patient?_count=2"
    """)
    found = scan(src, "tests/e2e/test_x.py")
    assert [f.split(":")[0] for f in found] == ["3", "4", "5", "6", "7", "8"], found


def test_no_test_module_names_a_path_outside_the_repository() -> None:
    """Every .py under tests/ (a skipped or rarely run test included) but the guard's own: the static half."""
    found = {}
    modules = sorted((ROOT / "tests").rglob("*.py"))
    assert len(modules) > 50 and all(ROOT / g in modules for g in GUARD_FILES)
    for path in modules:
        rel = path.relative_to(ROOT).as_posix()
        hits = [] if rel in GUARD_FILES else scan(path.read_text(), rel)
        if hits:
            found[rel] = hits
    assert found == {}
