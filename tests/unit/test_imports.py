"""The house's import rules, read off the source: api/ never imports worker/, shared/ imports
neither, and no module imports itself through others, late imports included.

ruff's banned imports (api/ruff.toml, shared/ruff.toml, worker/ruff.toml) stop a bad import as
it is written; this test reads the whole graph, so it also sees a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "shared", "worker", "scripts")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules a file imports anywhere in it (a late import counts too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from worker import leases` imports the module worker.leases, not worker itself.
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            module = name
            while module and module not in known:
                module = module.rpartition(".")[0]
            if module:
                found.add(module)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others() -> None:
    assert circles(graph()) == []


def test_api_and_shared_never_import_the_worker() -> None:
    arrows = [
        (source, target)
        for source, targets in graph().items()
        for target in targets
        if (source.startswith(("api", "shared")) and target.startswith("worker"))
        or (source.startswith(("shared", "worker")) and target.startswith("api"))
    ]
    assert arrows == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_tests_share_code_only_through_their_support_modules() -> None:
    """No test module imports another, or a conftest: what tests share lives in tests/support.py
    (and tests/processes.py for real processes). Nothing in tests/ imports bench/."""
    tests = list((ROOT / "tests").rglob("*.py"))
    known = {module_name(p): p for p in [*tests, *(ROOT / "bench").rglob("*.py")]}
    arrows = sorted(
        (module_name(path), target)
        for path in tests
        for target in imports(path, known)
        if target.rpartition(".")[2].startswith(("test_", "conftest"))
        or target.partition(".")[0] == "bench"
    )
    assert arrows == []
