"""Run the course's notebooks in order into one new run folder and print a summary.

    python -m labhelpers course [--notebooks 00 02] [--out DIR] [-p name value ...]
                                [--kernel python3] [--timeout 900]

Each notebook ``NN_name.ipynb`` is executed with papermill into ``<run>/NN_name.ipynb`` and gets
``output_dir=<run>/NN_name``, where it writes its artefacts and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from labhelpers.course.notebooks import execute
from labhelpers.errors import ConfigError, LabError
from labhelpers.memory.hardware import busy_processes, busy_warning
from labhelpers.paths import NOTEBOOKS_DIR
from labhelpers.runs import METRICS_FILE, new_run_dir, prepare_output_dir, read_metrics, runs_dir

NOTEBOOK_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
#: Bookkeeping keys in metrics.json that are not metrics.
NON_METRIC_KEYS = ("params", "notebook", "finished_at")


def find_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR, selected: list[str] | None = None) -> list[Path]:
    """``NN_*.ipynb`` in ``notebooks_dir`` in order; ``selected`` keeps those whose NN or stem is listed."""
    found = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if NOTEBOOK_RE.match(p.name))
    if not found:
        raise ConfigError(f"no NN_name.ipynb notebooks found in {notebooks_dir}")
    if not selected:
        return found
    keys = {p: {p.name[:2], p.stem} for p in found}
    unknown = [s for s in selected if not any(s in k for k in keys.values())]
    if unknown:
        available = ", ".join(p.stem for p in found)
        raise ConfigError(f"--notebooks {' '.join(unknown)}: no such notebook in {notebooks_dir} "
                          f"(available: {available})")
    return [p for p in found if keys[p] & set(selected)]


def parse_value(text: str):
    """A -p value as papermill's own CLI reads it: bool, None, int, float, else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def kernel_executable(kernel_name: str) -> str:
    """The interpreter the named Jupyter kernel will run (ConfigError if there is no such kernel).

    jupyter_client replaces a kernelspec argv of plain ``python``/``python3`` with ``sys.executable``, so
    the venv's own ``python3`` spec runs this interpreter; a user-level spec with an absolute path wins
    over it and would run another Python, which is what this lets the caller detect.
    """

    manager = KernelSpecManager()
    try:
        spec = manager.get_kernel_spec(kernel_name)
    except NoSuchKernel:
        available = ", ".join(sorted(manager.find_kernel_specs())) or "none"
        raise ConfigError(
            f"--kernel {kernel_name}: no such Jupyter kernel (available: {available}). "
            "Use --kernel python3 with ipykernel installed in this environment"
        ) from None
    exe = spec.argv[0]
    if exe in {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}:
        return sys.executable
    return shutil.which(exe) or exe


def metrics_of(run_output: Path) -> dict:
    """The flat metrics a notebook wrote (without params/bookkeeping), {} if none."""
    path = run_output / METRICS_FILE
    if not path.is_file():
        return {}
    return {k: v for k, v in read_metrics(path).items() if k not in NON_METRIC_KEYS}


def run_notebooks(
    notebooks: list[Path],
    run_dir: Path,
    parameters: dict | None = None,
    kernel: str = "python3",
    timeout: int = 900,
    log=None,
) -> list[dict]:
    """Execute each notebook into ``run_dir``; keeps going after a failure. One result dict each."""

    log = log or (lambda message: print(message, flush=True))

    results = []
    for i, nb in enumerate(notebooks, 1):
        out_dir = run_dir / nb.stem
        log(f"[{i}/{len(notebooks)}] {nb.name} ...")
        result = execute(nb, run_dir / nb.name, {"output_dir": str(out_dir), **(parameters or {})}, kernel, timeout)
        status, error, seconds = ("ok" if result.ok else "failed"), result.one_line(), result.seconds
        try:
            metrics = metrics_of(out_dir)
        except LabError as err:  # a corrupt metrics.json fails this notebook, not the whole course
            metrics, status, error = {}, "failed", str(err).splitlines()[0]
        if status == "ok" and not (out_dir / METRICS_FILE).is_file():
            status, error = "failed", (f"finished but wrote no {out_dir / METRICS_FILE} "
                                       "(its last cell must call write_metrics)")
        log(f"    {status} in {seconds:.1f} s" + (f": {error}" if error else ""))
        results.append({"notebook": nb.stem, "status": status, "seconds": seconds, "error": error, **metrics})
    return results


