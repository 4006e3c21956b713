"""Measure what a piece of work costs on this machine: peak memory (RSS) and wall time.

What is measured, and its noise
-------------------------------
``measure_peak(fn)`` reports the growth of the process's **resident set size** (RSS: the RAM pages the
operating system has given the process) above what it held just before ``fn`` ran, at its highest point.

- On Linux the peak is exact, not sampled: writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's
  high-water mark (``VmHWM`` in ``/proc/self/status``) to the current RSS, and after ``fn`` returns
  ``VmHWM`` holds the highest RSS reached in between. Elsewhere (macOS, Windows, or where that file is not
  writable) a background thread (``RssSampler``) reads RSS every ``interval`` seconds and can miss
  short peaks.
- Before the baseline we run the garbage collector and ask glibc's allocator to hand freed memory back to
  the OS (``malloc_trim``), so memory freed by earlier work is not silently reused and hidden.
- RSS counts what the allocator took from the OS, not the bytes of live tensors. glibc by default keeps
  freed blocks of up to 32 MB for reuse, which can double the peak over the live bytes; call
  ``fix_malloc_thresholds()`` first (the subprocess helper does it through the environment) and RSS
  follows live memory. Rounding and fragmentation still add a few MB, and memory another thread
  allocates meanwhile counts too: treat differences below ~5 MB as noise. Exact tensor bytes: see
  tests/memory/test_estimate.py (saved-tensor hooks).
- What the estimate leaves out shows up here: the backward pass's temporary buffers (e.g. the gradient
  of the logits) put the measured peak 12-23 % above ``labhelpers.memory.estimate``'s total on the embedded
  model at batch 16 x 256 tokens (tests/memory/test_estimate_measured.py).

``measure_training`` trains a model for a few steps on synthetic token batches and reports peak RSS growth
and seconds per step; ``measure_training_subprocess`` runs it in a fresh Python process, the cleanest
baseline (nothing freed earlier can hide a peak). The tests and ``bench/methods.py`` use the latter.
The pieces (``rss_bytes``, ``status_bytes``, ``reset_peak_rss``, ``RssSampler``, ``mapped_file_rss``) are
public for measurements of their own, as ``bench/scale_workers.py`` makes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from labhelpers.checks import check_choice
from labhelpers.constants import TRAIN_METHODS
from labhelpers.errors import ConfigError
from labhelpers.paths import BASE_MODEL_DIR, REPO_ROOT

MB = 1e6
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


@dataclass
class PeakMemory:
    """Result of measure_peak: bytes of RSS before, at the peak, and the growth; plus seconds."""

    baseline_bytes: int
    peak_bytes: int
    seconds: float
    how: str  # "VmHWM" (exact kernel high-water mark) or "sampled every N ms"

    @property
    def growth_bytes(self) -> int:
        return max(0, self.peak_bytes - self.baseline_bytes)

    @property
    def growth_mb(self) -> float:
        return self.growth_bytes / MB

    def __str__(self) -> str:
        return (f"peak RSS {self.peak_bytes / MB:.1f} MB, +{self.growth_mb:.1f} MB over the "
                f"{self.baseline_bytes / MB:.1f} MB before ({self.how}); {self.seconds:.2f} s")


def rss_bytes() -> int:
    """This process's resident set size now, in bytes (on Linux the same figure as ``VmRSS``)."""
    return psutil.Process().memory_info().rss


def status_bytes(field: str) -> int | None:
    """A kB field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``, ...) in bytes; None where there is none."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux >= 4.0); False where impossible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return status_bytes("VmHWM") is not None


def mapped_file_rss(suffix: str = ".safetensors") -> int:
    """Resident bytes of this process's mappings of files whose names end in ``suffix`` (0 where unreadable).

    Read from ``/proc/self/smaps``, which walks every mapping under the memory-map lock (that allocations
    need too): read it once at a chosen moment, never in a sampling loop.
    """
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


def release_free_memory() -> None:
    """Collect garbage and return the allocator's free pages to the OS (glibc only; a no-op elsewhere)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


#: glibc mallopt parameters: fixed thresholds switch off its dynamic ones (see fix_malloc_thresholds).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 65536


def fix_malloc_thresholds() -> bool:
    """Make RSS follow live memory (glibc only; returns False elsewhere).

    glibc keeps freed blocks below a threshold that grows with the largest block freed so far (up to
    32 MB) and reuses them, so without this its caching policy, not the tensors, decides peak RSS (up to
    2x the live bytes at batch 16 x 256 tokens here). With fixed thresholds every block of 64 KiB or more
    is its own mapping, returned to the OS when the tensor is freed. Costs a little speed; process-wide.
    The environment variables MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ do the same at start-up.
    """
    name = ctypes.util.find_library("c")
    if not (name and sys.platform.startswith("linux")):
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 0))
    except (OSError, AttributeError):
        return False


