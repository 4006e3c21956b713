"""The README keeps its promises: two set-up commands, every notebook listed, CI runs the test command."""

import re

from labhelpers.catalog import NOTEBOOKS
from labhelpers.paths import NOTEBOOKS_DIR, REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_quick_start_has_exactly_the_two_commands():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make course", "make test"]


def _minutes(value) -> str:
    return "< 1" if value < 1 else f"≈ {value:g}"


MODEL_NAMES = {"tiny": "tiny Llama", "smollm2-135m": "SmolLM2"}


def test_every_notebook_is_listed_with_its_model_and_time():
    # The table's last three cells: the default model, then the catalog's measured minutes on tiny Llama and SmolLM2.
    for path in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        assert path.stem in NOTEBOOKS, f"labhelpers/catalog.py lacks {path.stem}"
        row = next((line for line in README.splitlines() if line.startswith(f"| `{path.name}`")), None)
        assert row, f"README's notebook table lacks {path.name}"
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        entry = NOTEBOOKS[path.stem]
        expected = [MODEL_NAMES[entry["default_model"]], _minutes(entry["tiny_minutes"]),
                    _minutes(entry["smollm2_minutes"])]
        assert cells[-3:] == expected, (path.name, cells[-3:], expected)


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_makefile_installs_torch_before_the_package():
    make = (REPO_ROOT / "Makefile").read_text()
    torch_at = make.index("$(TORCH_SPEC)")
    assert torch_at < make.index("pip install -e"), "torch must be installed first (an unpinned one is a CUDA build)"
    assert "TORCH_SPEC ?= torch==2.13.0" in make


def test_make_test_runs_every_notebook_once_under_nbval():
    make = (REPO_ROOT / "Makefile").read_text()
    groups = [re.search(rf"^NBVAL_{job} := (.+)$", make, re.M).group(1).split() for job in "AB"]
    stems = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(groups[0] + groups[1]) == stems, groups
    assert not set(groups[0]) & set(groups[1])
    for job in "AB":   # each job's list reaches pytest, and its exit status is checked
        assert f"$(patsubst %,notebooks/%.ipynb,$(NBVAL_{job}))" in make and f"nbval-{job}.rc" in make
