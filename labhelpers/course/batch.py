"""Run course notebooks over a parameter grid with papermill: N at a time, resumable, one results table.

    python -m labhelpers batch --grid configs/grid_methods.yaml [--jobs N] [--out DIR]
                               [--metric NAME] [--dry-run]

The grid file (YAML)::

    notebooks: [02_lora]            # stems or NN prefixes in notebooks/, or paths to .ipynb files
    parameters:                     # every combination is one run (cartesian product)
      method: [lora, qlora]
      lora_r: [4, 16]
    fixed: {max_steps: 60}          # passed to every run
    jobs: 2                         # runs at a time (--jobs overrides)
    out: runs/batch/methods         # relative to the grid file's folder; default <runs>/batch/<grid name>
    metric: finetuned_accuracy      # charted metric (--metric overrides); default the first numeric one
    timeout: 900                    # seconds per cell (default: no limit)

Each run has a stable id such as ``02_lora__method-lora__lora_r-4``; it executes into ``<out>/<id>.ipynb``
with ``output_dir=<out>/<id>``. Running the same grid again skips runs whose ``<out>/<id>/metrics.json``
exists, moves a partial folder left by an interrupted run aside to ``<id>.interrupted-<UTC time>`` (nothing
is deleted) and runs it again. Failed runs go to ``<out>/failures.csv``; every run's metrics go to
``<out>/results.csv`` and a chart ``<out>/results.png``. Exit status: 0 all ok, 1 a run failed, 2 bad grid.

From Python: ``run_grid("configs/grid_methods.yaml", jobs=2)`` returns the results as a DataFrame.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from labhelpers.checks import did_you_mean
from labhelpers.course.notebooks import execute, notebook_parameters
from labhelpers.course.runner import find_notebooks, kernel_executable, metrics_of
from labhelpers.errors import ConfigError, LabError
from labhelpers.paths import NOTEBOOKS_DIR
from labhelpers.runs import METRICS_FILE, runs_dir
from labhelpers.yamlfile import read_yaml

#: Top-level grid keys -> what each holds (used in the unknown-key message).
GRID_KEYS = {
    "notebooks": "list of notebook stems, NN prefixes or .ipynb paths",
    "parameters": "mapping of parameter name -> list of values",
    "fixed": "mapping of parameter name -> value for every run",
    "jobs": "runs at a time (integer >= 1)",
    "out": "output folder",
    "metric": "metric to chart",
    "timeout": "seconds per cell (integer >= 1)",
}
MANIFEST = "batch.json"
RESULTS_CSV, FAILURES_CSV, CHART = "results.csv", "failures.csv", "results.png"
FAILURE_FIELDS = ["id", "notebook", "params", "error_type", "error", "output_notebook"]
LOCK = "batch.lock"
STATUS_OK, STATUS_BEFORE, STATUS_FAILED = "ok", "done before", "failed"
KERNEL = "python3"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# PyYAML follows YAML 1.1, where 1e-3 (no dot) is a string; nobody means the text "1e-3" in a grid.
_SCI_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass(frozen=True)
class Run:
    """One notebook execution: ``params`` are its grid values, ``fixed`` the shared ones."""

    id: str
    notebook: Path
    params: dict
    fixed: dict = field(default_factory=dict)

    @property
    def parameters(self) -> dict:
        return {**self.fixed, **self.params}

    def output_dir(self, out: Path) -> Path:
        return Path(out) / self.id

    def output_notebook(self, out: Path) -> Path:
        return Path(out) / f"{self.id}.ipynb"

    def is_done(self, out: Path) -> bool:
        return (self.output_dir(out) / METRICS_FILE).is_file()


@dataclass
class Grid:
    """A validated grid (see the module docstring for the file format)."""

    source: str
    notebooks: list[Path]
    parameters: dict[str, list]
    fixed: dict
    out: Path
    jobs: int = 1
    metric: str | None = None
    timeout: int | None = None


# ---------------------------------------------------------------- reading and checking a grid

def _coerce(value):
    if isinstance(value, str) and _SCI_NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def _resolve_notebook(entry, source: str, base_dir: Path) -> Path:
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"{source}: notebooks holds {entry!r}; write a stem such as 02_lora, a prefix such as 02, "
                          "or a path to an .ipynb file")
    if entry.endswith(".ipynb") or "/" in entry or os.sep in entry:
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise ConfigError(f"{source}: notebooks: {entry} not found (looked for {path}); paths are relative "
                              "to the grid file's folder")
        return path.resolve()
    available = find_notebooks(NOTEBOOKS_DIR)
    matches = [p for p in available if entry in (p.stem, p.name[:2])]
    if len(matches) != 1:
        names = ", ".join(p.stem for p in available)
        raise ConfigError(f"{source}: notebooks: {entry!r} is not a notebook in {NOTEBOOKS_DIR} "
                          f"(available: {names}); use a stem, an NN prefix or a path to an .ipynb file")
    return matches[0]


def _positive_int(value, what: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{source}: {what}={value!r} must be an integer >= 1")
    return value


def grid_from_dict(values, source: str = "grid", base_dir: str | Path | None = None) -> Grid:
    """Validate a grid mapping (as ``yaml.safe_load`` returns it); relative paths are taken under ``base_dir``."""
    base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: a grid must be a mapping with notebooks: and parameters:, "
                          f"got {type(values).__name__}")
    for key in values:
        if key not in GRID_KEYS:
            raise ConfigError(f"{source}: unknown key {key!r}; {did_you_mean(key, GRID_KEYS)}")
    for key in ("notebooks", "parameters"):
        if key not in values:
            raise ConfigError(f"{source}: {key} is required ({GRID_KEYS[key]})")

    entries = values["notebooks"]
    entries = [entries] if isinstance(entries, str) else entries
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: notebooks is empty; list at least one, e.g. notebooks: [02_lora]")
    notebooks = [_resolve_notebook(e, source, base_dir) for e in entries]
    if len(set(notebooks)) != len(notebooks):
        raise ConfigError(f"{source}: notebooks lists the same notebook twice")

    parameters = values["parameters"]
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError(f"{source}: parameters must be a non-empty mapping of name -> list of values, "
                          "e.g. parameters: {lora_r: [4, 16]}")
    checked = {}
    for name, options in parameters.items():
        if not isinstance(options, list):
            raise ConfigError(f"{source}: parameters.{name} is {options!r}, not a list; write [{options!r}] "
                              "or move it to fixed:")
        if not options:
            raise ConfigError(f"{source}: parameters.{name} is an empty list; give it at least one value "
                              "or remove it")
        options = [_coerce(v) for v in options]
        keys = [json.dumps(v, sort_keys=True, default=str) for v in options]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"{source}: parameters.{name} lists a value twice: {options}")
        checked[name] = options

    fixed = values.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"{source}: fixed must be a mapping of name -> value, e.g. fixed: {{max_steps: 60}}")
    fixed = {k: _coerce(v) for k, v in fixed.items()}
    both = sorted(set(fixed) & set(checked), key=str)
    if both:
        raise ConfigError(f"{source}: {', '.join(map(str, both))} is in both fixed and parameters; "
                          "keep it in one of them (parameters to vary it, fixed to hold it)")
    for name in [*checked, *fixed]:
        where = "parameters" if name in checked else "fixed"
        if name == "output_dir":
            raise ConfigError(f"{source}: {where}.output_dir: the batch sets output_dir to <out>/<run id>; "
                              "remove it and use out: to choose the folder")
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{source}: {where}.{name}: parameter names must be Python identifiers")
    for nb in notebooks:
        known = notebook_parameters(nb)
        for name in [*checked, *fixed]:
            if name not in known:
                where = "parameters" if name in checked else "fixed"
                raise ConfigError(f"{source}: {where}.{name}: notebook {nb.name} has no parameter {name!r} "
                                  f"in its parameters cell; {did_you_mean(name, known, 'it defines')}")
        if "output_dir" not in known:
            raise ConfigError(f"{source}: notebook {nb.name} has no output_dir parameter, so its runs "
                              "cannot be kept apart; add output_dir = \"\" to its parameters cell")

    jobs = _positive_int(values.get("jobs", 1), "jobs", source)
    timeout = values.get("timeout")
    if timeout is not None:
        timeout = _positive_int(timeout, "timeout", source)
    metric = values.get("metric")
    if metric is not None and not isinstance(metric, str):
        raise ConfigError(f"{source}: metric={metric!r} must be a metric name such as finetuned_accuracy")
    if values.get("out") is None:
        # A stable default (not a timestamp), so running the same grid again resumes it.
        name = Path(source).stem if source.endswith((".yaml", ".yml")) else "grid"
        out = runs_dir() / "batch" / name
    elif isinstance(values["out"], str) and values["out"].strip():
        out = Path(values["out"]).expanduser()
        out = out if out.is_absolute() else base_dir / out
    else:
        raise ConfigError(f"{source}: out={values['out']!r} must be a folder path")
    grid = Grid(source, notebooks, checked, fixed, out.resolve(), jobs, metric, timeout)
    expand(grid)  # id clashes are a grid error too
    return grid


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid YAML file (``yaml.safe_load``)."""

    path = Path(path)
    return grid_from_dict(read_yaml(path, "grid"), source=str(path), base_dir=path.resolve().parent)


