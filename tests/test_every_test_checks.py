"""A guard: every test function asserts something, expects an exception, or calls a helper that asserts.

Read from the source with ``ast``: a test whose body holds no ``assert``, no ``pytest.raises``/``warns`` and
no call to a function (defined anywhere under ``tests/``) that does, would stay green whatever the code does.
"""

import ast
from pathlib import Path

TESTS = Path(__file__).parent
EXPECT = {"raises", "warns", "deprecated_call"}


def _called_names(node) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            names.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


def _checks_directly(node) -> bool:
    return any(isinstance(sub, ast.Assert) for sub in ast.walk(node)) or bool(_called_names(node) & EXPECT)


def _functions(root: Path):
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node


def checking_helpers(funcs) -> set[str]:
    """Names of the functions that assert (directly, or through another such function)."""
    helpers = {n.name for _, n in funcs if not n.name.startswith("test_") and _checks_directly(n)}
    while True:
        more = {n.name for _, n in funcs if not n.name.startswith("test_") and n.name not in helpers
                and _called_names(n) & helpers}
        if not more:
            return helpers
        helpers |= more


def unchecked_tests(root: Path = TESTS) -> list[str]:
    funcs = list(_functions(root))
    helpers = checking_helpers(funcs)
    return [f"{p.relative_to(root)}::{n.name}" for p, n in funcs
            if n.name.startswith("test_") and not _checks_directly(n) and not (_called_names(n) & helpers)]


def test_every_test_function_checks_something():
    assert unchecked_tests() == []


def test_the_guard_finds_a_test_that_checks_nothing(tmp_path):
    (tmp_path / "test_fake.py").write_text("def helper():\n    assert True\n\n"
                                           "def test_uses_helper():\n    helper()\n\n"
                                           "def test_expects():\n    import pytest\n"
                                           "    with pytest.raises(ValueError):\n        int('x')\n\n"
                                           "def test_nothing():\n    x = 1 + 1\n")
    assert unchecked_tests(tmp_path) == ["test_fake.py::test_nothing"]
