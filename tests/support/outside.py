"""The repository boundary of a test session: a test that reaches a path outside the clone fails, naming it.

A clone must pass `make test` with nothing beside it, so tests may not read ../shared (or any sibling of
the checkout). An audit hook (PEP 578) sees every open(), os.open(), directory listing, chdir,
sqlite3.connect and subprocess argument of the test process and allows only: the clone, the Python
installation, this session's temporary folders (pytest's, tempfile's, Playwright's, the tests' `carespace-*`),
the home folder's dot-folders (settings and caches) and the system's folders (/usr, /etc, /dev, ...).
Everything else, and above all the clone's siblings, raises OutsideRepository and is recorded, so a
test that swallows the exception still fails at teardown, and an import-time reach fails the session.
"""
from __future__ import annotations

import ast
import os
import site
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/dev", "/proc", "/sys", "/run")
TEMP_NAMES = ("pytest-of-", "tmp", "carespace-", "playwright")  # playwright-artifacts-*: the browser's downloads
WATCHED = frozenset({"open", "os.listdir", "os.scandir", "os.chdir", "sqlite3.connect", "subprocess.Popen"})

violations: list[str] = []


class OutsideRepository(RuntimeError):
    """A test reached a path outside the repository (not an OSError, so `except OSError` cannot hide it)."""


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Boundary:
    """Which paths a test may touch, for a clone at `root` (pure: tests of the guard call allows())."""

    def __init__(self, root: Path, temp: str, home: str, python: Iterable[str]) -> None:
        self.roots = {str(root), os.path.abspath(root)}
        self.parent = os.path.dirname(str(root))
        self.temp, self.home = os.path.abspath(temp), os.path.abspath(home)
        self.python = sorted({os.path.abspath(p) for p in python if p})

    def _session_dir(self, path: str, base: str, names: tuple[str, ...]) -> bool:
        """`path` lies in a folder `base/<name...>` that is not the clone's own ancestor."""
        if not path.startswith(base.rstrip(os.sep) + os.sep):
            return False
        first = path[len(base.rstrip(os.sep)) + 1:].split(os.sep, 1)[0]
        top = os.path.join(base, first)
        return first.startswith(names) and not any(_under(r, top) for r in self.roots)

    def allows(self, path: str) -> bool:
        p = os.path.abspath(path)
        if any(_under(p, r) for r in self.roots) or any(_under(p, r) for r in self.python):
            return True
        if self._session_dir(p, self.temp, TEMP_NAMES) or self._session_dir(p, self.home, (".",)):
            return True
        if self.parent != os.sep and _under(p, self.parent):
            return False  # beside the clone: ../shared and friends
        return any(_under(p, r) for r in SYSTEM)


def _python_dirs() -> list[str]:
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages()]
    return dirs + [v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib")]


def _paths(event: str, args: tuple[Any, ...]) -> Iterator[str]:
    """The file-system paths an audited event touches (relative ones are resolved by Boundary)."""
    if event == "subprocess.Popen":
        executable, argv, cwd = args[0], args[1], args[2]
        base = os.fsdecode(cwd) if cwd is not None else os.getcwd()
        if cwd is not None:
            yield base
        items = [argv] if isinstance(argv, str | bytes | os.PathLike) else list(argv or [])
        for item in [executable, *items]:
            if not isinstance(item, str | bytes | os.PathLike):
                continue
            text = os.fsdecode(item).split("=", 1)[-1] if os.fsdecode(item).startswith("--") else os.fsdecode(item)
            if text.startswith(("/", "./", "../")) or text == "..":
                yield os.path.join(base, text)
        return
    target = args[0] if args else None
    if isinstance(target, int) or target is None:
        return  # a file descriptor, or the current folder
    text = os.fsdecode(target)
    if event == "sqlite3.connect":
        if text in ("", ":memory:") or text.startswith("file::memory:"):
            return
        text = text.removeprefix("file:").split("?", 1)[0]
    yield text


BOUNDARY = Boundary(ROOT, tempfile.gettempdir(), str(Path.home()), _python_dirs())
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in WATCHED:
        return
    for path in _paths(event, args):
        if not BOUNDARY.allows(path):
            message = f"{event} {os.path.abspath(path)}"
            violations.append(message)
            raise OutsideRepository(f"tests must stay inside the repository {ROOT}: {message}")


def install() -> None:
    """Add the audit hook once for this process (hooks cannot be removed)."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


@pytest.fixture(autouse=True)
def repository_boundary() -> Iterator[None]:
    """Fail the test that reached outside, even where it caught the exception."""
    start = len(violations)
    yield
    reached = violations[start:]
    if reached:
        del violations[start:]
        pytest.fail("this test reached outside the repository: " + "; ".join(reached), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Reaches outside any test (imports, collection, session fixtures) fail the session."""
    if violations:
        sys.stderr.write("\nreached outside the repository:\n" + "\n".join(f"  {v}" for v in violations) + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---- the static half: test code that names a path outside the repository, whether or not it runs ----

GUARD_FILES = ("tests/support/outside.py", "tests/unit/test_repository_boundary.py")  # name outside paths to test


def _parent_steps(node: Any) -> tuple[Any, int] | None:
    """(base, n) when `node` is base.parent...parent / base.parents[k] with .resolve() between."""
    steps = 0
    while True:
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            steps, node = steps + 1, node.value
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents"
              and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)):
            steps, node = steps + node.slice.value + 1, node.value.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("resolve", "absolute") and not node.args):
            node = node.func.value
        else:
            return (node, steps) if steps else None


def _is_file_path(node: Any) -> bool:
    """Path(__file__) (or pathlib.Path(__file__))."""
    return (isinstance(node, ast.Call) and len(node.args) == 1 and isinstance(node.args[0], ast.Name)
            and node.args[0].id == "__file__" and (getattr(node.func, "id", None) == "Path"
                                                   or getattr(node.func, "attr", None) == "Path"))


def _dirname_depth(node: Any) -> int:
    """How many os.path.dirname() calls wrap __file__ (0 when it is not such a nest)."""
    depth = 0
    while isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "dirname" and node.args:
        depth, node = depth + 1, node.args[0]
    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("abspath", "realpath") and node.args:
        node = node.args[0]
    return depth if isinstance(node, ast.Name) and node.id == "__file__" else 0


def scan(source: str, path_in_repo: str) -> list[str]:
    """The places in a test module's source that reach outside the repository (line: what)."""
    levels = len(Path(path_in_repo).parts)  # tests/e2e/x.py: 3; its parents[2] is the clone itself
    found: list[str] = []
    tree = ast.parse(source)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)  # prose may name ../shared; code may not
                  if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        what = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if "../" in node.value or node.value == ".." or "/shared/" in node.value or node.value.startswith("/work/"):
                what = f"path string {node.value!r}"
        elif isinstance(node, ast.Attribute) and node.attr == "parent" and getattr(node.value, "id", "") in (
                "ROOT", "REPO", "REPOSITORY"):
            what = f"{node.value.id}.parent"  # type: ignore[attr-defined]
        elif isinstance(node, ast.Attribute | ast.Subscript) and (chain := _parent_steps(node)):
            base, steps = chain
            if _is_file_path(base) and steps > levels:
                what = f"Path(__file__) up {steps} folders, above the repository"
        elif isinstance(node, ast.Call) and _dirname_depth(node) > levels:
            what = f"__file__'s dirname {_dirname_depth(node)} times, above the repository"
        if what and f"{line}: {what}" not in found:
            found.append(f"{line}: {what}")
    return sorted(found, key=lambda f: int(f.split(":")[0]))