def _id_part(value) -> str:
    if isinstance(value, str):
        text = value or "empty"
    elif isinstance(value, (int, float, bool)) or value is None:
        text = repr(value)
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return _UNSAFE.sub("_", text).strip("_") or "x"


def expand(grid: Grid) -> list[Run]:
    """Every run of the grid, notebook by notebook, in the grid's order of values."""
    runs, seen = [], {}
    names = list(grid.parameters)
    for nb in grid.notebooks:
        for combo in itertools.product(*grid.parameters.values()):
            params = dict(zip(names, combo))
            run_id = "__".join([nb.stem, *(f"{k}-{_id_part(v)}" for k, v in params.items())])
            if run_id in seen:
                raise ConfigError(f"{grid.source}: runs {seen[run_id]} and {params} get the same id {run_id!r} "
                                  "once made folder-safe; make the values differ in letters or digits")
            seen[run_id] = params
            runs.append(Run(run_id, nb, params, dict(grid.fixed)))
    return runs


# ---------------------------------------------------------------- run folders and bookkeeping

def _canon(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _read_manifest(out: Path) -> dict:
    path = out / MANIFEST
    if not path.is_file():
        return {"runs": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg}); move it away to start the bookkeeping afresh") from None
    data.setdefault("runs", {})
    return data


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)  # a kill mid-write never leaves half a file


