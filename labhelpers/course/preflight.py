"""Preflight: is this laptop ready for the course? An attendee runs it at the door, in under a minute.

    python -m labhelpers preflight [--json]      (or: make preflight)

Each check prints PASS, WARN or FAIL, and every FAIL (and WARN) says how to fix it. Exit status 0 when
nothing FAILed, 1 otherwise. ``--json`` prints the same report as one JSON object.

The checks are plain functions whose inputs (versions, disk and memory figures, importers, the kernel
resolver) are keyword arguments, so tests can hand them a fake machine. This module imports only the
standard library at the top: it must run, and say what is wrong, where torch or Jupyter are broken.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from labhelpers.constants import GIB
from labhelpers.paths import BASE_MODEL_DIR, REPO_ROOT

MIN_PYTHON = (3, 10)
MIN_DISK_GIB = 3.0          # the venv (~2-3 GB with torch) plus run folders
MIN_MEMORY_GIB = 4.0        # available RAM below this: training notebooks may be killed
GOOD_MEMORY_GIB = 8.0       # below this: runs, but close other programs
TORCH_SECONDS = 1.0         # the sanity op should take far less on any laptop
REINSTALL = "rm -f .venv/.installed && make venv   (workshop: make venv WHEELHOUSE=/path/to/wheelhouse)"

#: (distribution, import name, what needs it). "core": every notebook; the others only some notebooks.
#: Notebook 00 shows this table; the preflight check fails on a missing core library and warns otherwise.
LIBRARIES = [
    ("torch", "torch", "core"), ("transformers", "transformers", "core"), ("peft", "peft", "core"),
    ("datasets", "datasets", "core"), ("bitsandbytes", "bitsandbytes", "QLoRA / 8-bit loading"),
    ("onnxruntime", "onnxruntime", "ONNX export and serving"),
    ("onnxruntime-genai", "onnxruntime_genai", "ORT GenAI serving"), ("optimum", "optimum", "ONNX export"),
]
#: What running the notebooks needs besides the libraries they import (checked as core by preflight).
JUPYTER_LIBRARIES = [
    ("jupyterlab", "jupyterlab", "core"), ("ipykernel", "ipykernel", "core"), ("papermill", "papermill", "core"),
]
PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass
class Result:
    name: str
    status: str  # PASS, WARN or FAIL
    detail: str
    fix: str = ""
    seconds: float = 0.0


def library_versions(libraries=LIBRARIES, import_module=importlib.import_module,
                     version=metadata.version) -> list[dict]:
    """One row per library: its version, or ``MISSING (<error>)`` when importing it fails.

    Importing, not just reading metadata: a broken install (a missing native library) fails here.
    """
    rows = []
    for dist, module, needed_for in libraries:
        try:
            import_module(module)
            rows.append({"library": dist, "version": version(dist), "needed for": needed_for, "missing": False})
        except Exception as err:  # ImportError, PackageNotFoundError, or a native library failing to load
            rows.append({"library": dist, "version": f"MISSING ({type(err).__name__})", "needed for": needed_for,
                         "missing": True})
    return rows


# --- the checks ----------------------------------------------------------------------------------------

def check_python(version_info=None, executable: str | None = None) -> Result:
    vi = tuple(version_info if version_info is not None else sys.version_info)[:3]
    text = ".".join(str(v) for v in vi)
    where = executable or sys.executable
    if vi[:2] < MIN_PYTHON:
        return Result("python", FAIL, f"Python {text} ({where}); the course needs >= 3.10",
                      "install Python 3.10 or newer (3.11 is tested), then: rm -rf .venv && make venv PY=python3.11")
    return Result("python", PASS, f"Python {text} ({where})")


def check_disk(path: Path | str = REPO_ROOT, disk_usage=shutil.disk_usage, min_gib: float = MIN_DISK_GIB) -> Result:
    free_gib = disk_usage(path).free / GIB
    detail = f"{free_gib:.1f} GiB free where the course lives ({path})"
    if free_gib < min_gib:
        return Result("disk", FAIL, f"{detail}; needs >= {min_gib:g} GiB",
                      f"free at least {min_gib - free_gib:.1f} GiB on that disk, or clone the course onto a bigger one "
                      "(runs can go elsewhere too: LAB_RUNS_DIR=/other/disk/runs)")
    return Result("disk", PASS, detail)


def check_memory(total_bytes: int | None = None, available_bytes: int | None = None) -> Result:
    if total_bytes is None or available_bytes is None:
        import psutil

        mem = psutil.virtual_memory()
        total_bytes = mem.total if total_bytes is None else total_bytes
        available_bytes = mem.available if available_bytes is None else available_bytes
    total, available = total_bytes / GIB, available_bytes / GIB
    detail = f"{available:.1f} GiB available of {total:.1f} GiB"
    if available < MIN_MEMORY_GIB:
        fix = ("close other programs (browsers, IDEs, containers) and run this again"
               if total >= MIN_MEMORY_GIB + 1 else "this laptop has too little memory: pair with a neighbour")
        return Result("memory", FAIL, f"{detail}; needs >= {MIN_MEMORY_GIB:g} GiB available", fix)
    if available < GOOD_MEMORY_GIB:
        return Result("memory", WARN, f"{detail}; the course runs, below {GOOD_MEMORY_GIB:g} GiB it may swap",
                      "close other programs before the training notebooks; run one notebook at a time")
    return Result("memory", PASS, detail)


def check_packages(libraries=None, import_module=importlib.import_module, version=metadata.version) -> Result:
    libraries = LIBRARIES + JUPYTER_LIBRARIES if libraries is None else libraries
    rows = library_versions(libraries, import_module, version)
    core = [r["library"] for r in rows if r["missing"] and r["needed for"] == "core"]
    optional = [f"{r['library']} ({r['needed for']})" for r in rows if r["missing"] and r["needed for"] != "core"]
    found = ", ".join(f"{r['library']} {r['version']}" for r in rows if not r["missing"])
    if core:
        return Result("packages", FAIL, f"missing or broken: {', '.join(core)}"
                      + (f"; also optional: {', '.join(optional)}" if optional else ""), f"reinstall: {REINSTALL}")
    if optional:
        return Result("packages", WARN, f"optional missing: {', '.join(optional)}; only those notebooks are affected",
                      "LoRA and full fine-tuning run without them; skip the parts that need them "
                      "(docs/instructor_guide.md), or reinstall: " + REINSTALL)
    return Result("packages", PASS, found)


def _require_bitsandbytes() -> None:
    from labhelpers.train.quantization import require_bitsandbytes

    require_bitsandbytes()


def check_qlora(require=_require_bitsandbytes) -> Result:
    """bitsandbytes can quantize a tensor to 4-bit here (importing it is not enough on some machines)."""
    try:
        require()
    except Exception as err:
        return Result("qlora", WARN, f"4-bit (QLoRA) unavailable: {str(err).split('. Install')[0]}",
                      "LoRA and full fine-tuning run without it. Skip notebook 03, the 4-bit cell of notebook 07 "
                      "section 2, and run notebook 01 with methods = [\"full\", \"lora\", \"ia3\"] "
                      "(docs/instructor_guide.md)")
    return Result("qlora", PASS, "bitsandbytes quantizes to 4-bit NF4 here")


def _resolve_kernel(name: str) -> str:
    from labhelpers.course.runner import kernel_executable

    return kernel_executable(name)


def check_kernel(kernel_name: str = "python3", resolve=_resolve_kernel, executable: str | None = None) -> Result:
    executable = executable or sys.executable
    try:
        python = resolve(kernel_name)
    except Exception as err:  # ConfigError (no such kernel), ImportError (no jupyter_client)
        return Result("kernel", FAIL, f"Jupyter kernel {kernel_name!r}: {type(err).__name__}: {err}",
                      f"install ipykernel into this environment: {REINSTALL}")
    if Path(python).resolve() != Path(executable).resolve():
        return Result("kernel", FAIL, f"kernel {kernel_name!r} runs {python}, not this venv's {executable}",
                      f"a user-level kernelspec overrides the venv's: `jupyter kernelspec list` shows it; "
                      f"remove it with `jupyter kernelspec remove {kernel_name}` (or run notebooks with `make lab`)")
    return Result("kernel", PASS, f"kernel {kernel_name!r} runs {python}")


def _labextension_installed(name: str = "@jupyter-widgets/jupyterlab-manager") -> bool:
    """Whether JupyterLab will find the widgets front-end (what `jupyter labextension list` reads)."""
    from jupyter_core.paths import jupyter_path

    return any((Path(p) / name / "package.json").is_file() for p in jupyter_path("labextensions"))


def check_widgets(version=metadata.version, requires=metadata.requires,
                  labextension_installed=_labextension_installed) -> Result:
    fix = "pip install -c constraints.txt ipywidgets jupyterlab_widgets (in .venv), or: " + REINSTALL
    try:
        ipyw, labw = version("ipywidgets"), version("jupyterlab_widgets")
    except metadata.PackageNotFoundError as err:
        return Result("widgets", FAIL, f"not installed: {err}", fix)
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted = [Requirement(r) for r in (requires("ipywidgets") or []) if "extra ==" not in r]
    spec = next((r.specifier for r in wanted if canonicalize_name(r.name) == "jupyterlab-widgets"), None)
    detail = f"ipywidgets {ipyw}, jupyterlab_widgets {labw}"
    if spec is not None and not spec.contains(labw, prereleases=True):
        return Result("widgets", FAIL, f"{detail}: ipywidgets {ipyw} needs jupyterlab_widgets{spec}; "
                      "progress bars and sliders would show as text", fix)
    if not labextension_installed():
        return Result("widgets", FAIL, f"{detail}, but JupyterLab's widgets extension "
                      "(@jupyter-widgets/jupyterlab-manager) is not installed", "pip install --force-reinstall "
                      f"--no-deps jupyterlab_widgets=={labw} (in .venv); `jupyter labextension list` should show it")
    return Result("widgets", PASS, f"{detail}, front-end extension installed")


def check_model(path: Path | str = BASE_MODEL_DIR) -> Result:
    path = Path(path)
    needed = ("config.json", "model.safetensors", "tokenizer.json")
    missing = [name for name in needed if not (path / name).is_file()]
    if missing:
        return Result("model", FAIL, f"embedded model {path}: missing {', '.join(missing)}",
                      "restore it: git checkout -- data/tiny-llama-base (it is committed), or rebuild: make base-model")
    size_mb = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6
    return Result("model", PASS,
                  f"embedded model {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}"
                  f" ({size_mb:.0f} MB)")


def _torch_op() -> tuple[float, str]:
    """A small matmul and backward whose result is known: (seconds, device note)."""
    import torch

    from labhelpers.memory.hardware import pick_device

    start = time.perf_counter()
    x = torch.ones(256, 256, requires_grad=True)
    y = (x @ torch.ones(256, 256)).sum()
    y.backward()
    total, grad = float(y.detach()), float(x.grad[0, 0])
    if total != 256.0**3 or grad != 256.0:
        raise ArithmeticError(f"wrong result: {total}, gradient {grad} (expected {256.0**3}, 256.0)")
    return time.perf_counter() - start, f"torch {torch.__version__}, device {pick_device()}"


def check_torch(op=_torch_op, limit_s: float = TORCH_SECONDS) -> Result:
    fix = f"reinstall torch: .venv/bin/pip install --force-reinstall --no-deps torch==2.13.0, or {REINSTALL}"
    try:
        seconds, note = op()
    except Exception as err:
        return Result("torch", FAIL, f"a 256x256 matmul + backward failed: {type(err).__name__}: {err}", fix)
    if seconds > limit_s:
        return Result("torch", WARN, f"{note}: the sanity op took {seconds:.2f} s (expected < {limit_s:g} s)",
                      "the CPU is busy or throttled: close other programs, plug in the charger")
    return Result("torch", PASS, f"{note}: matmul + backward correct in {seconds * 1000:.0f} ms")


def _busy() -> list[dict]:
    from labhelpers.memory.hardware import busy_processes

    return busy_processes()


def check_idle(busy=_busy) -> Result:
    """No other heavy process shares the cores: a second one makes every training run several times slower."""
    from labhelpers.memory.hardware import busy_warning

    found = busy()
    warning = busy_warning(found)
    if warning:
        return Result("idle", WARN, warning.split(". ")[0],
                      "wait for those processes or stop them before the training notebooks (and before timing "
                      "anything)")
    return Result("idle", PASS, "no other process is using the CPU")


CHECKS = (check_python, check_disk, check_memory, check_packages, check_qlora, check_kernel, check_widgets,
          check_model, check_torch, check_idle)


def run_checks(checks=CHECKS) -> list[Result]:
    """Every check, in order; a check that crashes is a FAIL of its own, never the end of the run."""
    results = []
    for check in checks:
        name = check.__name__.lstrip("_").removeprefix("check_")
        start = time.perf_counter()
        try:
            result = check()
        except Exception as err:
            result = Result(name, FAIL, f"the check itself failed: {type(err).__name__}: {err}",
                            f"reinstall: {REINSTALL}")
        result.seconds = round(time.perf_counter() - start, 2)
        results.append(result)
    return results


def format_results(results: list[Result]) -> str:
    width = max(len(r.name) for r in results)
    lines = []
    for r in results:
        lines.append(f"{r.status}  {r.name:<{width}}  {r.detail}")
        if r.fix and r.status != PASS:
            lines.append(f"{'':4}  {'':<{width}}  fix: {r.fix}")
    failed = [r.name for r in results if r.status == FAIL]
    warned = [r.name for r in results if r.status == WARN]
    lines.append("")
    lines.append(f"FAIL: {', '.join(failed)} — fix these before the workshop starts." if failed
                 else "Ready" + (f" (warnings: {', '.join(warned)})." if warned else ": every check passed."))
    return "\n".join(lines)


def main(argv: list[str] | None = None, checks=CHECKS) -> int:
    parser = argparse.ArgumentParser(prog="python -m labhelpers preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run_checks(checks)
    ok = not any(r.status == FAIL for r in results)
    if args.json:
        print(json.dumps({"ok": ok, "python": sys.executable, "seconds": round(time.perf_counter() - start, 1),
                          "checks": [asdict(r) for r in results]}, indent=2))
    else:
        print(format_results(results))
        print(f"({time.perf_counter() - start:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
