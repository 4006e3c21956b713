"""Write each course notebook notebooks/NN_name.ipynb from its source notebooks/NN_name.py.

The sources are jupytext py:percent scripts (``# %% [markdown]``, ``# %% tags=["parameters"]``,
``# %%``): edit the .py, then run ``make notebooks``. Each .ipynb is rewritten with no outputs, stable
cell ids (c00, c01, ...) and the python3 kernelspec; of the cells' metadata only their tags are kept.

    python tools/sync_notebooks.py [--check] [NAME ...]

NAME (00, 00_setup or a path) limits it to those notebooks. --check writes nothing and exits 1 listing
the notebooks whose .ipynb differs from its source (cell types, sources and tags, read by jupytext).
"""

import argparse
import sys
from pathlib import Path

import nbformat

try:
    import jupytext
except ImportError:
    sys.exit("tools/sync_notebooks.py needs jupytext: pip install 'jupytext>=1.16'")

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SOURCE_FORMAT = "py:percent"


def sources(names: list[str] | None = None) -> list[Path]:
    """The NN_name.py sources in order; ``names`` keeps those whose NN, stem or file name is listed."""
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
    if not names:
        return found
    wanted = {Path(n).stem for n in names}
    unknown = wanted - {p.stem for p in found} - {p.name[:2] for p in found}
    if unknown:
        sys.exit(f"no notebook source for {', '.join(sorted(unknown))} in {NOTEBOOKS_DIR} "
                 f"(available: {', '.join(p.stem for p in found)})")
    return [p for p in found if {p.stem, p.name[:2]} & wanted]


def cells(nb) -> list[tuple[str, str, list[str]]]:
    """What a notebook's source decides, cell by cell: (type, source, tags)."""
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def read_source(path: Path):
    return jupytext.read(path, fmt=SOURCE_FORMAT)


def render(path: Path) -> str:
    """The .ipynb text for the source ``path``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source, tags) in enumerate(cells(read_source(path))):
        cell = getattr(nbformat.v4, f"new_{kind}_cell")(source)
        if tags:
            cell.metadata["tags"] = tags
        cell["id"] = f"c{i:02d}"  # stable ids keep diffs small
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def differs(path: Path) -> bool:
    """Whether the .ipynb of the source ``path`` is missing or has other cells than the source."""
    ipynb = path.with_suffix(".ipynb")
    return not ipynb.is_file() or cells(jupytext.read(ipynb)) != cells(read_source(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to write (NN, NN_name or a path); default: all")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook differs")
    args = parser.parse_args(argv)
    paths = sources(args.names)
    if args.check:
        stale = [f"{p.with_suffix('.ipynb').name}: differs from {p.name}" for p in paths if differs(p)]
        if not args.names:
            stale += [f"{p.name}: no source {p.stem}.py" for p in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
                      if not p.with_suffix(".py").is_file()]
        if stale:
            print(*stale, sep="\n")
            print("edit the notebook's .py and run `make notebooks`", file=sys.stderr)
        return 1 if stale else 0
    for path in paths:
        ipynb, text = path.with_suffix(".ipynb"), render(path)
        if ipynb.is_file() and ipynb.read_text(encoding="utf-8") == text:
            print(f"{ipynb.name}: up to date", file=sys.stderr)
            continue
        ipynb.write_text(text, encoding="utf-8")
        print(f"wrote {ipynb.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