class RssSampler(threading.Thread):
    """A background thread that reads RSS every ``interval`` seconds; ``peak`` is the highest read so far.

    For where the kernel's exact mark cannot serve: not on Linux, or reset in between (bench/scale.py
    samples the loading peak that measure_training's own reset forgets). ``stop()`` ends it and returns the
    peak, including one last read. Short peaks between two reads are missed.
    """

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_event = interval, rss_bytes(), threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, rss_bytes())


def measure_peak(fn, *args, interval: float = 0.005, force_sampling: bool = False, **kwargs):
    """Run ``fn(*args, **kwargs)``; return ``(result, PeakMemory)`` (see the module doc for what it means)."""
    if not callable(fn):
        raise ConfigError(f"fn={fn!r} must be callable (a function to run and measure)")
    if not (isinstance(interval, (int, float)) and interval > 0):
        raise ConfigError(f"interval={interval!r} must be a positive number of seconds, e.g. 0.005")
    release_free_memory()
    baseline = rss_bytes()
    exact = not force_sampling and reset_peak_rss()
    sampler = None if exact else RssSampler(interval)
    if sampler:
        sampler.start()
    t0 = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
    finally:
        seconds = time.perf_counter() - t0
        peak = status_bytes("VmHWM") if exact else sampler.stop()
    how = "VmHWM" if exact else f"sampled every {interval * 1000:g} ms"
    return result, PeakMemory(baseline, max(peak, baseline), seconds, how)


# --- training measurements ---------------------------------------------------------------------------------

def _check_training_args(method, batch_size, seq_len, steps, warmup_steps):
    check_choice("method", method, TRAIN_METHODS)
    for name, value, low in (("batch_size", batch_size, 1), ("seq_len", seq_len, 1), ("steps", steps, 1),
                             ("warmup_steps", warmup_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name}={value!r} must be an integer >= {low}")


def build_for_method(method: str, model_path: str | Path | None = None, lora_r: int = 8, lora_alpha: float = 16,
                     lora_dropout: float = 0.05):
    """The embedded model (or ``model_path``) set up for ``method``: all weights trainable (full), LoRA on
    all linear layers (lora), or LoRA on a 4-bit NF4 double-quantized base (qlora, fp32 compute)."""

    path = str(model_path or BASE_MODEL_DIR)
    if method == "qlora":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.float32)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=torch.float32)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if method in ("lora", "qlora"):
        model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    return model


def measure_training(method: str, batch_size: int = 16, seq_len: int = 256, steps: int = 3, warmup_steps: int = 1,
                     model_path: str | Path | None = None, lora_r: int = 8, lora_dropout: float = 0.05,
                     threads: int | None = None) -> dict:
    """Train ``steps`` AdamW steps on random full-length token batches; measure peak RSS and s/step.

    The baseline is taken after the model is loaded, so ``peak_growth_mb`` is what training adds on top
    of the weights: gradients, optimizer state, activations (and allocator overhead). ``weights_mb`` is the
    bytes of the model's parameters and buffers (``get_memory_footprint()``). Warm-up steps run first
    (outside the timing, inside the peak: the optimizer state is created in step 1).
    """
    _check_training_args(method, batch_size, seq_len, steps, warmup_steps)

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_for_method(method, model_path, lora_r=lora_r, lora_dropout=lora_dropout)
    model.train()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(3, vocab, (batch_size, seq_len), generator=g) for _ in range(2)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    times: list[float] = []

    def step(x):
        loss = model(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach().item()

    def run():
        for k in range(warmup_steps + steps):
            t0 = time.perf_counter()
            step(batches[k % 2])
            if k >= warmup_steps:
                times.append(time.perf_counter() - t0)

    _, peak = measure_peak(run)
    trainable = sum(p.numel() for p in params)
    return {"method": method, "batch_size": batch_size, "seq_len": seq_len, "steps": steps,
            "weights_mb": model.get_memory_footprint() / MB, "peak_growth_mb": peak.growth_mb,
            "baseline_mb": peak.baseline_bytes / MB, "peak_mb": peak.peak_bytes / MB,
            "sec_per_step": sorted(times)[len(times) // 2], "trainable_params": trainable,
            "threads": torch.get_num_threads(), "how": peak.how}


def measure_training_subprocess(method: str, timeout: float = 300, **kwargs) -> dict:
    """measure_training in a fresh Python process (clean memory baseline); returns its dict."""
    _check_training_args(method, kwargs.get("batch_size", 16), kwargs.get("seq_len", 256), kwargs.get("steps", 3),
                         kwargs.get("warmup_steps", 1))
    code = ("import json, sys; from labhelpers.memory.measure import measure_training; "
            "print('RESULT ' + json.dumps(measure_training(**json.loads(sys.argv[1]))))")
    args = json.dumps({"method": method, **{k: (str(v) if isinstance(v, Path) else v) for k, v in kwargs.items()}})
    # Same effect as fix_malloc_thresholds(), from the first allocation on.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD), MALLOC_TRIM_THRESHOLD_="0")
    proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"measuring {method} in a subprocess failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])
