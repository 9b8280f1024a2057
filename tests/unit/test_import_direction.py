"""Imports run downward (docs/architecture.md): protocols -> streams (asgi/) -> app; a protocol or
stream module never imports middleware. Read from the source with ast, so a lazy import inside a
function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "roadrunner"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", ["protocols", "asgi"])
def test_protocols_and_streams_never_import_middleware(layer: str) -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in imported_modules(path)
                                               if m.startswith("roadrunner.middleware"))
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}
