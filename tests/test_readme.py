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


def test_every_notebook_is_listed_with_its_time():
    for path in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        assert f"`{path.name}`" in README, f"README's notebook table lacks {path.name}"
        assert path.stem in NOTEBOOKS, f"labhelpers/catalog.py lacks {path.stem}"


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_makefile_installs_torch_before_the_package():
    make = (REPO_ROOT / "Makefile").read_text()
    torch_at = make.index("$(TORCH_SPEC)")
    assert torch_at < make.index("pip install -e"), "torch must be installed first (an unpinned one is a CUDA build)"
    assert "TORCH_SPEC ?= torch==2.13.0" in make
