"""What the real presets cost on this machine, measured with random-weight stand-ins of their shapes.

For each preset's architecture (labhelpers.shapes.build_stand_in: same tensors as the real model, random
weights, no download) that fits this machine:

- **training**: seconds per step and peak memory of LoRA, QLoRA and full fine-tuning at batch 1 x 64
  tokens (notebook 02 tokenizes with ``max_length=64``; LoRA r 8, dropout 0.05, all linear layers, AdamW,
  fp32: notebook 02's settings). Each measurement is a fresh Python process that runs
  ``labhelpers.measure.measure_training`` (what ``measure_training_subprocess`` runs) on the saved
  stand-in, and also reads ``/proc/self/status`` before loading and samples the checkpoint's mapped
  pages (see "peak memory" below). A method the memory calculator predicts would not fit in 80 % of the
  available RAM (``labhelpers.fitcheck``) is skipped, with the reason in the table.
- **decoding**: the ONNX Runtime GenAI int4 export's size and greedy tokens/s (batch 1, 32 new tokens)
  against PyTorch eager fp32, for the shapes where building is quick (``labhelpers.export.build_genai``;
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
``cpu-2core``); stand-ins are cached under ``build/stand-ins/`` (git-ignored).
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from labhelpers import fitcheck, hardware, memory, shapes  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
CACHE_DIR = REPO / "build" / "stand-ins"
MB = 1e6
#: Notebook 02's settings (TrainConfig defaults; its tokenizer call cuts rows at max_length=64).
SEQ_LEN, BATCH, LORA_R, LORA_DROPOUT = 64, 1, 8, 0.05
NB02_STEPS, NB02_BATCH = 300, 8
NEW_TOKENS = 32
METHODS = ("lora", "qlora", "full")
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


def load1() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


# --- shapes and the calculator -----------------------------------------------------------------------------

def shape_of(preset: str, overrides: dict | None = None) -> dict:
    """The memory calculator's shape dict for a preset (or its overridden smoke variant)."""
    if not overrides:
        return memory.preset_shape(preset)
    cfg = shapes.make_config(preset, **overrides)
    tied = bool(cfg.tie_word_embeddings)
    return {"n_params": shapes.count_params(preset, **overrides), "n_layers": cfg.num_hidden_layers,
            "hidden": cfg.hidden_size, "intermediate": cfg.intermediate_size, "vocab": cfg.vocab_size,
            "n_embedding": cfg.vocab_size * cfg.hidden_size * (1 if tied else 2)}


def settings(method: str, seq_len: int, precision: str = "fp32", batch: int = BATCH) -> dict:
    return {"method": method, "precision": precision, "batch_size": batch, "seq_len": seq_len, "lora_r": LORA_R,
            "lora_dropout": LORA_DROPOUT, "gradient_checkpointing": False}


def calculator_mb(shape: dict, method: str, seq_len: int, precision: str = "fp32") -> tuple[float, float]:
    """(the estimate's total, fitcheck's prediction = estimate x OVERHEAD) in MB, as the calculator prices it
    (LoRA's parameter count from memory.lora_trainable_params, as widgets.calculator_table does)."""
    predicted_gib = fitcheck.predict_gib(shape, settings(method, seq_len, precision))
    return predicted_gib / fitcheck.OVERHEAD * memory.GIB / MB, predicted_gib * memory.GIB / MB


# --- the measuring process ------------------------------------------------------------------------------

def _status() -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _mapped_rss(suffix: str = ".safetensors") -> int:
    """Resident bytes of this process's mappings of files ending in ``suffix`` (from /proc/self/smaps)."""
    total, inside = 0, False
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):  # a mapping's header line
                    inside = line.rstrip().endswith(suffix)
                elif inside and first == "Rss:":
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total


