"""labhelpers.catalog lists the course notebooks with a title and an expected CPU time."""

import pytest

from labhelpers.catalog import NOTEBOOKS
from labhelpers.paths import NOTEBOOKS_DIR

FILES = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS))
def test_entries_are_complete(stem):
    entry = NOTEBOOKS[stem]
    assert isinstance(entry.get("title"), str) and entry["title"].strip(), f"{stem}: needs a non-empty 'title'"
    for key in ("cpu_minutes", "smollm2_minutes"):   # tiny Llama defaults; -p model_name smollm2-135m
        minutes = entry.get(key)
        assert isinstance(minutes, (int, float)) and not isinstance(minutes, bool) and minutes > 0, (
            f"{stem}: {key!r} must be a positive number, got {minutes!r}")


def test_every_notebook_file_is_catalogued():
    assert FILES, f"no notebooks in {NOTEBOOKS_DIR}"
    missing = [p.stem for p in FILES if p.stem not in NOTEBOOKS]
    assert not missing, f"add {missing} to labhelpers/catalog.py NOTEBOOKS (title, cpu_minutes)"


def test_setup_notebook_is_first_and_quick():
    assert min(NOTEBOOKS) == "00_setup"
    assert NOTEBOOKS["00_setup"]["cpu_minutes"] <= 1
