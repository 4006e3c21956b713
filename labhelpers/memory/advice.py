"""What this machine can do with each real preset: the memory calculator plus the measured stand-in table.

``advice(machine, table)``: for each preset and method (lora, qlora, full) whether it fits (the memory
calculator, ``labhelpers.memory.fitcheck``) and roughly how long notebook 02 would take, from the stand-in
timings measured by ``bench/scale.py`` (``bench/results/scale_*.csv``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from labhelpers.constants import TRAIN_METHODS
from labhelpers.errors import ConfigError
from labhelpers.memory import fitcheck
from labhelpers.memory.hardware import hardware_report
from labhelpers.models.shapes import PRESET_CONFIGS, shape_of
from labhelpers.paths import REPO_ROOT

#: Notebook 02's defaults: 300 optimizer steps of batch 8, rows cut at 64 tokens (the bench's sequence length).
NB02_STEPS, NB02_BATCH, NB02_SEQ_LEN = 300, 8, 64
#: Batch sizes tried, largest first, when notebook 02's batch 8 does not fit.
BATCH_CHOICES = (8, 4, 2, 1)
#: Beyond this many cores the time estimate stops scaling (memory bandwidth, not cores, limits then).
MAX_SCALED_CORES = 16


def results_dir() -> Path:
    return REPO_ROOT / "bench" / "results"


def load_table(table=None) -> list[dict]:
    """The measured training rows of a ``bench/scale.py`` results CSV.

    ``table``: a path, a list of row dicts, or None for the course's CPU table (``bench/results/scale_cpu-*.csv``,
    the one with the most cores if there are several). Returns ``[]`` when no table exists.
    """
    if isinstance(table, list):
        rows = table
    else:
        if table is None:
            found = sorted(results_dir().glob("scale_cpu-*core.csv"),
                           key=lambda p: int(p.stem.split("-")[-1].replace("core", "") or 0))
            if not found:
                return []
            table = found[-1]
        path = Path(table)
        if not path.is_file():
            raise ConfigError(f"table={str(path)!r} does not exist; run `python bench/scale.py` to make one "
                              "(or pass None for the course's recorded table)")
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    return [r for r in rows if r.get("kind", "train") == "train" and r.get("status") == "measured"]


def _machine_view(machine: dict | None) -> dict:
    """Device, cores, memory for training (GiB), bf16 and the training precision of a machine description.

    ``machine`` uses hardware.hardware_report()'s keys: device ("cpu"/"cuda"/"mps"), cpu_count,
    total_memory_gib / available_memory_gib (RAM), gpu_memory_total_gib / gpu_memory_free_gib, bf16_supported.
    Missing available figures fall back to the totals. None reads this machine.
    """
    if machine is None:
        machine = hardware_report()
    if not isinstance(machine, dict):
        raise ConfigError(f"machine={machine!r} must be a dict like hardware.hardware_report() returns, e.g. "
                          "{'device': 'cpu', 'cpu_count': 4, 'total_memory_gib': 8, 'bf16_supported': False}")
    device = machine.get("device", "cpu")
    if device not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"machine['device']={device!r} must be 'cpu', 'cuda' or 'mps'")
    cores = machine.get("cpu_count") or 1
    bf16 = bool(machine.get("bf16_supported", False))
    if device == "cuda":
        gib = machine.get("gpu_memory_free_gib") or machine.get("gpu_memory_total_gib")
        where = "GPU memory"
        precision = "bf16" if bf16 else "fp16"
    else:
        gib = machine.get("available_memory_gib") or machine.get("total_memory_gib")
        where = "RAM"
        precision = "bf16" if (bf16 and device == "cpu") else "fp32"
    if isinstance(gib, bool) or not isinstance(gib, (int, float)) or gib <= 0:
        key = "gpu_memory_total_gib" if device == "cuda" else "total_memory_gib"
        raise ConfigError(f"the machine description needs its memory in GiB ({key}); got {machine!r}")
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ConfigError(f"machine['cpu_count']={cores!r} must be a positive integer")
    return {"device": device, "cores": cores, "memory_gib": float(gib), "where": where, "bf16": bf16,
            "precision": precision}


def _fitting_batch(shape: dict, method: str, precision: str, budget_gib: float) -> tuple[int | None, float]:
    """The largest notebook-02 batch (8, 4, 2, 1) the calculator says fits; (None, prediction at 1) if none."""
    predicted = None
    for b in BATCH_CHOICES:
        predicted = fitcheck.predict_gib(shape, {"method": method, "precision": precision, "batch_size": b,
                                                 "seq_len": NB02_SEQ_LEN, "lora_r": 8, "lora_dropout": 0.05,
                                                 "gradient_checkpointing": False})
        if predicted <= budget_gib:
            return b, predicted
    return None, predicted


def nb02_minutes(sec_per_step: float, measured_seq_len: int, measured_cores: int, cores: int,
                 batch: int = NB02_BATCH, steps: int = NB02_STEPS) -> float:
    """Notebook 02's training time from a batch-1 measurement: steps x batch x (64 / measured seq len) x the
    measured seconds per step (time grows with the tokens per step; an upper bound, since bigger batches use
    the cores better and batches are padded only to their longest row, <= 64), x measured cores / this
    machine's cores (matmuls scale with cores; no gain assumed beyond MAX_SCALED_CORES)."""
    tokens = batch * NB02_SEQ_LEN / measured_seq_len
    return steps * sec_per_step * tokens * measured_cores / min(cores, MAX_SCALED_CORES) / 60