def _check_settings(grid: Grid, runs: list[Run], manifest: dict) -> None:
    """A run done with other settings (say fixed.max_steps changed) must not be skipped as if it matched."""
    for run in runs:
        before = manifest["runs"].get(run.id)
        if before and run.is_done(grid.out) and _canon(before.get("parameters")) != _canon(run.parameters):
            old, new = before.get("parameters") or {}, run.parameters
            diff = ", ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in sorted({*old, *new})
                             if _canon(old.get(k)) != _canon(new.get(k)))
            raise ConfigError(f"{grid.source}: {grid.out / run.id} was run with other settings ({diff}); "
                              "use another out: folder for the new settings, or move that run folder away")


def _state(run: Run, out: Path) -> str:
    if run.is_done(out):
        return "done"
    if run.output_dir(out).exists() or run.output_notebook(out).exists():
        return "partial"
    return "pending"


def _set_aside(run: Run, out: Path) -> list[Path]:
    """Rename what an unfinished run left to ``<id>.interrupted-<UTC time>``: never delete a user's files."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for n in itertools.count(1):
        stem = f"{run.id}.interrupted-{stamp}" + ("" if n == 1 else f"-{n}")
        if not (out / stem).exists() and not (out / f"{stem}.ipynb").exists():
            break
    moved = []
    for src, dst in ((run.output_dir(out), out / stem), (run.output_notebook(out), out / f"{stem}.ipynb")):
        if src.exists():
            src.rename(dst)
            moved.append(dst)
    return moved


# ---------------------------------------------------------------- executing

def _execute(run: Run, out: Path, timeout: int | None) -> dict:
    """Run one notebook; a failure is returned as data, never raised, so the batch goes on."""
    result = execute(run.notebook, run.output_notebook(out), {**run.parameters, "output_dir": str(run.output_dir(out))},
                     KERNEL, timeout)
    error_type, error = result.error_type, result.error
    if not error_type and not run.is_done(out):
        error_type, error = "NoMetrics", f"finished but wrote no {run.output_dir(out) / METRICS_FILE}"
    return {"status": STATUS_FAILED if error_type else STATUS_OK, "seconds": result.seconds,
            "error_type": error_type, "error": error}


def _numeric_metrics(df, skip) -> list[str]:
    return [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])
            and not pd.api.types.is_bool_dtype(df[c]) and df[c].notna().any()]


def results_table(grid: Grid, runs: list[Run], outcomes: dict) -> "pd.DataFrame":
    """One row per run: id, notebook, the grid parameters, the metrics, status, seconds."""

    rows = []
    for run in runs:
        row = {"id": run.id, "notebook": run.notebook.stem, **run.params}
        try:
            metrics = metrics_of(run.output_dir(grid.out))
        except LabError:  # a corrupt metrics.json: the row stays, without metrics
            metrics = {}
        for key, value in metrics.items():
            # A metric named like a grid column must not overwrite it.
            row[f"metric.{key}" if key in row or key in ("status", "seconds") else key] = value
        outcome = outcomes.get(run.id, {})
        row["status"], row["seconds"] = outcome.get("status", "pending"), outcome.get("seconds", math.nan)
        rows.append(row)
    columns = None if rows else ["id", "notebook", *grid.parameters, "status", "seconds"]
    return pd.DataFrame(rows, columns=columns)


def pick_metric(df, grid: Grid, metric: str | None = None) -> str | None:
    """``metric`` if given, else the grid's, else the first numeric metric column (None if there is none)."""
    metric = metric or grid.metric
    skip = {"id", "notebook", "status", "seconds", *grid.parameters}
    if metric:
        return metric if metric in df.columns else None
    numeric = _numeric_metrics(df, skip)
    return numeric[0] if numeric else None


