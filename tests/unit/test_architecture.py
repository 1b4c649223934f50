"""The layering holds: fhir_server depends on nothing of ours, others use only its public module, no cycles.

Imports are read from the source (ast), at module level and inside functions alike; imports under
`if TYPE_CHECKING:` are for annotations only and do not count.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("fhir_server", "smart_auth", "portal_ui", "bundles", "carespace")
# Packages whose internal imports are checked for cycles.
ACYCLIC = OURS


def modules(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.stmt]:
    """Import statements that run (not those under `if TYPE_CHECKING:`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each runtime import of a module."""
    is_pkg = path.name == "__init__.py"
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
            continue
        assert isinstance(node, ast.ImportFrom)
        if node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if node.module:  # `from . import x` imports x, not the package being imported around it
            yield target, node.lineno
        for alias in node.names:  # `from pkg import submodule`
            yield f"{target}.{alias.name}", node.lineno


@pytest.mark.parametrize("package", [p for p in OURS if p != "fhir_server"])
def test_other_packages_import_only_the_public_fhir_server_module(package: str) -> None:
    bad = [f"{path.relative_to(ROOT)}:{line} imports {target}"
           for module, path in modules(package).items() for target, line in imports(module, path)
           if target.startswith("fhir_server.") and target.rsplit(".", 1)[0] != "fhir_server"]
    assert not bad, "import from `fhir_server` itself (its __all__), not its internals:\n" + "\n".join(bad)


def test_fhir_server_depends_on_nothing_of_ours() -> None:
    bad = [f"{path.relative_to(ROOT)}:{line} imports {target}"
           for module, path in modules("fhir_server").items() for target, line in imports(module, path)
           if target.split(".")[0] in OURS and target.split(".")[0] != "fhir_server"]
    assert not bad, "\n".join(bad)


def test_the_public_fhir_server_module_exports_what_it_imports() -> None:
    import fhir_server
    assert sorted(fhir_server.__all__) == sorted(n for n in vars(fhir_server) if not n.startswith("_")
                                                 and n not in ("annotations",) and not isinstance(
                                                     getattr(fhir_server, n), type(fhir_server)))
    assert all(hasattr(fhir_server, n) for n in fhir_server.__all__)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("package", ACYCLIC)
def test_no_import_cycles(package: str) -> None:
    mods = modules(package)
    graph = {m: {t for t, _ in imports(m, p) if t in mods and t != m} for m, p in mods.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_settings_are_read_only_in_carespace_config() -> None:
    """Every CARESPACE_* setting is read in one place, so README's table has one source to match."""
    bad = [f"{path.relative_to(ROOT)}:{n}" for package in OURS for path in sorted((ROOT / package).rglob("*.py"))
           if path.relative_to(ROOT).as_posix() != "carespace/config.py"
           for n, line in enumerate(path.read_text().splitlines(), 1) if "os.environ" in line or "getenv(" in line]
    assert not bad, "read settings in carespace/config.py:\n" + "\n".join(bad)


def test_the_repository_owns_the_sql_on_fhir_data() -> None:
    """Outside storage/ only the search executor runs statements (the planner's), on the unit's session."""
    allowed = {"fhir_server/search/executor.py", "fhir_server/service.py"}  # service: UnitOfWork(repo.s, repo)
    bad = [f"{path.relative_to(ROOT)}:{n}" for package in OURS for path in sorted((ROOT / package).rglob("*.py"))
           if not path.relative_to(ROOT).as_posix().startswith("fhir_server/storage/")
           and path.relative_to(ROOT).as_posix() not in allowed
           for n, line in enumerate(path.read_text().splitlines(), 1) if "repo.s." in line or "repo.s)" in line]
    assert not bad, "add a named query to fhir_server/storage/repository.py:\n" + "\n".join(bad)