def _key_metrics(result: dict) -> str:
    """Numbers, bools and short strings as ``k=v``; long strings (paths) stay in summary.csv only."""
    fixed = ("notebook", "status", "seconds", "error")
    parts = []
    for key, value in result.items():
        if key in fixed or (isinstance(value, str) and len(value) > 24):
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(parts) or "-"


def summary_table(results: list[dict]):
    """A DataFrame with one row per notebook: notebook, status, seconds, error, then every metric."""

    return pd.DataFrame(results, columns=None if results else ["notebook", "status", "seconds", "error"])


def format_summary(results: list[dict]) -> str:
    """The printed table: notebook, status, seconds, minutes and each notebook's key metrics, then the total."""
    width = max([len("notebook")] + [len(r["notebook"]) for r in results])
    lines = [f"{'notebook':<{width}}  {'status':<6}  {'seconds':>7}  {'minutes':>7}  metrics"]
    for r in results:
        lines.append(f"{r['notebook']:<{width}}  {r['status']:<6}  {r['seconds']:>7.1f}  {r['seconds'] / 60:>7.1f}  "
                     f"{_key_metrics(r)}")
    total = sum(r["seconds"] for r in results)
    lines.append(f"{'total':<{width}}  {'':<6}  {total:>7.1f}  {total / 60:>7.1f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labhelpers course", description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="+", metavar="NN", help="run only these (e.g. 00 02); default: all")
    parser.add_argument("--out", help="run folder (must not exist or be empty); default: a new runs/<time>-course")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="notebook parameter for every notebook, e.g. -p model_name HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell before it is stopped (default: 900)")
    parser.add_argument("--notebooks-dir", type=Path, default=NOTEBOOKS_DIR, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry: 0 if every notebook succeeded, 1 if any failed, 2 on a usage error."""
    args = build_parser().parse_args(argv)
    try:
        parameters = {}
        for name, value in args.parameter:
            if name == "output_dir":
                raise ConfigError("-p output_dir: the course sets output_dir per notebook; "
                                  "use --out for the run folder")
            parameters[name] = parse_value(value)
        notebooks = find_notebooks(args.notebooks_dir, args.notebooks)
        python = kernel_executable(args.kernel)
        # --out is a command-line path, so relative means relative to where the command was typed.
        run_dir = prepare_output_dir(Path(args.out).resolve(), "course") if args.out else new_run_dir("course")
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if Path(python).resolve() != Path(sys.executable).resolve():
        print(f"warning: kernel {args.kernel!r} runs {python}, not this Python ({sys.executable})", file=sys.stderr)
    busy = busy_warning(busy_processes())
    if busy:  # said before a long run, not discovered from its times afterwards
        print(f"warning: {busy}", file=sys.stderr)
    print(f"Run folder: {run_dir}  (kernel {args.kernel}: {python}; runs root {runs_dir()})")
    results = run_notebooks(notebooks, run_dir, parameters, args.kernel, args.timeout)
    summary_path = run_dir / "summary.csv"
    summary_table(results).to_csv(summary_path, index=False)
    print()
    print(format_summary(results))
    failed = [r["notebook"] for r in results if r["status"] != "ok"]
    print(f"\nSummary: {summary_path}")
    if failed:
        print(f"{len(failed)} of {len(results)} notebooks failed: {', '.join(failed)} "
              f"(open {run_dir}/<name>.ipynb to see the failing cell)")
        return 1
    print(f"All {len(results)} notebooks succeeded.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