class _Sampler(threading.Thread):
    """Samples RSS every ``interval`` seconds, for the loading peak (the kernel's mark, which measure_training
    resets after loading, does not keep it). /proc/self/status is cheap to read; /proc/self/smaps is not (it
    walks every mapping under the memory-map lock, which the training's allocations need), so the checkpoint
    mapping is read once, after the timed steps."""

    def __init__(self, interval: float = 1.0):
        super().__init__(daemon=True)
        self.interval, self.rss, self._stop_event = interval, 0, threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.rss = max(self.rss, _status().get("VmRSS", 0))
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()


def _file_bytes(model_dir: Path) -> tuple[int, int]:
    """(bytes of the checkpoint's 2-D Linear weights bitsandbytes quantizes, bytes of everything else)."""
    from safetensors import safe_open

    quantized = other = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for name in f.keys():
                sl = f.get_slice(name)
                shape, dtype = sl.get_shape(), sl.get_dtype()
                size = {"F32": 4, "BF16": 2, "F16": 2}.get(dtype, 4)
                n = 1
                for d in shape:
                    n *= d
                if len(shape) == 2 and "embed_tokens" not in name and "lm_head" not in name:
                    quantized += n * size
                else:
                    other += n * size
    return quantized, other


def measure_here(method: str, model_path: str, seq_len: int, steps: int, warmup: int,
                 threads: int | None = None) -> dict:
    """One measurement in this process (the worker runs it in a fresh one). See the module doc."""
    import torch  # noqa: F401  imported before the baseline, as in any notebook
    import transformers  # noqa: F401
    import peft  # noqa: F401
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        pass
    import labhelpers.measure as lm
    from labhelpers.measure import measure_training, release_free_memory

    # measure_training loads the model, then trains inside measure_peak: note the time and CPU time there,
    # so cpu_share covers the training steps only (loading waits on the disk and runs partly serial).
    marks = {}
    original = lm.measure_peak

    def marked(fn, *a, **kw):
        marks["t"], marks["cpu"] = time.perf_counter(), os.times()
        try:
            return original(fn, *a, **kw)
        finally:
            marks["t_end"], marks["cpu_end"] = time.perf_counter(), os.times()
            marks["ckpt"] = _mapped_rss()  # the model is still alive here: its checkpoint mapping too

    lm.measure_peak = marked
    release_free_memory()
    before = _status()
    sampler = _Sampler()
    la0, t0, cpu0 = load1(), time.perf_counter(), os.times()
    sampler.start()
    try:
        got = measure_training(method, batch_size=BATCH, seq_len=seq_len, steps=steps, warmup_steps=warmup,
                               model_path=model_path, lora_r=LORA_R, lora_dropout=LORA_DROPOUT, threads=threads)
    finally:
        sampler.stop()
        lm.measure_peak = original
    wall, cpu1 = time.perf_counter() - t0, os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    c0, c1 = marks["cpu"], marks["cpu_end"]
    train_cpu = (c1.user - c0.user) + (c1.system - c0.system)
    imports = before["VmRSS"]
    peak_rss = got["peak_mb"] * MB - imports
    residue = 0.0
    if method == "qlora":
        quantized, other = _file_bytes(Path(model_path))
        residue = min(max(0.0, marks["ckpt"] - other), quantized)
    return {"method": method, "threads": got["threads"], "steps": steps, "sec_per_step": got["sec_per_step"],
            "cpu_share": train_cpu / ((marks["t_end"] - marks["t"]) * got["threads"]), "cpu_s": cpu,
            "peak_rss_mb": peak_rss / MB,
            "ckpt_residue_mb": residue / MB, "peak_mb": (peak_rss - residue) / MB,
            "load_peak_rss_mb": (max(sampler.rss, got["peak_mb"] * MB) - imports) / MB,
            "weights_mb": got["weights_mb"], "trainable_params": got["trainable_params"],
            "imports_rss_mb": imports / MB, "ckpt_mapped_mb": marks["ckpt"] / MB,
            "load_s": marks["t"] - t0, "wall_s": wall, "load_avg_before": la0, "load_avg_after": load1()}


