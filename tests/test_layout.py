"""The test suite stays navigable: helpers come from tests/support, never from a test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
MODULES = sorted(p for p in TESTS.rglob("*.py") if p.name != "conftest.py")


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(TESTS)))
def test_no_module_imports_conftest_or_another_test(path: Path) -> None:
    wrong = sorted(
        name
        for name in _imported(path)
        if name.startswith("tests.")
        and (name == "tests.conftest" or name.split(".")[1].startswith("test_"))
    )
    assert wrong == [], f"{path.name} imports {wrong}: shared helpers belong in tests/support"


PACKAGE = TESTS.parent / "src" / "routing_points"
# Dependencies point down: what decides never imports what answers.
BELOW_THE_SERVER = ("limits", "store", "client", "watch")


@pytest.mark.parametrize("package", BELOW_THE_SERVER)
def test_lower_layers_never_import_the_server(package: str) -> None:
    wrong = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for name in _imported(path)
        if name.startswith(("routing_points.server", "routing_points.console", "starlette"))
    }
    assert wrong == set(), f"{package}/ imports the server: {sorted(wrong)}"
