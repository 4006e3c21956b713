"""The shape of ``labhelpers``: rooms whose imports point one way, no cycle, no private names across modules.

The import graph is read from the source with ``ast`` (imports inside functions included), so an import
hidden in a function cannot hide a cycle.
"""

import ast
from pathlib import Path

import pytest

from labhelpers.paths import REPO_ROOT

PKG = REPO_ROOT / "labhelpers"
#: A room may import its own modules and rooms of a lower rank, never a higher one.
RANK = {"shared": 0, "models": 1, "data": 2, "memory": 2, "evaluate": 3, "train": 4, "deploy": 4, "course": 5,
        "__main__": 6}
#: Optional or heavy packages a module may import inside a function (only where it is used), so that
#: importing labhelpers never needs them and a missing one fails with the helper's own message.
LAZY_OK = {"bitsandbytes", "onnxruntime_genai", "optuna", "ipywidgets", "IPython", "olive"}
#: Modules that may import anything inside functions, and why.
LAZY_MODULES = {"labhelpers.course.preflight": "it checks whether the course's packages import, so it must start "
                                              "on the standard library alone and report a broken one"}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def room(mod: str) -> str:
    parts = mod.split(".")
    if len(parts) == 1:
        return "shared"
    if parts[1] == "__main__":
        return "__main__"
    return parts[1] if (PKG / parts[1]).is_dir() else "shared"


def imports_of(mod: str) -> list[tuple[str, str, int, bool]]:
    """(imported labhelpers module, imported name or '', line, at top level) for each import in ``mod``."""
    tree = ast.parse(MODULES[mod].read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "labhelpers":
                    found.append((a.name, "", node.lineno, id(node) in top))
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{MODULES[mod]}:{node.lineno}: use an absolute import (from labhelpers....)"
            if not node.module or node.module.split(".")[0] != "labhelpers":
                continue
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in MODULES:
                    found.append((sub, "", node.lineno, id(node) in top))
                else:
                    found.append((node.module, a.name, node.lineno, id(node) in top))
    return found


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _, _ in imports_of(m) if t in MODULES and t != m} for m in MODULES}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for t in sorted(g[n]):
            if state.get(t) == "open":
                return stack[stack.index(t):] + [t]
            if t not in state and (c := visit(t)):
                return c
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_every_module_is_in_a_known_room():
    unknown = sorted({room(m) for m in MODULES} - set(RANK))
    assert not unknown, f"rooms {unknown} have no rank in RANK: add them (and to labhelpers/__init__.py's map)"


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_imports_point_down_the_rooms(mod):
    up = [f"{MODULES[mod].name}:{line} imports {target} ({room(target)})"
          for target, _, line, _ in imports_of(mod)
          if target in MODULES and RANK[room(target)] > RANK[room(mod)]]
    assert not up, f"{mod} ({room(mod)}) imports a higher room: " + "; ".join(up)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_no_private_names_across_modules(mod):
    private = [f"line {line}: {target}.{name}" for target, name, line, _ in imports_of(mod)
               if name.startswith("_") and target != mod]
    assert not private, f"{mod} imports private names of other modules: {private}; make them public or move them"


def test_lazy_modules_exist():
    assert set(LAZY_MODULES) <= set(MODULES), (
        f"LAZY_MODULES names modules that are gone: {set(LAZY_MODULES) - set(MODULES)}")


@pytest.mark.parametrize("mod", sorted(set(MODULES) - set(LAZY_MODULES)))
def test_imports_at_the_top(mod):
    tree = ast.parse(MODULES[mod].read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for node in tree.body:  # `try: import x` / `if TYPE_CHECKING:` at top level count as top
        if isinstance(node, (ast.Try, ast.If)):
            top |= {id(n) for n in ast.walk(node)}
    inner = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            inner += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] not in LAZY_OK]
    assert not inner, f"{MODULES[mod]}: move these imports to the top of the file: {inner}"