def plot_results(df, grid: Grid, metric: str, path: Path) -> Path:
    """A horizontal bar per run, coloured by the first parameter that varies (or the notebook)."""

    varying = [p for p in grid.parameters if len(grid.parameters[p]) > 1]
    if len(grid.notebooks) > 1:
        varying = ["notebook", *varying]
    group = varying[0] if varying else None
    label_cols = (["notebook"] if len(grid.notebooks) > 1 else []) + list(grid.parameters)
    groups = list(dict.fromkeys(str(v) for v in df[group])) if group else [""]
    colors = {g: f"C{i % 10}" for i, g in enumerate(groups)}

    fig = Figure(figsize=(8, 1.2 + 0.35 * len(df)))
    ax = fig.subplots()
    y = list(range(len(df)))[::-1]  # first run on top
    labels = []
    for yi, (_, row) in zip(y, df.iterrows()):
        key = str(row[group]) if group else ""
        value = row[metric]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ax.barh(yi, value if ok else 0, color=colors[key])
        text = ", ".join(f"{c}={row[c]}" for c in label_cols) or row["id"]
        labels.append(text + ("" if ok else f"  ({row['status']})"))
    ax.set_yticks(y, labels)
    ax.set_xlabel(metric)
    ax.set_title(f"{metric} per run ({Path(grid.source).name})")
    if group:
        ax.legend(handles=[Patch(color=colors[g], label=f"{group}={g}") for g in groups], loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def markdown_table(df, columns: list[str]) -> str:
    """``df[columns]`` as a markdown table (NaN cells empty), for the summary a shell or notebook prints."""
    return df[columns].to_markdown(index=False, floatfmt=".4g", missingval="")


def _override(grid: Grid, jobs, out, base: Path) -> Grid:
    if jobs is not None:
        grid.jobs = _positive_int(jobs, "jobs", "--jobs")
    if out is not None:
        out = Path(out).expanduser()
        grid.out = (out if out.is_absolute() else base / out).resolve()
    return grid


def _as_grid(grid) -> Grid:
    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, dict):
        return grid_from_dict(grid)
    return load_grid(grid)