def advice(machine: dict | None = None, table=None):
    """What this machine can do with each real preset: for lora, qlora and full fine-tuning, whether it fits
    (the memory calculator, as labhelpers.memory.fitcheck prices it, in 80 % of the memory), at which notebook-02 batch
    size, roughly how long notebook 02's default run (300 steps x batch 8) takes, and what to pass to run it.

    ``machine``: a description as hardware.hardware_report() returns (None: this machine); see _machine_view.
    ``table``: the measured stand-in table (bench/scale.py's CSV; None: the course's recorded one).
    Times come only from that table, measured on a CPU, and are scaled by cores (see nb02_minutes); on a GPU
    they are not estimated (no GPU measurement exists). Returns a pandas DataFrame, one row per preset x method;
    ``df.attrs["note"]`` says where the figures come from.
    """
    m = _machine_view(machine)
    budget = fitcheck.HEADROOM * m["memory_gib"]
    measured = {(r["preset"], r["method"]): r for r in load_table(table)}
    rows = []
    for preset in PRESET_CONFIGS:
        shape = shape_of(preset)
        for method in TRAIN_METHODS:
            batch, predicted = _fitting_batch(shape, method, m["precision"], budget)
            fits = "no" if batch is None else ("yes" if batch == NB02_BATCH else f"at batch {batch}")
            # predicted_gib: at the batch that fits, or at batch 1 when none does.
            row = {"model": preset, "method": method, "fits": fits, "batch_size": batch,
                   "predicted_gib": round(predicted, 2), "budget_gib": round(budget, 2),
                   "s_per_step_measured": None, "nb02_minutes": None, "time_basis": "", "to_run_it": ""}
            r = measured.get((preset, method))
            if m["device"] != "cpu":
                row["time_basis"] = f"not measured on a {m['device'].upper()} GPU (bench/scale_gpu.sh measures it)"
            elif r is None:
                row["time_basis"] = "not in the measured table (skipped there: see bench/results)"
            else:
                sps, seq, cores_m = float(r["sec_per_step"]), int(r["seq_len"]), int(r["cores"])
                row["s_per_step_measured"] = round(sps, 2)
                if batch is not None:
                    row["nb02_minutes"] = round(nb02_minutes(sps, seq, cores_m, m["cores"], batch), 1)
                row["time_basis"] = (f"{sps:.2f} s/step at 1 x {seq} tokens on {cores_m} cores x {NB02_STEPS} steps x "
                                     f"batch {batch or NB02_BATCH} x "
                                     f"{cores_m}/{min(m['cores'], MAX_SCALED_CORES)} cores"
                                     + ("; fp32 timing (bf16 not measured)" if m["precision"] == "bf16" else ""))
            if method == "full":
                row["to_run_it"] = "notebook 02 trains adapters only (lora/qlora); full: notebook 01, tiny model"
            elif batch is None:
                alt = "-p method qlora" if method == "lora" and _fitting_batch(shape, "qlora", m["precision"],
                                                                              budget)[0] else "more memory"
                row["to_run_it"] = f"does not fit even at batch 1: {alt}"
            else:
                args = f"-p model_name {preset} -p method {method}"
                if batch != NB02_BATCH:
                    args += f" -p batch_size {batch}"
                minutes = row["nb02_minutes"]
                if minutes is not None and minutes > 60:
                    args += f"; for a first try -p max_steps 60 (~{minutes / 5:.0f} min)"
                row["to_run_it"] = args
            rows.append(row)
    df = pd.DataFrame(rows)
    df["batch_size"] = df["batch_size"].astype("Int64")  # None stays <NA>, not NaN
    df.attrs["machine"] = m
    df.attrs["note"] = (
        f"Fits: the memory calculator (labhelpers.memory.fitcheck: estimate x {fitcheck.OVERHEAD}) at notebook 02's "
        f"settings ({m['precision']}, batch 8 -> 1, <= {NB02_SEQ_LEN} tokens) in 80 % of {m['memory_gib']:.1f} GiB "
        f"{m['where']}. Times: seconds per step measured with random-weight stand-ins of each model on the course's "
        f"{_table_cores(measured)}-core CPU machine (bench/results), scaled to {m['cores']} cores and to notebook "
        f"02's 300 steps x batch {NB02_BATCH}; rough, and pessimistic where that machine was busy (see the load "
        "averages in bench/results).")
    return df


def _table_cores(measured: dict) -> str:
    cores = sorted({r["cores"] for r in measured.values()})
    return "/".join(str(c) for c in cores) if cores else "?"
