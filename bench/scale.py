"""What the real presets cost on this machine, measured with random-weight stand-ins of their shapes.

For each preset's architecture (labhelpers.models.shapes.build_stand_in: same tensors as the real model, random
weights, no download) that fits this machine:

- **training**: seconds per step and peak memory of LoRA, QLoRA and full fine-tuning at batch 1 x 64
  tokens (notebook 02 tokenizes with ``max_length=64``; LoRA r 8, dropout 0.05, all linear layers, AdamW,
  fp32: notebook 02's settings). Each measurement is a fresh Python process that runs
  ``labhelpers.memory.measure.measure_training`` (what ``measure_training_subprocess`` runs) on the saved
  stand-in, and also reads ``/proc/self/status`` before loading and samples the checkpoint's mapped
  pages (see "peak memory" below). A method the memory calculator predicts would not fit in 80 % of the
  available RAM (``labhelpers.memory.fitcheck``) is skipped, with the reason in the table.
- **decoding**: the ONNX Runtime GenAI int4 export's size and greedy tokens/s (batch 1, 32 new tokens)
  against PyTorch eager fp32, for the shapes where building is quick (``labhelpers.deploy.export.build_genai``;
  the stand-in borrows the embedded model's tokenizer, since random weights have none of their own).

What "peak memory" means here
-----------------------------
``peak_rss_mb`` = the highest RSS during training (kernel high-water mark, exact) minus the RSS of the
same process after importing torch/transformers/peft/bitsandbytes and before loading: all that loading
and training added, as ``top`` shows it. fp32 safetensors are memory-mapped lazily, so for LoRA and full
fine-tuning the weights enter RSS as the first step reads them (``measure_training``'s own
``peak_growth_mb``, measured from the RSS *after* loading, then counts them again on top of
``weights_mb``; at real sizes that doubles the weights, which is why this script reads RSS before loading).

QLoRA on CPU: quantizing reads every weight of the fp32 checkpoint, and those file pages stay mapped (and
counted in RSS) while the model lives, although the model no longer reads them: clean file-backed pages,
which the kernel drops when memory runs short. ``ckpt_residue_mb`` is that part, measured as the
checkpoint mapping's resident pages (``/proc/self/smaps``) minus the bytes of the tensors still served
from it (embeddings, norms). ``peak_mb`` = ``peak_rss_mb`` - ``ckpt_residue_mb`` is the figure the
calculator is compared with (for LoRA and full the residue is 0: every mapped page is a live weight).

Timings and load
----------------
On a machine shared with other jobs the timings are noisy: the 135M LoRA measurement (this script's worker,
2 threads) repeated seven times within 20 minutes at load average 2.6-5 gave 2.6, 2.8, 3.3, 5.2, 5.6, 6.2 and
7.0 s/step. Read them as upper bounds with a factor ~2-3 of noise, next to their load average.
Timings are medians of the timed steps after one warm-up step, with torch's default threads (one per
core). The measuring processes run with ``OMP_WAIT_POLICY=PASSIVE``: on a shared machine, OpenMP threads
that spin while waiting lost a factor ~4 here (a 64 x 576 x 1536 matmul: 3.5-4.3 GFLOP/s spinning vs 15.8
passive with 2 threads at load average ~5.5), so timings would measure the spinning, not the model. Every
row records the 1-minute load average before and after, and ``cpu_share`` = CPU seconds / (wall seconds x
threads) of the training steps (warm-up included): 1 = every thread busy all the time; serial parts and
other programs lower it (read it with the load average).

    .venv/bin/python bench/scale.py            # the full bench (budgeted for <= 15 min on idle 2 cores)
    .venv/bin/python bench/scale.py --resume   # go on after an interruption (finished items are kept)
    .venv/bin/python bench/scale.py --smoke    # the pipeline on a 2-layer shape, seq 32, 1 step, no ONNX,
                                               # in this process on 1 thread (tests/test_scale_bench.py)
    .venv/bin/python bench/scale.py --device cuda   # see bench/scale_gpu.sh

Writes ``bench/results/scale_<machine>.csv`` and ``.md`` (machine = device and core count, e.g.
``cpu-2core``); stand-ins are cached under ``build/stand-ins/`` (git-ignored). The measuring processes
are ``bench/scale_workers.py`` (this file plans, runs them, and writes the tables).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import scale_workers as workers  # bench/scale_workers.py: Python puts this script's folder on sys.path
import torch
from scale_workers import BATCH, LORA_DROPOUT, LORA_R, NEW_TOKENS, load1, measure_here

from labhelpers.constants import TRAIN_METHODS
from labhelpers.memory import estimate, fitcheck, hardware
from labhelpers.memory.measure import MB, MMAP_THRESHOLD, fix_malloc_thresholds
from labhelpers.models import shapes

REPO = Path(__file__).resolve().parents[1]

RESULTS_DIR = REPO / "bench" / "results"
CACHE_DIR = REPO / "build" / "stand-ins"
WORKERS_PY = Path(workers.__file__).resolve()
#: Notebook 02's tokenizer call cuts rows at max_length=64 (batch, LoRA r and dropout: bench/scale_workers.py).
SEQ_LEN = 64
METHODS = TRAIN_METHODS
#: The budgeted plan (<= 15 min on idle 2 cores): what each shape measures, and why the rest is left out.
#: Memory skips are decided at run time by the calculator; these are the time-budget choices.
PLAN = {
    "smollm2-135m": {"methods": METHODS, "onnx": True, "steps": 3},
    "qwen2.5-0.5b": {"methods": METHODS, "onnx": True, "steps": 3},
    "llama-3.2-1b": {"methods": ("lora", "qlora"), "onnx": False, "steps": 2,
                     "why": {"onnx": "time budget: the 1.2B shape's int4 build and decoding would add ~3 min "
                                     "(2.5x the 0.5B shape's) to a bench budgeted at 15 min on idle 2 cores"}},
    "phi-3.5-mini": {"methods": (), "onnx": False, "steps": 2,
                     "why": {"*": "time budget: building and saving the 15.3 GB fp32 stand-in alone takes "
                                  "minutes, and QLoRA would quantize all of it on 2 cores",
                             "onnx": "time budget: the 15.3 GB fp32 stand-in takes minutes to build, and more "
                                     "to export"}},
}
SMOKE = {"preset": "smollm2-135m", "overrides": {"num_hidden_layers": 2}, "seq_len": 32, "steps": 1,
         "warmup": 0, "methods": METHODS}

TRAIN_COLUMNS = ["kind", "preset", "method", "status", "reason", "device", "cores", "threads", "batch", "seq_len",
                 "steps", "sec_per_step", "cpu_share", "peak_mb", "peak_rss_mb", "ckpt_residue_mb",
                 "load_peak_rss_mb", "weights_mb", "trainable_params", "estimate_mb", "fitcheck_mb", "error_pct",
                 "fitcheck_error_pct", "load_s", "wall_s", "load_avg_before", "load_avg_after"]
DECODE_COLUMNS = ["new_tokens", "safetensors_mb", "int4_mb", "build_s", "pt_tok_s", "ort_int4_tok_s", "ort_vs_pt",
                  "cpu_s"]
COLUMNS = TRAIN_COLUMNS + DECODE_COLUMNS


def machine_name(report: dict) -> str:
    """``cpu-2core``, ``cuda-16core``, ...: the results' file name part."""
    return f"{report['device']}-{report['cpu_count']}core"


