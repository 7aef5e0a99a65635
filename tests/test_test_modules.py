"""Test modules stand alone: shared helpers live in tests/support/, tests/helpers.py or a conftest.py.

A test module imported as a library drags its tests' module-level setup into every importer, and a
change to one test's helper silently changes seven other files' tests."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):  # top-level and inside functions alike
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
    return names


def test_no_test_module_imports_another_test_module() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)} imports {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for module in _imported_modules(ast.parse(path.read_text(), str(path)))
        if module.startswith("tests.") and module.rsplit(".", 1)[-1].startswith("test_")
    ]
    assert not offenders, "move the shared helper into tests/support/: " + "; ".join(offenders)


def test_the_rule_sees_an_import_inside_a_function() -> None:
    tree = ast.parse("def f():\n    from tests.service.test_x import y\n")
    assert _imported_modules(tree) == ["tests.service.test_x"]