def plan(grid, jobs=None, out=None) -> "pd.DataFrame":
    """The runs and their state (done, partial, pending) without executing anything."""

    grid = _override(_as_grid(grid), jobs, out, Path.cwd())
    runs = expand(grid)
    if grid.out.is_dir():
        _check_settings(grid, runs, _read_manifest(grid.out))
    rows = [{"id": r.id, "notebook": r.notebook.stem, **r.params, "state": _state(r, grid.out)} for r in runs]
    return pd.DataFrame(rows)


def run_grid(grid, jobs: int | None = None, out: str | Path | None = None, metric: str | None = None,
             log=print) -> "pd.DataFrame":
    """Execute every pending run of ``grid`` (a path, a dict or a Grid); returns the results table.

    ``jobs`` and ``out`` override the grid's (a relative ``out`` is taken from the working directory).
    The table's ``attrs`` hold ``out``, ``results``, ``failures`` and ``chart`` (None without a metric).
    """
    log = log or (lambda message: None)
    grid = _override(_as_grid(grid), jobs, out, Path.cwd())
    runs = expand(grid)
    python = kernel_executable(KERNEL)
    if Path(python).resolve() != Path(sys.executable).resolve():
        log(f"warning: kernel {KERNEL!r} runs {python}, not this Python ({sys.executable})")
    out = grid.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        batch_lock = FileLock(out / LOCK, timeout=0)  # released by the OS if this process is killed
        batch_lock.acquire()
    except Timeout:
        raise ConfigError(f"{out / LOCK}: another batch is running in {out} (two would move each other's live "
                          "runs aside); wait for it to finish") from None
    try:
        manifest = _read_manifest(out)
        _check_settings(grid, runs, manifest)
        manifest["grid"] = {"source": grid.source, "notebooks": [str(p) for p in grid.notebooks],
                            "parameters": grid.parameters, "fixed": grid.fixed}
        lock = threading.Lock()
        failures_path = out / FAILURES_CSV
        with failures_path.open("w", newline="") as fh:  # this batch's failures; earlier ones are retried now
            csv.writer(fh).writerow(FAILURE_FIELDS)

        outcomes, todo = {}, []
        for run in runs:
            if run.is_done(out):
                seconds = manifest["runs"].get(run.id, {}).get("seconds", math.nan)
                outcomes[run.id] = {"status": STATUS_BEFORE, "seconds": seconds}
                continue
            if _state(run, out) == "partial":
                moved = _set_aside(run, out)
                log(f"{run.id}: unfinished earlier; kept as {', '.join(p.name for p in moved)}, running it again")
            todo.append(run)
        log(f"Batch {out}: {len(runs)} runs, {len(runs) - len(todo)} done before, {len(todo)} to run, "
            f"{grid.jobs} at a time")

        def one(i: int, run: Run) -> None:
            with lock:
                log(f"[{i}/{len(todo)}] {run.id} ...")
            result = _execute(run, out, grid.timeout)
            with lock:
                outcomes[run.id] = result
                manifest["runs"][run.id] = {"notebook": str(run.notebook), "parameters": run.parameters,
                                            "status": result["status"], "seconds": result["seconds"]}
                _write_json(out / MANIFEST, manifest)
                if result["status"] == STATUS_FAILED:
                    with failures_path.open("a", newline="") as fh:
                        csv.writer(fh).writerow([run.id, run.notebook.stem, _canon(run.params), result["error_type"],
                                                 result["error"], str(run.output_notebook(out))])
                tail = f": {result['error_type']}: {result['error']}" if result["error_type"] else ""
                log(f"    {run.id}: {result['status']} in {result['seconds']:.1f} s{tail}")

        _write_json(out / MANIFEST, manifest)
        pool = ThreadPoolExecutor(max_workers=grid.jobs)
        try:
            for future in [pool.submit(one, i, run) for i, run in enumerate(todo, 1)]:
                future.result()
        except BaseException:
            # Ctrl-C: start nothing new (a plain `with` would still run every queued notebook).
            log("stopping: queued runs cancelled")
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    finally:
        batch_lock.release()

    df = results_table(grid, runs, outcomes)
    results_path = out / RESULTS_CSV
    df.to_csv(results_path, index=False)
    chosen = pick_metric(df, grid, metric)
    chart = None
    if chosen and df[chosen].notna().any():
        chart = plot_results(df, grid, chosen, out / CHART)
    elif metric or grid.metric:
        log(f"warning: no run has a metric {metric or grid.metric!r}; no chart "
            f"(metrics: {', '.join(_numeric_metrics(df, {'id', 'notebook', 'status', 'seconds', *grid.parameters}))})")
    df.attrs.update(out=str(out), results=str(results_path), failures=str(failures_path),
                    chart=str(chart) if chart else None)
    log("")
    log(format_summary(df, grid, chosen if chart else None))
    return df


