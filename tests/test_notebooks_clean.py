"""The committed notebooks are clean, parameterised and end by writing metrics."""

import json
import re

import pytest

from labhelpers.paths import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def _load(path):
    return json.loads(path.read_text())


def _source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_name_pattern(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), f"{path.name}: rename to NN_name.ipynb (lower case)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_committed(path):
    dirty = [
        i for i, cell in enumerate(_load(path)["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs/execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exactly_one_parameters_cell(path):
    tagged = [i for i, cell in enumerate(_load(path)["cells"]) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters' (cells {tagged}); papermill needs exactly one"
    cell = _load(path)["cells"][tagged[0]]
    assert cell["cell_type"] == "code" and "output_dir" in _source(cell), f"{path.name}: the parameters cell must define output_dir"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_starts_with_title(path):
    first = _load(path)["cells"][0]
    assert first["cell_type"] == "markdown" and _source(first).startswith("# "), (
        f"{path.name}: the first cell must be markdown starting with '# Title'"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_writes_metrics(path):
    code = "\n".join(_source(c) for c in _load(path)["cells"] if c["cell_type"] == "code")
    assert "write_metrics" in code, f"{path.name}: must end by calling labhelpers.runs.write_metrics"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill skips a parameter line it cannot parse (e.g. '=' inside a comment): -p would then be ignored."""
    import ast

    import papermill

    cell = next(c for c in _load(path)["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = {t.id for node in ast.parse(_source(cell)).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    inferred = set(papermill.inspect_notebook(str(path)))
    assert assigned == inferred, f"{path.name}: papermill cannot parse the lines for {sorted(assigned - inferred)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_matches_its_source(path):
    """notebooks/NN_x.ipynb is written by tools/notebooks/nb_NN_x.py: edit the source, then regenerate."""
    import importlib.util

    src = NOTEBOOKS_DIR.parent / "tools" / "notebooks" / f"nb_{path.stem}.py"
    assert src.is_file(), f"{path.name}: no source {src}"
    spec = importlib.util.spec_from_file_location(src.stem, src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import sys

    sys.path.insert(0, str(src.parents[1]))
    try:
        from nbtool import render_notebook
    finally:
        sys.path.pop(0)
    assert render_notebook(mod.CELLS) == path.read_text(encoding="utf-8"), (
        f"{path.name} differs from {src.name}: run `make notebooks` (edit the source, not the .ipynb)")
