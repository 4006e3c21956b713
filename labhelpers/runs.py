"""Run folders that never overwrite, and the one metrics.json format every notebook writes."""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from labhelpers.errors import ConfigError, DataError, OverwriteError
from labhelpers.paths import runs_dir

METRICS_FILE = "metrics.json"
#: Keys write_metrics adds itself; a metric with one of these names would be silently lost.
RESERVED_KEYS = ("params", "notebook", "finished_at")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"run name {name!r} is not usable in a folder name: use letters, digits, '.', '_' or '-' "
            "(no slashes or spaces), e.g. 'lora-r8'"
        )


def new_run_dir(name: str, root: str | Path | None = None) -> Path:
    """Create and return ``<root or runs_dir()>/<YYYYmmdd-HHMMSS>-<name>``; never reuses a folder.

    Two runs started in the same second get ``-2``, ``-3``, ... appended.
    """
    _check_name(name)
    base = Path(root) if root is not None else runs_dir()
    base.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{name}"
    for n in range(1, 10_000):
        path = base / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()  # exist_ok=False: atomic, so parallel runs cannot share a folder
        except FileExistsError:
            continue
        return path
    raise OverwriteError(f"could not find a free run folder name for {base / stem} (tried 9999 suffixes)")


def prepare_output_dir(output_dir: str | Path | None, name: str) -> Path:
    """The folder a notebook writes into.

    Empty/None → a new run folder under runs_dir(). A relative path is taken under runs_dir() (so it
    does not depend on the notebook's working directory); an absolute path is used as is. An existing,
    non-empty folder is refused rather than overwritten.
    """
    if output_dir is not None and not isinstance(output_dir, (str, Path)):
        raise ConfigError(f"output_dir={output_dir!r} must be a folder path (text), or empty for a new folder "
                          "under runs/")
    if not output_dir:
        return new_run_dir(name)
    path = Path(output_dir).expanduser()
    if not path.is_absolute():
        path = runs_dir() / path
    if path.exists() and not path.is_dir():
        raise OverwriteError(f"output_dir {path} exists and is a file: pass a new output_dir (or leave it empty)")
    if path.is_dir() and any(path.iterdir()):
        raise OverwriteError(
            f"output_dir {path} already exists and is not empty; refusing to overwrite it. "
            "Pass a new output_dir, leave it empty for a fresh timestamped run folder, "
            "or delete that folder yourself."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clean_metric(key, value):
    """A JSON-ready scalar, or ConfigError naming the key."""
    if not isinstance(key, str):
        raise ConfigError(f"metric key {key!r} must be a string")
    if key in RESERVED_KEYS:
        raise ConfigError(f"metric key {key!r} is reserved by write_metrics ({', '.join(RESERVED_KEYS)}); rename it")
    # 0-d tensors / numpy scalars: take the Python value.
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(
                f"metric {key!r} is {value}: only finite numbers are stored (a NaN/inf loss usually means "
                "the learning rate is too high or the labels are all masked)"
            )
        return value
    raise ConfigError(
        f"metric {key!r} has type {type(value).__name__}: metrics must be flat numbers, strings or bools; "
        "flatten nested values into separate keys (e.g. 'eval_accuracy') or put settings in params="
    )


def write_metrics(
    output_dir: str | Path,
    metrics: dict,
    params: dict | None = None,
    notebook: str | None = None,
) -> Path:
    """Write ``<output_dir>/metrics.json``: flat metrics + "params" + "notebook" + "finished_at"."""
    if not isinstance(metrics, dict):
        raise ConfigError(f"metrics must be a dict of name -> number, got {type(metrics).__name__}")
    if params is not None and not isinstance(params, dict):
        raise ConfigError(f"params must be a dict of parameter name -> value, got {type(params).__name__}")
    record = {key: _clean_metric(key, value) for key, value in metrics.items()}
    record["params"] = dict(params or {})
    record["notebook"] = notebook
    record["finished_at"] = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    try:
        # default=str: params often hold Paths or dtypes; allow_nan=False keeps the file standard JSON.
        text = json.dumps(record, indent=2, default=str, allow_nan=False)
    except ValueError as err:
        raise ConfigError(f"params for {output_dir} contain a non-finite float (NaN/inf): {err}") from err
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / METRICS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)  # a crash mid-write never leaves half a metrics.json for collect_metrics
    return path


def read_metrics(path: str | Path) -> dict:
    """Read a metrics.json (or the one inside a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise DataError(f"{path} not found: did the notebook finish? Every notebook's last cell calls write_metrics")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); delete or fix the file") from err
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def collect_metrics(run_root: str | Path):
    """One row per metrics.json under ``run_root`` (params as ``params.<name>`` columns)."""

    root = Path(run_root)
    if not root.is_dir():
        raise DataError(f"run folder {root} does not exist (runs go to {runs_dir()}; LAB_RUNS_DIR moves them)")
    rows = []
    for path in sorted(root.rglob(METRICS_FILE)):
        data = read_metrics(path)
        params = data.pop("params", None) or {}
        row = {"notebook": data.pop("notebook", None), "run_dir": str(path.parent)}
        row.update(data)
        row.update({f"params.{k}": v for k, v in params.items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["notebook", "run_dir"])


def folder_mb(path: str | Path) -> float:
    """Size on disk of every file below ``path``, in MB (10^6 bytes)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6
