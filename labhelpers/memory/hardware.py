"""What this machine can do: device, memory, bf16 support, and the dtype to train in."""

from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import torch

from labhelpers.constants import GIB

CPUINFO = Path("/proc/cpuinfo")
#: CPU flags that mean bf16 math runs in hardware (AVX-512 BF16 or AMX); without them PyTorch
#: emulates bf16 and training is ~10x slower than fp32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_text() -> str:
    """/proc/cpuinfo, or "" where it does not exist (macOS, Windows)."""
    try:
        return CPUINFO.read_text(errors="replace")
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty if unknown)."""
    for line in _cpuinfo_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_name() -> str:
    """A readable CPU model name."""
    for line in _cpuinfo_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_bf16_supported() -> bool:
    """True only if the CPU has bf16 hardware (AVX512_BF16 or AMX)."""
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device() -> str:
    """"cuda" if a CUDA GPU is visible, else "mps" (Apple GPU), else "cpu"."""
    if torch.cuda.is_available():
        return "cuda"
    if _mps_available():
        return "mps"
    return "cpu"


def bf16_supported(device: str | torch.device | None = None) -> bool:
    """Whether bf16 runs in hardware on ``device`` (default: pick_device())."""
    kind = torch.device(device).type if device is not None else pick_device()
    if kind == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if kind == "cpu":
        return cpu_bf16_supported()
    return False


def pick_dtype(device: str | torch.device | None = None) -> torch.dtype:
    """The training dtype for ``device``: the fastest one that runs in hardware.

    CPU without bf16 hardware → float32 (emulated bf16 is ~10x slower); CPU with it → bfloat16;
    CUDA → bfloat16 if supported, else float16; MPS → float32 (its half-precision training is unreliable).
    """
    kind = torch.device(device).type if device is not None else pick_device()
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "cpu":
        return torch.bfloat16 if cpu_bf16_supported() else torch.float32
    return torch.float32


@contextmanager
def mixed_precision_env(dtype: torch.dtype):
    """Build a Trainer inside this block to train in ``dtype`` whatever trained before in the process.

    ``TrainingArguments(bf16=True)`` leaves ``ACCELERATE_MIXED_PRECISION=bf16`` in ``os.environ``, and every later
    Trainer built with bf16 off then trains under bf16 autocast anyway (transformers 4.57: its Accelerator reads
    the variable). The block sets it from ``dtype`` and puts the old value back.
    """
    value = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "no")
    before = os.environ.get("ACCELERATE_MIXED_PRECISION")
    os.environ["ACCELERATE_MIXED_PRECISION"] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ACCELERATE_MIXED_PRECISION", None)
        else:
            os.environ["ACCELERATE_MIXED_PRECISION"] = before


def pick_attention(device: str | torch.device | None = None) -> str:
    """The ``attn_implementation`` to train with on ``device``: ``"eager"`` on a CPU, else ``"sdpa"``.

    On a CPU, for the course's short sequences, PyTorch's fused attention (sdpa, transformers' default) has
    a slow backward pass: eager attention made a SmolLM2 LoRA step about 25 % shorter
    (bench/train_efficiency.py). On a GPU, sdpa's fused kernels are the faster ones.
    """
    kind = torch.device(device).type if device is not None else pick_device()
    return "eager" if kind == "cpu" else "sdpa"


def hardware_report() -> dict:
    """A plain dict describing this machine (safe to json.dump)."""
    device = pick_device()
    mem = psutil.virtual_memory()
    report = {
        "device": device,
        "device_name": cpu_name(),
        "cpu_name": cpu_name(),
        # Cores this process may use (cgroups/affinity), which is what training gets.
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "total_memory_gib": round(mem.total / GIB, 2),
        "available_memory_gib": round(mem.available / GIB, 2),
        "gpu_memory_total_gib": None,
        "gpu_memory_free_gib": None,
        "bf16_supported": bf16_supported(device),
        "dtype": str(pick_dtype(device)).replace("torch.", ""),
        "torch_version": torch.__version__,
    }
    if device == "cuda":
        report["device_name"] = torch.cuda.get_device_name(0)
        free, total = torch.cuda.mem_get_info(0)
        report["gpu_memory_total_gib"] = round(total / GIB, 2)
        report["gpu_memory_free_gib"] = round(free / GIB, 2)
    elif device == "mps":
        report["device_name"] = f"Apple GPU (MPS) on {platform.machine()}"
    return report


def format_report(report: dict) -> str:
    """A few human-readable lines for the top of a notebook."""
    lines = [
        f"Device: {report['device']} ({report['device_name']})",
        f"CPU: {report['cpu_count']} cores; RAM {report['total_memory_gib']:.1f} GiB total, "
        f"{report['available_memory_gib']:.1f} GiB available",
    ]
    if report.get("gpu_memory_total_gib") is not None:
        lines.append(
            f"GPU memory: {report['gpu_memory_total_gib']:.1f} GiB total, "
            f"{report['gpu_memory_free_gib']:.1f} GiB free"
        )
    bf16 = "yes" if report["bf16_supported"] else "no (bf16 would be emulated, ~10x slower)"
    lines.append(f"bf16 in hardware: {bf16} → training dtype {report['dtype']}")
    lines.append(f"torch {report['torch_version']}")
    return "\n".join(lines)


def available_memory_gib() -> tuple[float, str]:
    """(GiB available, where): free GPU memory if CUDA is visible, else the RAM psutil reports available."""
    try:
        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info(0)
            return free / GIB, f"free GPU memory ({torch.cuda.get_device_name(0)})"
    except Exception:  # broken CUDA: the RAM figure still helps
        pass
    return psutil.virtual_memory().available / GIB, "available RAM"


#: A process using this much of one core or more is "heavy": on 2 cores a second one slows torch several-fold.
BUSY_PERCENT = 50.0


def busy_processes(sample_s: float = 0.5, min_percent: float = BUSY_PERCENT) -> list[dict]:
    """Other processes using at least ``min_percent`` % of a core over ``sample_s`` seconds, busiest first:
    ``[{"pid", "name", "cpu_percent"}]``. This process and its children (a notebook's kernel) are not counted."""
    mine = {os.getpid()} | {c.pid for c in psutil.Process().children(recursive=True)}
    watched = []
    for proc in psutil.process_iter(["pid", "name"]):
        if proc.pid in mine:
            continue
        try:
            proc.cpu_percent(None)  # the first call starts the measurement window
            watched.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    time.sleep(sample_s)
    busy = []
    for proc in watched:
        try:
            pct = proc.cpu_percent(None)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if pct >= min_percent:
            busy.append({"pid": proc.pid, "name": proc.info["name"], "cpu_percent": round(pct)})
    return sorted(busy, key=lambda b: -b["cpu_percent"])


def busy_warning(busy: list[dict], cores: int | None = None) -> str | None:
    """One line saying the machine is already busy (and with what), or None when it is idle."""
    if not busy:
        return None
    cores = cores or os.cpu_count() or 1
    who = ", ".join(f"{b['name']} (pid {b['pid']}, {b['cpu_percent']} %)" for b in busy[:3])
    return (f"this machine is already busy: {who} on {cores} core(s). Training and timings will be several times "
            "slower (one heavy process beside a 2-core run slowed a LoRA step about 10x); wait for it or stop it")