# --- shapes and the calculator -----------------------------------------------------------------------------

def settings(method: str, seq_len: int, precision: str = "fp32", batch: int = BATCH) -> dict:
    return {"method": method, "precision": precision, "batch_size": batch, "seq_len": seq_len, "lora_r": LORA_R,
            "lora_dropout": LORA_DROPOUT, "gradient_checkpointing": False}


def calculator_mb(shape: dict, method: str, seq_len: int, precision: str = "fp32") -> tuple[float, float]:
    """(the estimate's total, fitcheck's prediction = estimate x OVERHEAD) in MB, as the calculator prices it
    (LoRA's parameter count from estimate.lora_trainable_params, as widgets.calculator_table does)."""
    predicted_gib = fitcheck.predict_gib(shape, settings(method, seq_len, precision))
    return predicted_gib / fitcheck.OVERHEAD * estimate.GIB / MB, predicted_gib * estimate.GIB / MB


# --- the measuring processes (bench/scale_workers.py) -------------------------------------------------------

def run_worker(flag: str, payload: dict, timeout: float, env: dict) -> tuple[dict | None, subprocess.CompletedProcess]:
    """Run ``bench/scale_workers.py FLAG JSON`` in a fresh Python process: (its RESULT, or None if it failed;
    the finished process)."""
    proc = subprocess.run([sys.executable, str(WORKERS_PY), flag, json.dumps(payload)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return None, proc
    return json.loads(lines[-1][len("RESULT "):]), proc


def measure_fresh(method: str, model_path: Path, seq_len: int, steps: int, warmup: int, timeout: float) -> dict:
    """measure_here in a fresh Python process (clean baseline), with measure_training_subprocess's
    allocator settings and passive OpenMP waiting (see the module doc)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD), MALLOC_TRIM_THRESHOLD_="0",
               OMP_WAIT_POLICY="PASSIVE")
    got, proc = run_worker("--worker", {"method": method, "model_path": str(model_path), "seq_len": seq_len,
                                        "steps": steps, "warmup": warmup}, timeout, env)
    if got is None:
        raise RuntimeError(f"measuring {method} on {model_path} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    return got


def measure_in_process(method: str, model_path: Path, seq_len: int, steps: int, warmup: int) -> dict:
    """measure_here in this process (no import cost), on one thread: OpenMP threads that spin while other
    programs hold the cores slow a step ~4x, and the waiting policy cannot change once torch is loaded.
    Smoke mode checks the pipeline, not speed."""
    fix_malloc_thresholds()
    before_threads = torch.get_num_threads()
    try:
        return measure_here(method, str(model_path), seq_len, steps, warmup, threads=1)
    finally:
        torch.set_num_threads(before_threads)


def decode_fresh(model_dir: Path, timeout: float) -> dict:
    """decode_here (ORT GenAI int4 vs PyTorch eager) in a fresh Python process, in a temporary work folder."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    with tempfile.TemporaryDirectory(prefix="scale-onnx-", dir=REPO / "build") as tmp:
        got, proc = run_worker("--decode-worker", {"model_dir": str(model_dir), "work_dir": tmp}, timeout, env)
    if got is None:
        raise RuntimeError(f"decoding bench on {model_dir} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return got


# --- the results tables ----------------------------------------------------------------------------------

def _row(**kw) -> dict:
    return {c: kw.get(c, "") for c in COLUMNS}


def _fmt(v, digits=2):
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def write_results(rows: list[dict], out_dir: Path, name: str, report: dict, notes: dict) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"scale_{name}.csv", out_dir / f"scale_{name}.md"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    md_path.write_text(render_md(rows, report, notes))
    return csv_path, md_path


def _cpu_s(rows: list[dict]) -> float:
    """CPU seconds the measuring processes used (their own and their children's)."""
    total = 0.0
    for r in rows:
        if r.get("status") != "measured":
            continue
        if r.get("cpu_s") not in ("", None):
            total += float(r["cpu_s"])
    return total


def render_md(rows: list[dict], report: dict, notes: dict) -> str:
    train = [r for r in rows if r["kind"] == "train"]
    decode = [r for r in rows if r["kind"] == "decode"]
    loads = [float(r[k]) for r in rows for k in ("load_avg_before", "load_avg_after") if r.get(k) not in ("", None)]
    cpu_min = _cpu_s(rows) / 60
    lines = [f"# Scale bench: {notes['title']}", "",
             "Random-weight **stand-ins** of each preset's architecture (`labhelpers.models.shapes.build_stand_in`), "
             "measured by `bench/scale.py`" + (" in `--smoke` mode (pipeline check, not figures to use)"
                                                 if notes.get("smoke") else "") + ".", "",
             "## Machine", "", "```", hardware.format_report(report), "```", "",
             f"- CPU: {report['cpu_name']}; {report['cpu_count']} cores for this process",
             f"- 1-minute load average during the run: {min(loads):.1f} to {max(loads):.1f} "
             f"(median {statistics.median(loads):.1f}) on {report['cpu_count']} cores: timings are inflated "
             "by other programs that shared the cores (compare `cpu share` between rows)." if loads else
             "- load average: nothing was measured",
             f"- bench wall time: {notes['wall_min']:.1f} min ({notes['wall_note']})",
             f"- CPU time of the measuring processes: {cpu_min:.1f} min (= {cpu_min / report['cpu_count']:.1f} "
             f"min of wall time on {report['cpu_count']} fully used cores: what the measurements themselves would "
             "take on an idle machine, roughly; imports, stand-in builds and serial parts add to it)",
             "- Timings on a shared machine are noisy: the 135M LoRA measurement repeated 7 times within 20 minutes "
             "(load 2.6-5) gave 2.6 to 7.0 s/step; read them as upper bounds with a factor ~2-3 of noise."
             if report["device"] == "cpu" else "",
             "- **No GPU run was made.** `bench/scale_gpu.sh` (`--device cuda`: bf16, CUDA bitsandbytes 4-bit) is "
             "prepared for one; no GPU figures are claimed here.", "",
             "## Training: batch 1 x {} tokens, fp32, AdamW, LoRA r {} on all linear layers".format(
                 notes["seq_len"], LORA_R), "",
             "| model | method | s/step | cpu share | peak MB | RSS peak MB | ckpt residue MB | calculator MB "
             "| error | fitcheck MB (x1.25) | load avg | status |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in train:
        if r["status"] == "measured":
            lines.append(f"| {r['preset']} | {r['method']} | {_fmt(r['sec_per_step'])} | {_fmt(r['cpu_share'])} | "
                         f"{_fmt(r['peak_mb'], 0)} | {_fmt(r['peak_rss_mb'], 0)} | {_fmt(r['ckpt_residue_mb'], 0)} | "
                         f"{_fmt(r['estimate_mb'], 0)} | {float(r['error_pct']):+.0f} % | "
                         f"{_fmt(r['fitcheck_mb'], 0)} | {r['load_avg_before']}-{r['load_avg_after']} | measured |")
        else:
            lines.append(f"| {r['preset']} | {r['method']} | | | | | | {_fmt(r['estimate_mb'], 0)} | | "
                         f"{_fmt(r['fitcheck_mb'], 0)} | | {r['status']}: {r['reason']} |")
    lines += ["", "- **peak MB** (compared with the calculator): peak RSS during training above the RSS after "
              "the imports, minus `ckpt residue` (QLoRA only: the fp32 checkpoint's pages a 4-bit load on CPU "
              "leaves mapped although nothing reads them any more; clean file pages the kernel reclaims under "
              "memory pressure). **RSS peak MB** is the same without that subtraction: what `top` shows.",
              "- **calculator MB**: `labhelpers.memory.estimate` total as the calculator prices it (LoRA parameters "
              "from `estimate.lora_trainable_params`); **error** = calculator / peak - 1. **fitcheck MB** = "
              f"calculator x `fitcheck.OVERHEAD` ({fitcheck.OVERHEAD}), what `plan_training` compares with the "
              "memory budget.",
              "- **s/step**: median of the timed steps after one warm-up step, torch's default threads, "
              "`OMP_WAIT_POLICY=PASSIVE`; **cpu share** = CPU seconds / (wall seconds x threads) of the training "
              "steps (warm-up included): 1 = every thread busy all the time; serial parts and other programs lower it "
              "(read it with the load average).", ""]
    if decode or notes.get("decode_skipped"):
        lines += ["## Decoding: greedy, batch 1, {} new tokens".format(NEW_TOKENS), "",
                  "| model | safetensors fp32 MB | ORT GenAI int4 MB | int4 build s | PyTorch eager tok/s | "
                  "ORT int4 tok/s | ORT / PyTorch | load avg | status |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in decode:
            if r["status"] == "measured":
                lines.append(f"| {r['preset']} | {_fmt(r['safetensors_mb'], 0)} | {_fmt(r['int4_mb'], 0)} | "
                             f"{_fmt(r['build_s'], 0)} | {_fmt(r['pt_tok_s'], 1)} | {_fmt(r['ort_int4_tok_s'], 1)} | "
                             f"{_fmt(r['ort_vs_pt'])}x | {r['load_avg_before']}-{r['load_avg_after']} | measured |")
            else:
                lines.append(f"| {r['preset']} | | | | | | | | {r['status']}: {r['reason']} |")
        lines += ["", "Stand-ins have random weights, so the generated tokens mean nothing; every backend is forced "
                  f"to produce exactly {NEW_TOKENS} tokens (EOS suppressed). The int4 build uses the embedded model's "
                  "tokenizer (only the prompt's few ids matter for speed).", ""]
    lines += notes.get("extra", [])
    return "\n".join(lines) + "\n"


def _extra_notes(rows: list[dict], smoke: bool) -> list[str]:
    lines = ["## Calibration: calculator against measured peak", ""]
    measured = [r for r in rows if r["kind"] == "train" and r["status"] == "measured"]
    if not measured:
        return lines + ["Nothing measured.", ""]
    lines += ["| model | full | LoRA | QLoRA |", "|---|---:|---:|---:|"]
    by = {}
    for r in measured:
        by.setdefault(r["preset"], {})[r["method"]] = f"{float(r['error_pct']):+.0f} %"
    for preset, errs in by.items():
        lines.append(f"| {preset} | {errs.get('full', '-')} | {errs.get('lora', '-')} | {errs.get('qlora', '-')} |")
    lines += ["", "Error = calculator / measured peak - 1 (negative: the calculator is below the measurement; "
              "`fitcheck` multiplies it by {} before comparing with the budget). ".format(fitcheck.OVERHEAD) +
              ("Smoke figures: a 2-layer shape at 32 tokens, measured in the bench's own process." if smoke else
               "tests/test_scale_bench.py checks the recorded 135M and 0.5B LoRA/QLoRA errors stay within 25 %."), ""]
    return lines


# --- the CPU bench ---------------------------------------------------------------------------------------

def stand_in_dir(preset: str, root: Path, overrides: dict | None = None, seed: int = 0) -> tuple[Path, float]:
    """The saved stand-in (built once and cached); returns (folder, seconds spent building, 0 if cached)."""
    tag = preset + "".join(f"-{k}{v}" for k, v in sorted((overrides or {}).items()))
    folder = root / f"{tag}-seed{seed}"
    if shapes.is_stand_in(folder) and any(folder.glob("*.safetensors")):
        return folder, 0.0
    if folder.exists():
        shutil.rmtree(folder)  # a half-written one from an interrupted run
    t0 = time.perf_counter()
    model = shapes.build_stand_in(preset, folder, seed=seed, overrides=overrides)
    del model
    return folder, time.perf_counter() - t0


class _CpuBench:
    """One run_bench call's rows. The full bench also appends each to ``partial`` (a JSON line) as it comes, so
    that ``--resume`` keeps what an interrupted run finished; skips are re-decided on every run."""

    def __init__(self, args, report: dict, partial: Path | None, cache: Path, seq_len: int, warmup: int):
        self.args, self.partial, self.cache, self.seq_len, self.warmup = args, partial, cache, seq_len, warmup
        self.done: dict[str, dict] = {}
        if partial and args.resume and partial.is_file():
            for line in partial.read_text().splitlines():
                item = json.loads(line)
                self.done[item["key"]] = item["row"]
        elif partial and partial.is_file():
            partial.unlink()
        self.available_gib = report["available_memory_gib"]
        self.budget_gib = fitcheck.HEADROOM * self.available_gib
        self.base = dict(device=report["device"], cores=report["cpu_count"], batch=BATCH)
        self.rows: list[dict] = []
        self.new_rows: list[dict] = []
        self.folders: dict[str, Path] = {}
        self.build_s = 0.0
        self.t0 = time.perf_counter()

    def record(self, key: str, row: dict) -> None:
        self.rows.append(row)
        self.new_rows.append(row)
        if self.partial:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            with self.partial.open("a") as f:
                f.write(json.dumps({"key": key, "row": row}) + "\n")

    def reuse(self, key: str) -> bool:
        """Keep the item an earlier session of this run finished (True), or say it is still to do."""
        if key in self.done and self.done[key]["status"] != "skipped":
            self.rows.append(self.done[key])
            return True
        return False

    def stand_in(self, preset: str, spec: dict, say: bool) -> Path:
        """The preset's stand-in folder, built (and its time counted) the first time an item needs it."""
        if preset not in self.folders:
            self.folders[preset], built = stand_in_dir(preset, self.cache, spec.get("overrides"))
            self.build_s += built
            if built and say:
                print(f"built the {preset} stand-in in {built:.0f} s (load avg {load1()})", flush=True)
        return self.folders[preset]

    def preset(self, preset: str, spec: dict) -> None:
        shape = shapes.shape_of(preset, **(spec.get("overrides") or {}))
        for method in METHODS:
            self.train(preset, spec, shape, method)
        self.decode(preset, spec)

    def train(self, preset: str, spec: dict, shape: dict, method: str) -> None:
        key, why = f"train/{preset}/{method}", spec.get("why", {})
        if self.reuse(key):
            return
        est_mb, fit_mb = calculator_mb(shape, method, self.seq_len)
        common = dict(self.base, kind="train", preset=preset, method=method, seq_len=self.seq_len,
                      estimate_mb=est_mb, fitcheck_mb=fit_mb)
        if fit_mb * MB / estimate.GIB > self.budget_gib:  # in GiB, as fitcheck compares
            self.record(key, _row(**common, status="skipped", reason=f"memory: predicted "
                                  f"{fit_mb * MB / estimate.GIB:.1f} GiB > 80 % of the {self.available_gib:.1f} "
                                  "GiB available"))
            return
        if method not in spec["methods"]:
            self.record(key, _row(**common, status="skipped", reason=why.get(method, why.get("*", "not planned"))))
            return
        folder = self.stand_in(preset, spec, say=True)
        print(f"{preset} {method}: measuring ...", flush=True)
        try:
            if self.args.smoke:
                got = measure_in_process(method, folder, self.seq_len, spec["steps"], self.warmup)
            else:
                got = measure_fresh(method, folder, self.seq_len, spec["steps"], self.warmup, self.args.timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            self.record(key, _row(**common, status="failed", reason=str(err).strip().splitlines()[-1][:200]))
            print(f"  failed: {err}", flush=True)
            return
        err_pct = 100 * (est_mb / got["peak_mb"] - 1)
        fit_err = 100 * (fit_mb / got["peak_mb"] - 1)
        self.record(key, _row(**{**common, **{k: got[k] for k in got if k in COLUMNS}}, status="measured",
                              error_pct=err_pct, fitcheck_error_pct=fit_err))
        print(f"  {got['sec_per_step']:.2f} s/step (cpu share {got['cpu_share']:.2f}), peak {got['peak_mb']:.0f} MB "
              f"(RSS {got['peak_rss_mb']:.0f}, residue {got['ckpt_residue_mb']:.0f}) vs calculator {est_mb:.0f} "
              f"MB ({err_pct:+.0f} %); load avg {got['load_avg_before']}-{got['load_avg_after']}", flush=True)

    def decode(self, preset: str, spec: dict) -> None:
        key, why = f"decode/{preset}", spec.get("why", {})
        if self.reuse(key):
            return
        if not spec.get("onnx"):
            self.record(key, _row(**self.base, kind="decode", preset=preset, status="skipped",
                                  reason=why.get("onnx", why.get("*", "not planned"))))
            return
        folder = self.stand_in(preset, spec, say=False)
        print(f"{preset}: int4 ORT GenAI build and decoding ...", flush=True)
        try:
            got = decode_fresh(folder, self.args.timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            self.record(key, _row(**self.base, kind="decode", preset=preset, status="failed",
                                  reason=str(err).strip().splitlines()[-1][:200]))
            print(f"  failed: {err}", flush=True)
            return
        self.record(key, _row(**{**self.base, **got}, kind="decode", preset=preset, status="measured"))
        print(f"  int4 {got['int4_mb']:.0f} MB (built in {got['build_s']:.0f} s); PyTorch {got['pt_tok_s']:.1f} "
              f"tok/s, ORT int4 {got['ort_int4_tok_s']:.1f} tok/s; load avg {got['load_avg_before']}-"
              f"{got['load_avg_after']}", flush=True)

    def end_session(self) -> None:
        """Append this session's wall and build time to ``partial`` (a rewrite-only run adds no time)."""
        if self.partial and any(r.get("status") != "skipped" for r in self.new_rows):
            with self.partial.open("a") as f:
                f.write(json.dumps({"key": f"session/{time.time():.0f}", "row": {
                    "wall_s": time.perf_counter() - self.t0, "build_s": self.build_s}}) + "\n")

    def wall(self) -> tuple[float, str]:
        """(wall seconds of every session of this run, the note that says what they were)."""
        if not self.partial:
            return time.perf_counter() - self.t0, "one invocation"
        sessions = [json.loads(line)["row"] for line in self.partial.read_text().splitlines()
                    if json.loads(line)["key"].startswith("session/")]
        builds = sum(s["build_s"] for s in sessions)
        return sum(s["wall_s"] for s in sessions), (
            f"{len(sessions)} invocation(s) of this script, stand-in builds {builds / 60:.1f} min of it; "
            "measured under the load averages shown, not on an idle machine")


def _plan(args) -> tuple[dict, int, int]:
    """(preset -> what to measure, sequence length, warm-up steps) for this invocation."""
    if args.smoke:
        plan = {SMOKE["preset"]: {"methods": SMOKE["methods"], "onnx": False, "steps": SMOKE["steps"],
                                  "overrides": SMOKE["overrides"], "why": {"onnx": "--smoke: no ONNX"}}}
        return plan, SMOKE["seq_len"], SMOKE["warmup"]
    return {p: PLAN[p] for p in (args.presets or PLAN)}, args.seq_len, 1


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def run_bench(args) -> tuple[Path, Path]:
    report = hardware.hardware_report()
    name = machine_name(report) + ("_smoke" if args.smoke else "")
    out_dir = Path(args.out) if args.out else (REPO / "build" / "scale-smoke" if args.smoke else RESULTS_DIR)
    partial = (REPO / "build" / f"scale_{name}.partial.jsonl") if not args.smoke else None
    cache = Path(args.cache) if args.cache else (out_dir / "stand-ins" if args.smoke else CACHE_DIR)
    plan, seq_len, warmup = _plan(args)
    bench = _CpuBench(args, report, partial, cache, seq_len, warmup)
    # A SIGTERM (e.g. from `timeout`) ends the full bench like Ctrl-C: subprocess.run kills the measuring
    # process, and the session's wall time is recorded for --resume.
    previous = signal.signal(signal.SIGTERM, _sigterm) if partial else None
    interrupted = False
    try:
        for preset, spec in plan.items():
            bench.preset(preset, spec)
    except KeyboardInterrupt:
        interrupted = True
        print('interrupted: the finished items are kept; go on with --resume', flush=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        bench.end_session()
    if interrupted:
        raise SystemExit(130)
    wall, wall_note = bench.wall()
    rows = [r for r in bench.rows if r]
    notes = {"title": f"{report['device']}, {report['cpu_count']} cores", "smoke": args.smoke, "seq_len": seq_len,
             "wall_min": wall / 60, "wall_note": wall_note, "decode_skipped": True,
             "extra": _extra_notes(rows, args.smoke)}
    csv_path, md_path = write_results(rows, out_dir, name, report, notes)
    print(f"wrote {csv_path} and {md_path} ({wall / 60:.1f} min)")
    return csv_path, md_path


# --- CUDA (prepared for bench/scale_gpu.sh; no GPU run has been made) --------------------------------------

def _gpu_stand_in(preset: str, folder: Path) -> None:
    """Build the preset's bf16 stand-in on the GPU into ``folder`` unless it is there."""
    if not shapes.is_stand_in(folder):
        if folder.exists():
            shutil.rmtree(folder)
        model = shapes.build_stand_in(preset, folder, dtype=torch.bfloat16, device="cuda")
        del model
        torch.cuda.empty_cache()


def _gpu_row(common: dict, got: dict | None, proc: subprocess.CompletedProcess, est_mb: float,
             fit_mb: float) -> dict:
    if got is None:
        return _row(**common, status="failed", reason=proc.stderr.strip().splitlines()[-1][:200]
                    if proc.stderr.strip() else f"exit {proc.returncode}")
    return _row(**common, status="measured", threads="", steps=got["steps"], sec_per_step=got["sec_per_step"],
                peak_mb=got["peak_mb"], weights_mb="", trainable_params=got["trainable_params"], load_s=got["load_s"],
                error_pct=100 * (est_mb / got["peak_mb"] - 1), fitcheck_error_pct=100 * (fit_mb / got["peak_mb"] - 1),
                load_avg_before=load1(), load_avg_after=load1())


def run_gpu_bench(args) -> None:
    """Every preset x method that the calculator says fits in 80 % of the free GPU memory, largest last.
    Writes bench/results/scale_cuda-<N>core.csv/.md (columns as the CPU bench; peak = CUDA tensors)."""
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible to torch (install a CUDA torch build: "
                         "TORCH_INDEX in the Makefile)")
    report = hardware.hardware_report()
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    budget_gib = fitcheck.HEADROOM * report["gpu_memory_free_gib"]
    cache = Path(args.cache) if args.cache else CACHE_DIR / "cuda"
    rows, t_bench = [], time.perf_counter()
    env = dict(os.environ, PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True")
    for preset in (args.presets or PLAN):
        shape = shapes.shape_of(preset)
        folder = cache / f"{preset}-bf16-seed0"
        for method in METHODS:
            est_mb, fit_mb = calculator_mb(shape, method, args.seq_len, precision)
            common = dict(kind="train", preset=preset, method=method, device="cuda", cores=report["cpu_count"],
                          batch=BATCH, seq_len=args.seq_len, estimate_mb=est_mb, fitcheck_mb=fit_mb)
            if fit_mb * MB / estimate.GIB > budget_gib:
                rows.append(_row(**common, status="skipped", reason=f"memory: predicted "
                                 f"{fit_mb * MB / estimate.GIB:.1f} GiB > 80 % of "
                                 f"{report['gpu_memory_free_gib']:.1f} GiB free GPU memory"))
                continue
            _gpu_stand_in(preset, folder)
            got, proc = run_worker("--gpu-worker", {"method": method, "model_path": str(folder),
                                                    "seq_len": args.seq_len, "steps": 5, "warmup": 2,
                                                    "batch": BATCH}, args.timeout, env)
            rows.append(_gpu_row(common, got, proc, est_mb, fit_mb))
            if got is not None:
                print(f"{preset} {method}: {got['sec_per_step']:.3f} s/step, peak {got['peak_mb']:.0f} MB "
                      f"(reserved {got['reserved_mb']:.0f}) vs calculator {est_mb:.0f} MB", flush=True)
    notes = {"title": f"CUDA GPU ({report['device_name']}), {precision}", "smoke": False, "seq_len": args.seq_len,
             "wall_min": (time.perf_counter() - t_bench) / 60, "wall_note": "one invocation", "decode_skipped": False,
             "extra": ["Peak = torch.cuda.max_memory_allocated above the allocation before loading (tensors "
                       "only, no CUDA context).", ""] + _extra_notes(rows, False)}
    out_dir = Path(args.out) if args.out else RESULTS_DIR
    csv_path, md_path = write_results(rows, out_dir, machine_name(report), report, notes)
    # The CPU bench's wording says no GPU run was made; on a GPU it was.
    md_path.write_text(md_path.read_text().replace(
        "- **No GPU run was made.** `bench/scale_gpu.sh` (`--device cuda`: bf16, CUDA bitsandbytes 4-bit) is "
        "prepared for one; no GPU figures are claimed here.", "- GPU run (`bench/scale_gpu.sh`)."))
    print(f"wrote {csv_path} and {md_path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="pipeline check: 2-layer 135M shape, seq 32, 1 step, "
                    "no ONNX, measured in this process on 1 thread (< 1 min)")
    ap.add_argument("--resume", action="store_true", help="keep the items an interrupted run finished")
    ap.add_argument("--presets", nargs="*", choices=list(PLAN), help="only these shapes (default: the plan)")
    ap.add_argument("--seq-len", type=int, default=SEQ_LEN)
    ap.add_argument("--out", default=None, help="results folder (default bench/results; smoke: build/scale-smoke)")
    ap.add_argument("--cache", default=None, help="stand-in folder cache (default build/stand-ins)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per measuring process")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: run bench/scale_gpu.sh's GPU measurement instead (bf16, CUDA bitsandbytes)")
    workers.add_worker_flags(ap, hidden=True)  # --worker, --decode-worker, --gpu-worker: as bench/scale_workers.py
    args = ap.parse_args(argv)
    chosen = workers.chosen_worker(args)
    if chosen:
        return workers.run_worker(*chosen)
    if args.device == "cuda":
        run_gpu_bench(args)
        return 0
    run_bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