def format_summary(df, grid: Grid, metric: str | None) -> str:
    """The markdown summary: a table of runs, counts and where the files are."""
    columns = ["id", "status", "seconds"] + ([metric] if metric else [])
    counts = df["status"].value_counts()
    failed = int(counts.get(STATUS_FAILED, 0))
    lines = [f"## Batch {Path(grid.source).name}", "", markdown_table(df, columns), "",
             f"{len(df)} runs: {int(counts.get(STATUS_OK, 0))} ok, {int(counts.get(STATUS_BEFORE, 0))} done before, "
             f"{failed} failed.", "", f"- results: {grid.out / RESULTS_CSV}"]
    if metric:
        lines.append(f"- chart ({metric}): {grid.out / CHART}")
    if failed:
        lines.append(f"- failures: {grid.out / FAILURES_CSV} (open <out>/<id>.ipynb to see the failing cell)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labhelpers batch", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", required=True, help="the grid YAML file (see configs/grid_methods.yaml)")
    parser.add_argument("--jobs", type=int, help="runs at a time (overrides the grid's jobs:)")
    parser.add_argument("--out", help="output folder (overrides the grid's out:; relative to where you are)")
    parser.add_argument("--metric", help="metric to chart (default: the grid's metric:, else the first numeric one)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and which are done; execute nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry: 0 if every run succeeded, 1 if any failed, 2 on a bad grid or option."""
    args = build_parser().parse_args(argv)
    try:
        if args.dry_run:
            grid = _override(load_grid(args.grid), args.jobs, args.out, Path.cwd())
            table = plan(grid)
            columns = ["id", "state"]
            print(f"## Dry run {Path(grid.source).name}: {len(table)} runs into {grid.out}, {grid.jobs} at a time\n")
            print(markdown_table(table, columns))
            counts = table["state"].value_counts()
            print(f"\n{int(counts.get('done', 0))} done, {int(counts.get('pending', 0))} pending, "
                  f"{int(counts.get('partial', 0))} partial (would be moved aside and run again). Nothing was run.")
            return 0
        df = run_grid(args.grid, jobs=args.jobs, out=args.out, metric=args.metric,
                      log=lambda message: print(message, flush=True))
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume (unfinished runs are set aside, not lost)",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        # Exit now rather than wait for the running notebooks: their kernels stop when this process goes.
        os._exit(130)
    return 1 if (df["status"] == STATUS_FAILED).any() else 0


if __name__ == "__main__":
    sys.exit(main())
