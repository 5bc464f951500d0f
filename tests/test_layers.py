"""Imports among the engine's layers go one way: summary/calls/clock <- state <- observe <- engine.

Read from the source with :mod:`ast` (imports inside functions and under TYPE_CHECKING
count too), so a cycle cannot creep back in through a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "backhaul"
# package -> the packages of backhaul it must not import
FORBIDDEN = {
    "state": {"engine", "observe", "web", "cli"},
    "observe": {"engine", "web", "cli"},
    "engine": {"web", "cli"},
}
LEAVES = ("summary.py", "calls.py", "clock.py")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "backhaul" or m.startswith("backhaul.")}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package: str) -> None:
    bad = []
    for path in sorted((SRC / package).rglob("*.py")):
        for module in _imports(path):
            top = module.split(".")[1] if "." in module else ""
            if top in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(SRC)} imports {module}")
    assert bad == []


@pytest.mark.parametrize("leaf", LEAVES)
def test_the_shared_values_import_nothing_of_backhaul(leaf: str) -> None:
    assert _imports(SRC / leaf) == set()


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from backhaul.engine.runner import run_sync\n")
    assert _imports(sample) == {"backhaul.engine.runner"}
