"""The measuring processes of bench/scale.py: one measurement each, in a fresh Python process.

bench/scale.py's module doc says what they measure and why (peak memory, checkpoint residue, cpu share).

    python bench/scale_workers.py --worker '{"method": ..., "model_path": ..., "seq_len": ..., ...}'
    python bench/scale_workers.py --decode-worker '{"model_dir": ..., "work_dir": ...}'
    python bench/scale_workers.py --gpu-worker '{"method": ..., "model_path": ..., "batch": ..., ...}'

each print one line ``RESULT {json}`` (bench/scale.py reads the last such line; it also takes these flags).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from labhelpers.deploy import export
from labhelpers.deploy.onnx_infer import GenAIModel, greedy_tokens
from labhelpers.memory import measure
from labhelpers.memory.measure import MB, RssSampler, mapped_file_rss, measure_training, release_free_memory, rss_bytes
from labhelpers.models import shapes
from labhelpers.paths import BASE_MODEL_DIR

#: Notebook 02's settings (TrainConfig defaults) that every measurement shares with the bench's calculator.
BATCH, LORA_R, LORA_DROPOUT = 1, 8, 0.05
NEW_TOKENS = 32
#: The loading peak is sampled this often (seconds): RSS reads are cheap, and loading takes seconds.
LOAD_SAMPLE_S = 1.0


def load1() -> float:
    """The 1-minute load average (nan where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


def _cpu_seconds(t0: os.times_result, t1: os.times_result, children: bool = False) -> float:
    keys = ("user", "system") + (("children_user", "children_system") if children else ())
    return sum(getattr(t1, k) - getattr(t0, k) for k in keys)


# --- training on CPU ----------------------------------------------------------------------------------------

def _file_bytes(model_dir: Path) -> tuple[int, int]:
    """(bytes of the checkpoint's 2-D Linear weights bitsandbytes quantizes, bytes of everything else)."""
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


@contextmanager
def _marks_around_training() -> Iterator[dict]:
    """Note wall and CPU time around measure_training's measure_peak call, and the checkpoint's mapped pages
    at its end: measure_training loads the model, then trains inside measure_peak, so cpu_share covers the
    training steps only (loading waits on the disk and runs partly serial)."""
    marks, original = {}, measure.measure_peak

    def marked(fn, *a, **kw):
        marks["t"], marks["cpu"] = time.perf_counter(), os.times()
        try:
            return original(fn, *a, **kw)
        finally:
            marks["t_end"], marks["cpu_end"] = time.perf_counter(), os.times()
            marks["ckpt"] = mapped_file_rss()  # the model is still alive here: its checkpoint mapping too

    measure.measure_peak = marked
    try:
        yield marks
    finally:
        measure.measure_peak = original


def measure_here(method: str, model_path: str, seq_len: int, steps: int, warmup: int,
                 threads: int | None = None) -> dict:
    """One measurement in this process (the worker runs it in a fresh one). See bench/scale.py's module doc."""
    try:
        import bitsandbytes  # noqa: F401  imported before the baseline, as torch and peft are, as in any notebook
    except ImportError:
        pass
    with _marks_around_training() as marks:
        release_free_memory()
        imports = rss_bytes()
        # Samples the loading peak: the kernel's mark, which measure_training resets after loading, forgets it.
        sampler = RssSampler(LOAD_SAMPLE_S)
        la0, t0, cpu0 = load1(), time.perf_counter(), os.times()
        sampler.start()
        try:
            got = measure_training(method, batch_size=BATCH, seq_len=seq_len, steps=steps, warmup_steps=warmup,
                                   model_path=model_path, lora_r=LORA_R, lora_dropout=LORA_DROPOUT, threads=threads)
        finally:
            sampler.stop()
    wall, cpu = time.perf_counter() - t0, _cpu_seconds(cpu0, os.times())
    train_cpu = _cpu_seconds(marks["cpu"], marks["cpu_end"])
    peak_rss = got["peak_mb"] * MB - imports
    residue = 0.0
    if method == "qlora":
        quantized, other = _file_bytes(Path(model_path))
        residue = min(max(0.0, marks["ckpt"] - other), quantized)
    return {"method": method, "threads": got["threads"], "steps": steps, "sec_per_step": got["sec_per_step"],
            "cpu_share": train_cpu / ((marks["t_end"] - marks["t"]) * got["threads"]), "cpu_s": cpu,
            "peak_rss_mb": peak_rss / MB,
            "ckpt_residue_mb": residue / MB, "peak_mb": (peak_rss - residue) / MB,
            "load_peak_rss_mb": (max(sampler.peak, got["peak_mb"] * MB) - imports) / MB,
            "weights_mb": got["weights_mb"], "trainable_params": got["trainable_params"],
            "imports_rss_mb": imports / MB, "ckpt_mapped_mb": marks["ckpt"] / MB,
            "load_s": marks["t"] - t0, "wall_s": wall, "load_avg_before": la0, "load_avg_after": load1()}


# --- decoding: ORT GenAI int4 vs PyTorch eager -----------------------------------------------------------

def _with_tokenizer(src: Path, folder: Path) -> Path:
    """``folder``: links to the stand-in's files plus the embedded model's tokenizer (ids < every vocab here),
    which the builder and og need next to the weights."""
    folder.mkdir(parents=True)
    for p in src.iterdir():
        (folder / p.name).symlink_to(p.resolve())
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (BASE_MODEL_DIR / name).is_file():
            shutil.copy2(BASE_MODEL_DIR / name, folder / name)
    return folder


def _tokens_per_s(runs: dict, new_tokens: int, repeats: int) -> dict[str, float]:
    """Median tokens/s of each generate function (one warm-up each; alternating, so load that comes and goes
    hits both)."""
    for fn in runs.values():
        fn()
    speeds = {k: [] for k in runs}
    for r in range(repeats):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t = time.perf_counter()
            got = runs[name]()
            dt = time.perf_counter() - t
            assert len(got) == new_tokens, (name, len(got))
            speeds[name].append(new_tokens / dt)
    return {k: statistics.median(v) for k, v in speeds.items()}


def decode_here(model_dir: str, work_dir: str, new_tokens: int = NEW_TOKENS, repeats: int = 3) -> dict:
    """Build the int4 ORT GenAI folder of a stand-in and time greedy decoding against PyTorch eager."""
    la0, t_all, cpu0 = load1(), time.perf_counter(), os.times()
    src, work = Path(model_dir), Path(work_dir)
    with_tok = _with_tokenizer(src, work / "hf")
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
    speed = _tokens_per_s({"pt": lambda: greedy_tokens(pt, tok, prompt, new_tokens, min_new_tokens=new_tokens),
                           "ort": lambda: og_model.generate_tokens(prompt, new_tokens, min_new_tokens=new_tokens)},
                          new_tokens, repeats)
    cpu = _cpu_seconds(cpu0, os.times(), children=True)  # the builder runs as a child process
    return {"new_tokens": new_tokens, "threads": threads, "safetensors_mb": st_mb, "int4_mb": int4_mb,
            "build_s": build_s, "pt_tok_s": speed["pt"], "ort_int4_tok_s": speed["ort"],
            "ort_vs_pt": speed["ort"] / speed["pt"], "wall_s": time.perf_counter() - t_all, "load_avg_before": la0,
            "load_avg_after": load1(), "cpu_s": cpu}


# --- CUDA (prepared for bench/scale_gpu.sh) ----------------------------------------------------------------

def _gpu_model(method: str, model_path: str, dtype: torch.dtype):
    """LoRA on a ``dtype`` base, QLoRA on a CUDA bitsandbytes NF4 base (``dtype`` compute), full with fp32
    weights; on GPU 0."""
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
    return model


def gpu_measure_here(method: str, model_path: str, seq_len: int, steps: int, warmup: int, batch: int) -> dict:
    """One GPU measurement: LoRA on a bf16 base, QLoRA on a CUDA bitsandbytes NF4 base (bf16 compute), full
    fine-tuning with fp32 weights under bf16 autocast (AdamW fp32 state: the calculator's 16 bytes/param).
    Peak = torch.cuda.max_memory_allocated from before loading (tensors only; the CUDA context and the
    caching allocator's slack are not in it: max_memory_reserved is reported beside it)."""
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    torch.cuda.reset_peak_memory_stats()
    base_alloc = torch.cuda.memory_allocated()
    t_load = time.perf_counter()
    model = _gpu_model(method, model_path, dtype)
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


# --- the entry point ---------------------------------------------------------------------------------------

#: Command-line flag -> the measurement it runs (its JSON argument holds the keyword arguments).
WORKERS = {"--worker": measure_here, "--decode-worker": decode_here, "--gpu-worker": gpu_measure_here}


def run_worker(flag: str, payload: str) -> int:
    """Run the measurement ``flag`` names with the keyword arguments in the JSON ``payload``; print its RESULT."""
    print("RESULT " + json.dumps(WORKERS[flag](**json.loads(payload))), flush=True)
    return 0


def add_worker_flags(ap: argparse.ArgumentParser, hidden: bool = False) -> None:
    for flag, fn in WORKERS.items():
        ap.add_argument(flag, metavar="JSON", help=argparse.SUPPRESS if hidden else f"run {fn.__name__}(**JSON)")


def chosen_worker(args: argparse.Namespace) -> tuple[str, str] | None:
    """(flag, JSON) of the worker flag given on the command line, or None."""
    for flag in WORKERS:
        payload = getattr(args, flag.lstrip("-").replace("-", "_"))
        if payload:
            return flag, payload
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_worker_flags(ap)
    chosen = chosen_worker(ap.parse_args(argv))
    if chosen is None:
        ap.error("give one of " + ", ".join(WORKERS))
    return run_worker(*chosen)


if __name__ == "__main__":
    sys.exit(main())
