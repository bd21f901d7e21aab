"""The house rules of the package layout, read from the code's own imports.

``routes/`` (HTTP) -> ``core/`` (domain and ports) <- ``stores/`` (adapters); only the
app factory and the CLI know both sides; no module imports itself back through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fleet_artifacts"
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth of its code (function-level imports too)."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> set[str]:
    """The modules ``source``, a module of ``package``, imports (names imported from one included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # ``from fleet_artifacts.core import errors`` imports the submodule.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {
    name: {other for other in imports_of(path) if other in MODULES and other != name}
    for name, path in MODULES.items()
}


def _starts(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_layers_are_there() -> None:
    for layer in ("core", "stores", "routes"):
        assert any(name.startswith(f"fleet_artifacts.{layer}.") for name in MODULES), layer


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _starts(n, "fleet_artifacts.core")))
def test_core_knows_no_http_no_azure_and_no_adapter(name: str) -> None:
    bad = {
        imported
        for imported in imports_of(MODULES[name])
        if _starts(imported, "litestar", "azure", "uvicorn", "multipart", "httpx", "sqlite3")
        or (_starts(imported, "fleet_artifacts") and not _starts(imported, "fleet_artifacts.core"))
    }
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _starts(n, "fleet_artifacts.stores")))
def test_stores_know_no_http(name: str) -> None:
    bad = {
        imported
        for imported in imports_of(MODULES[name])
        if _starts(imported, "litestar", "uvicorn", "multipart")
        or _starts(imported, "fleet_artifacts.routes", "fleet_artifacts.app", "fleet_artifacts.cli")
    }
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _starts(n, "fleet_artifacts.routes")))
def test_routes_know_no_adapter_no_azure_and_no_settings(name: str) -> None:
    bad = {
        imported
        for imported in imports_of(MODULES[name])
        if _starts(imported, "azure", "fleet_artifacts.stores", "fleet_artifacts.settings")
        or _starts(imported, "fleet_artifacts.app", "fleet_artifacts.cli")
    }
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _starts(n, "fleet_artifacts.client")))
def test_the_client_shares_only_wire_shapes_with_the_service(name: str) -> None:
    """A worker installs the client to talk HTTP: it needs the wire structs, never the service's insides."""
    bad = {
        imported
        for imported in imports_of(MODULES[name])
        if _starts(imported, "litestar", "uvicorn", "multipart", "azure.cosmos", "azure.identity")
        or (
            _starts(imported, "fleet_artifacts")
            and imported not in ("fleet_artifacts", "fleet_artifacts.__version__")  # the version string
            and not _starts(
                imported,
                "fleet_artifacts.client",
                "fleet_artifacts.core.models",
                "fleet_artifacts.core.journal",
            )
        )
    }
    assert not bad, f"{name} imports {sorted(bad)}"


def test_no_import_cycles() -> None:
    # Tarjan would name every cycle; a depth-first search that reports the first is enough here.
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for other in sorted(GRAPH[name]):
            if state.get(other) == 1:
                cycle = [*path[path.index(other) :], other]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_readable_in_one_sitting(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines: it is doing two jobs"


def test_the_walk_sees_nested_and_relative_imports() -> None:
    """So that the rules above can fail: an import inside a function, or a relative one, counts."""
    source = "def f():\n    from litestar import get\n    from . import sibling\n    import azure.cosmos\n"
    assert imports_in(source, "fleet_artifacts.core") == {
        "litestar",
        "litestar.get",
        "fleet_artifacts.core",
        "fleet_artifacts.core.sibling",
        "azure.cosmos",
    }
    assert "fleet_artifacts.core.kernel" in GRAPH["fleet_artifacts.core.artifacts"]
