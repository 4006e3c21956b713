"""Every notebook parameter, tried with the edge values a new user types, passes the notebook's own checks or
stops there with a LabError that names it: never a raw traceback, and never a value the checks let through
that the notebook cannot use.

Each case runs the notebook's parameters cell, the override, then the check cell that follows it (in this
process: the check cells only validate). A value the checks accept must be listed in LEGAL as one the
notebook runs with (the smallest step counts, an empty output_dir, ...); any other accepted value fails
the test, since it would break later, inside the lesson.
"""

from __future__ import annotations

import ast
import contextlib
import io

import pytest

from labhelpers.errors import LabError
from labhelpers.paths import NOTEBOOKS_DIR

STEMS = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
WRONG_TYPE = "lots"

#: Values the checks may accept because the notebook runs with them (a run that short reports instead of
#: asserting: labhelpers/train/workshop.py). Keys: parameter name (any notebook) or "stem:name".
LEGAL = {
    "model_name": {""},           # the tiny Llama
    "world_model": {""},
    "output_dir": {"", "no-such-choice"},   # empty: a new folder under runs/; any other text is a folder to make
    "seed": {0, 1},
    "threads": {0, 1},            # 0: as many as torch uses
    "lora_alpha": {1, 2.5},       # any positive scale
    "lora_dropout": {0},
    "max_accuracy_gap": {0, 1},   # bars and allowed drops are fractions in [0, 1]
    "min_accuracy": {0, 1},
    "max_int4_drop": {0, 1},
    "min_margin": {0, 1},
}
#: Positive whole numbers are legal for these from 1 (or the low bound the notebook states).
COUNTS = ("steps", "n_", "batch", "rows", "trials", "lora_r", "lora_alpha", "grad_accum", "patience",
          "parity_tokens", "speed_batches", "max_seq_len")


def _cells(stem: str) -> list[tuple[str, str]]:
    """(header, source) for each ``# %%`` cell of the notebook's percent script."""
    cells, header, lines = [], None, []
    for line in (NOTEBOOKS_DIR / f"{stem}.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            if header is not None:
                cells.append((header, "\n".join(lines)))
            header, lines = line, []
        else:
            lines.append(line)
    cells.append((header, "\n".join(lines)))
    return cells


def _parameters_and_check(stem: str) -> tuple[str, str]:
    cells = _cells(stem)
    at = next(i for i, (h, _) in enumerate(cells) if 'tags=["parameters"]' in h)
    check = next(src for h, src in cells[at + 1:] if "[markdown]" not in h)
    return cells[at][1], check


def _defaults(params_src: str) -> dict:
    namespace: dict = {}
    exec(params_src, namespace)  # noqa: S102 - the project's own notebook source
    names = [t.id for node in ast.parse(params_src).body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)]
    return {n: namespace[n] for n in names}


def _edge_values(default) -> list:
    if isinstance(default, bool):
        return ["yes", None]
    if isinstance(default, int):
        return [0, -1, 1, 2.5, WRONG_TYPE, ""]
    if isinstance(default, float):
        return [0, -1.0, WRONG_TYPE, ""]
    if default == "auto":
        return [0, -1, 1, WRONG_TYPE, ""]
    if isinstance(default, str):
        return ["", "no-such-choice", 5]
    if isinstance(default, list):
        return [[], WRONG_TYPE, ["no-such-choice"]]
    return [WRONG_TYPE]


def _legal(stem: str, name: str, value) -> bool:
    for key in (name, f"{stem}:{name}"):
        if value in LEGAL.get(key, ()) and type(value) is not bool:
            return True
    return isinstance(value, int) and not isinstance(value, bool) and value == 1 and any(c in name for c in COUNTS)


CASES = [(stem, name, value) for stem in STEMS
         for name, default in _defaults(_parameters_and_check(stem)[0]).items()
         for value in _edge_values(default) if value != default or type(value) is not type(default)]


@pytest.mark.parametrize("stem", STEMS)
def test_every_notebook_has_a_check_cell_after_its_parameters(stem):
    params, check = _parameters_and_check(stem)
    assert _defaults(params), f"{stem}: no parameters"
    assert "Error" in check or "check_" in check or "resolve_model" in check, f"{stem}: the cell after the " \
        "parameters checks nothing"


def test_the_sweep_covers_every_notebook():
    assert {c[0] for c in CASES} == set(STEMS) and len(CASES) > 200


def _run_check(stem: str, name: str, value):
    # The check cells may make their run folder (00 does): LAB_RUNS_DIR is a temporary folder here.
    params, check = _parameters_and_check(stem)
    namespace: dict = {}
    exec(params, namespace)  # noqa: S102
    namespace[name] = value
    with contextlib.redirect_stdout(io.StringIO()):
        exec(check, namespace)  # noqa: S102


@pytest.mark.parametrize("stem, name, value", CASES, ids=[f"{s}-{n}={v!r}" for s, n, v in CASES])
def test_an_edge_value_passes_the_checks_or_is_named(stem, name, value, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    try:
        _run_check(stem, name, value)
    except LabError as err:
        assert name in str(err), f"{stem}: {name}={value!r} stopped with a message that does not name it: {err}"
        return
    except Exception as err:  # noqa: BLE001 - the point: anything else is a raw traceback for the learner
        pytest.fail(f"{stem}: {name}={value!r} raised {type(err).__name__}: {err} (not a LabError naming it)")
    assert _legal(stem, name, value), (f"{stem}: {name}={value!r} passed the checks; the notebook cannot run with "
                                       "it: check it in the cell after the parameters (or list it in LEGAL)")