def measure_fresh(method: str, model_path: Path, seq_len: int, steps: int, warmup: int, timeout: float) -> dict:
    """measure_here in a fresh Python process (clean baseline), with measure_training_subprocess's
    allocator settings and passive OpenMP waiting (see the module doc)."""
    from labhelpers.measure import MMAP_THRESHOLD

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD), MALLOC_TRIM_THRESHOLD_="0",
               OMP_WAIT_POLICY="PASSIVE")
    args = json.dumps({"method": method, "model_path": str(model_path), "seq_len": seq_len, "steps": steps,
                       "warmup": warmup})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"measuring {method} on {model_path} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# --- decoding: ORT GenAI int4 vs PyTorch eager -----------------------------------------------------------

def decode_here(model_dir: str, work_dir: str, new_tokens: int = NEW_TOKENS, repeats: int = 3) -> dict:
    """Build the int4 ORT GenAI folder of a stand-in and time greedy decoding against PyTorch eager."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from labhelpers import export
    from labhelpers.onnx_infer import GenAIModel, greedy_tokens
    from labhelpers.paths import BASE_MODEL_DIR

    la0, t_all, cpu0 = load1(), time.perf_counter(), os.times()
    src, work = Path(model_dir), Path(work_dir)
    # The builder and og need a tokenizer next to the weights: the embedded model's (ids < every vocab here).
    with_tok = work / "hf"
    with_tok.mkdir(parents=True)
    for p in src.iterdir():
        (with_tok / p.name).symlink_to(p.resolve())
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (BASE_MODEL_DIR / name).is_file():
            shutil.copy2(BASE_MODEL_DIR / name, with_tok / name)
    t0 = time.perf_counter()
    out = export.build_genai(with_tok, work / "int4", "int4")
    build_s = time.perf_counter() - t0
    int4_mb = sum(p.stat().st_size for p in out.glob("model.onnx*")) / MB
    st_mb = sum(p.stat().st_size for p in src.glob("*.safetensors")) / MB

    threads = torch.get_num_threads()
    tok = AutoTokenizer.from_pretrained(with_tok)
    pt = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    og_model = GenAIModel(out, threads)
    prompt = "The weather today is"
    runs = {"pt": lambda: greedy_tokens(pt, tok, prompt, new_tokens, min_new_tokens=new_tokens),
            "ort": lambda: og_model.generate_tokens(prompt, new_tokens, min_new_tokens=new_tokens)}
    for fn in runs.values():  # warm-up
        fn()
    speeds = {k: [] for k in runs}
    for r in range(repeats):  # alternate, so load that comes and goes hits both
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t = time.perf_counter()
            got = runs[name]()
            dt = time.perf_counter() - t
            assert len(got) == new_tokens, (name, len(got))
            speeds[name].append(new_tokens / dt)
    pt_s, ort_s = statistics.median(speeds["pt"]), statistics.median(speeds["ort"])
    cpu1 = os.times()  # the builder runs as a child process: its CPU time is in children_*
    cpu = sum(getattr(cpu1, k) - getattr(cpu0, k) for k in ("user", "system", "children_user", "children_system"))
    return {"new_tokens": new_tokens, "threads": threads, "safetensors_mb": st_mb, "int4_mb": int4_mb,
            "build_s": build_s, "pt_tok_s": pt_s, "ort_int4_tok_s": ort_s, "ort_vs_pt": ort_s / pt_s,
            "wall_s": time.perf_counter() - t_all, "load_avg_before": la0, "load_avg_after": load1(), "cpu_s": cpu}


def decode_fresh(model_dir: Path, timeout: float) -> dict:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    with tempfile.TemporaryDirectory(prefix="scale-onnx-", dir=REPO / "build") as tmp:
        args = json.dumps({"model_dir": str(model_dir), "work_dir": tmp})
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--decode-worker", args],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"decoding bench on {model_dir} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# --- the bench ---------------------------------------------------------------------------------------------

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
    lines = [f"# Scale bench: {notes['title']}", "",
             "Random-weight **stand-ins** of each preset's architecture (`labhelpers.shapes.build_stand_in`), "
             "measured by `bench/scale.py`" + (" in `--smoke` mode (pipeline check, not figures to use)"
                                                 if notes.get("smoke") else "") + ".", "",
             "## Machine", "", "```", hardware.format_report(report), "```", "",
             f"- CPU: {report['cpu_name']}; {report['cpu_count']} cores for this process",
             f"- 1-minute load average during the run: {min(loads):.1f} to {max(loads):.1f} "
             f"(median {statistics.median(loads):.1f}) on {report['cpu_count']} cores: timings are inflated "
             "by other programs that shared the cores (compare `cpu share` between rows)." if loads else
             "- load average: nothing was measured",
             f"- bench wall time: {notes['wall_min']:.1f} min ({notes['wall_note']})",
             f"- CPU time of the measuring processes: {_cpu_s(rows) / 60:.1f} min (= {_cpu_s(rows) / 60 / report['cpu_count']:.1f} "
             f"min of wall time on {report['cpu_count']} fully used cores: what the measurements themselves would take "
             "on an idle machine, roughly; imports, stand-in builds and serial parts add to it)",
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
                         f"{_fmt(r['estimate_mb'], 0)} | {float(r['error_pct']):+.0f} % | {_fmt(r['fitcheck_mb'], 0)} | "
                         f"{r['load_avg_before']}-{r['load_avg_after']} | measured |")
        else:
            lines.append(f"| {r['preset']} | {r['method']} | | | | | | {_fmt(r['estimate_mb'], 0)} | | "
                         f"{_fmt(r['fitcheck_mb'], 0)} | | {r['status']}: {r['reason']} |")
    lines += ["", "- **peak MB** (compared with the calculator): peak RSS during training above the RSS after "
              "the imports, minus `ckpt residue` (QLoRA only: the fp32 checkpoint's pages a 4-bit load on CPU "
              "leaves mapped although nothing reads them any more; clean file pages the kernel reclaims under "
              "memory pressure). **RSS peak MB** is the same without that subtraction: what `top` shows.",
              "- **calculator MB**: `labhelpers.memory` total as the calculator prices it (LoRA parameters from "
              "`memory.lora_trainable_params`); **error** = calculator / peak - 1. **fitcheck MB** = calculator x "
              f"`fitcheck.OVERHEAD` ({fitcheck.OVERHEAD}), what `plan_training` compares with the memory budget.",
              "- **s/step**: median of the timed steps after one warm-up step, torch's default threads, "
              "`OMP_WAIT_POLICY=PASSIVE`; **cpu share** = CPU seconds / (wall seconds x threads) of the training "
              "steps (warm-up included): 1 = every thread busy all the time; serial parts and other programs lower it "
              "(read it with the load average).", ""]
    if decode or notes.get("decode_skipped"):
        lines += ["## Decoding: greedy, batch 1, {} new tokens".format(NEW_TOKENS), "",
                  "| model | safetensors fp32 MB | ORT GenAI int4 MB | int4 build s | PyTorch eager tok/s | "
                  "ORT int4 tok/s | ORT / PyTorch | load avg | status |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
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


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def run_bench(args) -> tuple[Path, Path]:
    report = hardware.hardware_report()
    name = machine_name(report) + ("_smoke" if args.smoke else "")
    out_dir = Path(args.out) if args.out else (REPO / "build" / "scale-smoke" if args.smoke else RESULTS_DIR)
    partial = (REPO / "build" / f"scale_{name}.partial.jsonl") if not args.smoke else None
    done: dict[str, dict] = {}
    if partial and args.resume and partial.is_file():
        for line in partial.read_text().splitlines():
            item = json.loads(line)
            done[item["key"]] = item["row"]
    elif partial and partial.is_file():
        partial.unlink()
    cache = Path(args.cache) if args.cache else (out_dir / "stand-ins" if args.smoke else CACHE_DIR)
    available_gib = report["available_memory_gib"]
    budget_gib = fitcheck.HEADROOM * available_gib
    rows: list[dict] = []
    t_bench = time.perf_counter()

    new_rows: list[dict] = []

    def record(key: str, row: dict) -> None:
        rows.append(row)
        new_rows.append(row)
        if partial:
            partial.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("a") as f:
                f.write(json.dumps({"key": key, "row": row}) + "\n")

    base = dict(device=report["device"], cores=report["cpu_count"], batch=BATCH)
    if args.smoke:
        plan = {SMOKE["preset"]: {"methods": SMOKE["methods"], "onnx": False, "steps": SMOKE["steps"],
                                  "overrides": SMOKE["overrides"], "why": {"onnx": "--smoke: no ONNX"}}}
        seq_len, warmup = SMOKE["seq_len"], SMOKE["warmup"]
    else:
        plan = {p: PLAN[p] for p in (args.presets or PLAN)}
        seq_len, warmup = args.seq_len, 1
    build_s_total = 0.0
    # A SIGTERM (e.g. from `timeout`) ends the full bench like Ctrl-C: subprocess.run kills the measuring
    # process, and the session's wall time is recorded for --resume.
    previous = signal.signal(signal.SIGTERM, _sigterm) if partial else None
    interrupted = False
    try:
        for preset, spec in plan.items():
            overrides = spec.get("overrides")
            shape = shape_of(preset, overrides)
            why = spec.get("why", {})
            folder = None
            for method in METHODS:
                key = f"train/{preset}/{method}"
                if key in done and done[key]["status"] != "skipped":  # skips are re-decided on every run
                    rows.append(done[key])
                    continue
                est_mb, fit_mb = calculator_mb(shape, method, seq_len)
                common = dict(base, kind="train", preset=preset, method=method, seq_len=seq_len, estimate_mb=est_mb,
                              fitcheck_mb=fit_mb)
                if fit_mb * MB / memory.GIB > budget_gib:  # in GiB, as fitcheck compares
                    record(key, _row(**common, status="skipped", reason=f"memory: predicted {fit_mb * MB / memory.GIB:.1f} "
                                     f"GiB > 80 % of the {available_gib:.1f} GiB available"))
                    continue
                if method not in spec["methods"]:
                    record(key, _row(**common, status="skipped", reason=why.get(method, why.get("*", "not planned"))))
                    continue
                if folder is None:
                    folder, built = stand_in_dir(preset, cache, overrides)
                    build_s_total += built
                    if built:
                        print(f"built the {preset} stand-in in {built:.0f} s (load avg {load1()})", flush=True)
                print(f"{preset} {method}: measuring ...", flush=True)
                try:
                    if args.smoke:
                        import torch

                        from labhelpers.measure import fix_malloc_thresholds

                        # In this process (no import cost), on one thread: OpenMP threads that spin while other
                        # programs hold the cores slow a step ~4x, and the waiting policy cannot change once
                        # torch is loaded. Smoke mode checks the pipeline, not speed.
                        fix_malloc_thresholds()
                        before_threads = torch.get_num_threads()
                        try:
                            got = measure_here(method, str(folder), seq_len, spec["steps"], warmup, threads=1)
                        finally:
                            torch.set_num_threads(before_threads)
                    else:
                        got = measure_fresh(method, folder, seq_len, spec["steps"], warmup, args.timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as err:
                    record(key, _row(**common, status="failed", reason=str(err).strip().splitlines()[-1][:200]))
                    print(f"  failed: {err}", flush=True)
                    continue
                err_pct = 100 * (est_mb / got["peak_mb"] - 1)
                fit_err = 100 * (fit_mb / got["peak_mb"] - 1)
                row = _row(**{**common, **{k: got[k] for k in got if k in COLUMNS}}, status="measured",
                           error_pct=err_pct, fitcheck_error_pct=fit_err)
                record(key, row)
                print(f"  {got['sec_per_step']:.2f} s/step (cpu share {got['cpu_share']:.2f}), peak {got['peak_mb']:.0f} MB "
                      f"(RSS {got['peak_rss_mb']:.0f}, residue {got['ckpt_residue_mb']:.0f}) vs calculator {est_mb:.0f} "
                      f"MB ({err_pct:+.0f} %); load avg {got['load_avg_before']}-{got['load_avg_after']}", flush=True)
            key = f"decode/{preset}"
            if key in done and done[key]["status"] != "skipped":
                rows.append(done[key])
                continue
            if not spec.get("onnx"):
                record(key, _row(**base, kind="decode", preset=preset, status="skipped",
                                 reason=why.get("onnx", why.get("*", "not planned"))))
                continue
            if folder is None:
                folder, built = stand_in_dir(preset, cache, overrides)
                build_s_total += built
            print(f"{preset}: int4 ORT GenAI build and decoding ...", flush=True)
            try:
                got = decode_fresh(folder, args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                record(key, _row(**base, kind="decode", preset=preset, status="failed",
                                 reason=str(err).strip().splitlines()[-1][:200]))
                print(f"  failed: {err}", flush=True)
                continue
            record(key, _row(**{**base, **got}, kind="decode", preset=preset, status="measured"))
            print(f"  int4 {got['int4_mb']:.0f} MB (built in {got['build_s']:.0f} s); PyTorch {got['pt_tok_s']:.1f} tok/s, "
                  f"ORT int4 {got['ort_int4_tok_s']:.1f} tok/s; load avg {got['load_avg_before']}-{got['load_avg_after']}",
                  flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print('interrupted: the finished items are kept; go on with --resume', flush=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if partial and any(r.get("status") != "skipped" for r in new_rows):  # a rewrite-only run adds no time
            with partial.open("a") as f:
                f.write(json.dumps({"key": f"session/{time.time():.0f}", "row": {
                    "wall_s": time.perf_counter() - t_bench, "build_s": build_s_total}}) + "\n")
    if interrupted:
        raise SystemExit(130)
    if partial:
        sessions = [json.loads(line)["row"] for line in partial.read_text().splitlines()
                    if json.loads(line)["key"].startswith("session/")]
        wall = sum(s["wall_s"] for s in sessions)
        builds = sum(s["build_s"] for s in sessions)
        wall_note = (f"{len(sessions)} invocation(s) of this script, stand-in builds {builds / 60:.1f} min of it; "
                     "measured under the load averages shown, not on an idle machine")
    else:
        wall = time.perf_counter() - t_bench
        wall_note = "one invocation"
    rows = [r for r in rows if r]
    notes = {"title": f"{report['device']}, {report['cpu_count']} cores", "smoke": args.smoke, "seq_len": seq_len,
             "wall_min": wall / 60, "wall_note": wall_note, "decode_skipped": True,
             "extra": _extra_notes(rows, args.smoke)}
    csv_path, md_path = write_results(rows, out_dir, name, report, notes)
    print(f"wrote {csv_path} and {md_path} ({wall / 60:.1f} min)")
    return csv_path, md_path


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


# --- CUDA (prepared for bench/scale_gpu.sh; no GPU run has been made) --------------------------------------

def gpu_measure_here(method: str, model_path: str, seq_len: int, steps: int, warmup: int, batch: int) -> dict:
    """One GPU measurement: LoRA on a bf16 base, QLoRA on a CUDA bitsandbytes NF4 base (bf16 compute), full
    fine-tuning with fp32 weights under bf16 autocast (AdamW fp32 state: the calculator's 16 bytes/param).
    Peak = torch.cuda.max_memory_allocated from before loading (tensors only; the CUDA context and the
    caching allocator's slack are not in it: max_memory_reserved is reported beside it)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    torch.cuda.reset_peak_memory_stats()
    base_alloc = torch.cuda.memory_allocated()
    t_load = time.perf_counter()
    if method == "qlora":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(model_path, quantization_config=quant, dtype=dtype,
                                                     device_map={"": 0})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        load_dtype = torch.float32 if method == "full" else dtype
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=load_dtype).to("cuda")
    if method in ("lora", "qlora"):
        model = get_peft_model(model, LoraConfig(r=LORA_R, lora_alpha=2 * LORA_R, lora_dropout=LORA_DROPOUT,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    load_s = time.perf_counter() - t_load
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    batch_in = shapes.random_batch(model.config.vocab_size, batch, seq_len, seed=0)
    x = batch_in["input_ids"].to("cuda")
    times = []
    for k in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype, enabled=(method == "full")):
            loss = model(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    return {"method": method, "dtype": str(dtype).replace("torch.", ""), "steps": steps,
            "sec_per_step": statistics.median(times), "peak_mb": (torch.cuda.max_memory_allocated() - base_alloc) / MB,
            "reserved_mb": torch.cuda.max_memory_reserved() / MB, "trainable_params": sum(p.numel() for p in params),
            "load_s": load_s, "gpu": torch.cuda.get_device_name(0)}


def run_gpu_bench(args) -> None:
    """Every preset x method that the calculator says fits in 80 % of the free GPU memory, largest last.
    Writes bench/results/scale_cuda-<N>core.csv/.md (columns as the CPU bench; peak = CUDA tensors)."""
    import torch

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
        shape = shape_of(preset)
        folder = cache / f"{preset}-bf16-seed0"
        for method in METHODS:
            est_mb, fit_mb = calculator_mb(shape, method, args.seq_len, precision)
            common = dict(kind="train", preset=preset, method=method, device="cuda", cores=report["cpu_count"],
                          batch=BATCH, seq_len=args.seq_len, estimate_mb=est_mb, fitcheck_mb=fit_mb)
            if fit_mb * MB / memory.GIB > budget_gib:
                rows.append(_row(**common, status="skipped", reason=f"memory: predicted {fit_mb * MB / memory.GIB:.1f} GiB > "
                                 f"80 % of {report['gpu_memory_free_gib']:.1f} GiB free GPU memory"))
                continue
            if not shapes.is_stand_in(folder):
                if folder.exists():
                    shutil.rmtree(folder)
                model = shapes.build_stand_in(preset, folder, dtype=torch.bfloat16, device="cuda")
                del model
                torch.cuda.empty_cache()
            work = json.dumps({"method": method, "model_path": str(folder), "seq_len": args.seq_len, "steps": 5,
                               "warmup": 2, "batch": BATCH})
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--gpu-worker", work],
                                  capture_output=True, text=True, timeout=args.timeout, cwd=REPO, env=env)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                rows.append(_row(**common, status="failed", reason=proc.stderr.strip().splitlines()[-1][:200]
                                 if proc.stderr.strip() else f"exit {proc.returncode}"))
                continue
            got = json.loads(lines[-1][len("RESULT "):])
            rows.append(_row(**common, status="measured", threads="", steps=got["steps"],
                             sec_per_step=got["sec_per_step"], peak_mb=got["peak_mb"], weights_mb="",
                             trainable_params=got["trainable_params"], load_s=got["load_s"],
                             error_pct=100 * (est_mb / got["peak_mb"] - 1),
                             fitcheck_error_pct=100 * (fit_mb / got["peak_mb"] - 1),
                             load_avg_before=load1(), load_avg_after=load1()))
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
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--decode-worker", help=argparse.SUPPRESS)
    ap.add_argument("--gpu-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(measure_here(**json.loads(args.worker))), flush=True)
        return 0
    if args.decode_worker:
        print("RESULT " + json.dumps(decode_here(**json.loads(args.decode_worker))), flush=True)
        return 0
    if args.gpu_worker:
        print("RESULT " + json.dumps(gpu_measure_here(**json.loads(args.gpu_worker))), flush=True)
        return 0
    if args.device == "cuda":
        run_gpu_bench(args)
        return 0
    run_bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
