"""labhelpers.catalog lists the course notebooks with a title, a default model and an expected CPU time."""

import re

import pytest

from labhelpers.catalog import NOTEBOOKS, SMOLLM2, TINY
from labhelpers.paths import NOTEBOOKS_DIR

FILES = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS))
def test_entries_are_complete(stem):
    entry = NOTEBOOKS[stem]
    assert isinstance(entry.get("title"), str) and entry["title"].strip(), f"{stem}: needs a non-empty 'title'"
    for key in ("tiny_minutes", "smollm2_minutes"):   # -p model_name tiny; -p model_name smollm2-135m
        minutes = entry.get(key)
        assert isinstance(minutes, (int, float)) and not isinstance(minutes, bool) and minutes > 0, (
            f"{stem}: {key!r} must be a positive number, got {minutes!r}")


def test_every_notebook_file_is_catalogued():
    assert FILES, f"no notebooks in {NOTEBOOKS_DIR}"
    missing = [p.stem for p in FILES if p.stem not in NOTEBOOKS]
    assert not missing, f"add {missing} to labhelpers/catalog.py NOTEBOOKS (title, default_model, minutes)"


def test_setup_notebook_is_first_and_quick():
    assert min(NOTEBOOKS) == "00_setup"
    assert NOTEBOOKS["00_setup"]["tiny_minutes"] <= 1


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS))
def test_default_model_is_the_parameters_cell_default(stem):
    # The catalog (README, 00's table) and the notebook must say the same: the notebook's own default wins.
    source = (NOTEBOOKS_DIR / f"{stem}.py").read_text(encoding="utf-8")
    found = re.search(r'^model_name = "([^"]*)"', source, re.M)
    assert found, f"{stem}.py has no model_name parameter"
    assert NOTEBOOKS[stem]["default_model"] == (found.group(1) or TINY), (stem, found.group(1))
    assert NOTEBOOKS[stem]["default_model"] in (TINY, SMOLLM2)
