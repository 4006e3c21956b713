"""Write a course notebook from a compact cell list (used by the notebook sources in tools/nb_*.py).

Cells are strings; a cell starting with "%% md" is markdown, "%% parameters" a code cell tagged
for papermill, anything else a code cell. The .ipynb in notebooks/ is what learners open; this
keeps their sources reviewable as plain Python.
"""

import sys
from pathlib import Path

import nbformat


def render_notebook(cells: list[str]) -> str:
    """The .ipynb text for ``cells`` (no outputs, stable cell ids)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for src in cells:
        src = src.strip("\n")
        if src.startswith("%% md"):
            nb.cells.append(nbformat.v4.new_markdown_cell(src[len("%% md"):].strip("\n")))
        elif src.startswith("%% parameters"):
            cell = nbformat.v4.new_code_cell(src[len("%% parameters"):].strip("\n"))
            cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
        else:
            nb.cells.append(nbformat.v4.new_code_cell(src))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:02d}"  # stable ids keep diffs small
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def write_notebook(path: str | Path, cells: list[str]) -> None:
    Path(path).write_text(render_notebook(cells), encoding="utf-8")
    print(f"wrote {path} ({len(cells)} cells)", file=sys.stderr)
