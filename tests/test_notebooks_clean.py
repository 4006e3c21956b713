"""The committed notebooks are clean, parameterised and end by writing metrics."""

import json
import re

import pytest

from labhelpers.paths import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
SOURCES = sorted(NOTEBOOKS_DIR.glob("*.py"))   # notebooks/NN_x.py, jupytext py:percent: what NN_x.ipynb is written from


def _load(path):
    return json.loads(path.read_text())


def _source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _cells(nb):
    """What a notebook's source decides, cell by cell: (type, source, tags)."""
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


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
    tagged = [i for i, cell in enumerate(_load(path)["cells"])
              if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, (
        f"{path.name}: {len(tagged)} cells tagged 'parameters' (cells {tagged}); papermill needs exactly one")
    cell = _load(path)["cells"][tagged[0]]
    assert cell["cell_type"] == "code" and "output_dir" in _source(cell), (
        f"{path.name}: the parameters cell must define output_dir")


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
    """notebooks/NN_x.ipynb is written from notebooks/NN_x.py (tools/sync_notebooks.py): edit the source, then
    regenerate."""
    import jupytext

    src = path.with_suffix(".py")
    assert src.is_file(), f"{path.name}: no source {src.name}"
    expected, actual = _cells(jupytext.read(src, fmt="py:percent")), _cells(jupytext.read(path))
    fix = f"edit {src.name} (not the .ipynb) and run `make notebooks`"
    for i, (want, got) in enumerate(zip(expected, actual)):
        assert got == want, f"{path.name}: cell {i} ({got[0]}, tags {got[2]}) differs from {src.name}: {fix}"
    assert len(actual) == len(expected), f"{path.name} has {len(actual)} cells, {src.name} {len(expected)}: {fix}"


def test_every_notebook_has_a_source_and_every_source_a_notebook():
    notebooks, sources = {p.stem for p in NOTEBOOKS}, {p.stem for p in SOURCES}
    assert not notebooks - sources, (
        f"no notebooks/NN_x.py source for {sorted(notebooks - sources)}: write it (py:percent)")
    assert not sources - notebooks, f"no .ipynb for the sources {sorted(sources - notebooks)}: run `make notebooks`"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_source_is_py_percent(src):
    import jupytext
    from jupytext.formats import guess_format

    text = src.read_text(encoding="utf-8")
    assert guess_format(text, ".py")[0] == "percent", (
        f"{src.name}: not a jupytext py:percent script (cells start with '# %%')")
    nb = jupytext.reads(text, fmt="py:percent")
    tagged = [i for i, (_, _, tags) in enumerate(_cells(nb)) if "parameters" in tags]
    assert tagged, f'{src.name}: no cell marked `# %% tags=["parameters"]` (papermill needs one)'


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_the_line_length(path):
    """ruff cannot hold a notebook source to its line length (a markdown table row cannot wrap), so the code
    cells are held here to the same 120 characters as the rest of the code."""
    long = [f"cell {i} line {j + 1} ({len(line)} chars)"
            for i, cell in enumerate(_load(path)["cells"]) if cell["cell_type"] == "code"
            for j, line in enumerate(_source(cell).splitlines()) if len(line) > 120]
    assert not long, f"{path.stem}.py: code lines over 120 characters: {long}; wrap them, then `make notebooks`"
