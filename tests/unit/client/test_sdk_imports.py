"""The SDK and the server meet only over HTTP: neither imports the other, and the SDK needs
nothing beyond the standard library, httpx and rich."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ALLOWED = {"httpx", "rich", "ladder_client"}


def top_level_imports(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.partition(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_sdk_imports_only_the_standard_library_httpx_and_rich() -> None:
    strays = {
        path: sorted(names - ALLOWED - sys.stdlib_module_names)
        for path, names in top_level_imports(ROOT / "client").items()
        if names - ALLOWED - sys.stdlib_module_names
    }
    assert strays == {}


def test_the_server_never_imports_the_sdk() -> None:
    users = [
        path
        for package in ("api", "shared", "worker")
        for path, names in top_level_imports(ROOT / package).items()
        if "ladder_client" in names
    ]
    assert users == []
