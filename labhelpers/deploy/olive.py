"""Running Microsoft Olive's CLI and checking that it really produced what it promised.

Olive 0.13.0 needs transformers 5; the course's main environment is on transformers 4.57. So Olive
lives in its own virtual environment, ``.venv-olive`` (``make olive-env``), and the course calls
its ``olive`` program as a subprocess: an argument list, never a shell line.

Olive exits with code 0 after several failures, printing only "No output model produced".
``run_olive`` therefore checks, after every command, that each output the command promises exists
and is not empty, and raises ``OliveError`` with the command, what is missing and the end of
Olive's log otherwise.

What each command writes under ``-o OUT`` (olive-ai 0.13.0, checked on the course's tiny model):

- ``olive finetune``: ``OUT/adapter/`` (``adapter_config.json``, ``adapter_model.safetensors``: a
  PEFT LoRA adapter), ``OUT/model/`` (a copy of the input model) and ``OUT/model_config.json``.
- ``olive auto-opt --use_model_builder``: an ONNX Runtime GenAI folder, ``OUT/model.onnx`` (plus
  ``model.onnx.data`` for bigger models), ``genai_config.json``, the tokenizer files; with
  ``-a ADAPTER`` the LoRA weights become graph inputs and go to ``OUT/adapter_weights.onnx_adapter``
  (int4-quantized like the rest of the model when ``--precision int4``).
- ``olive generate-adapter``: from an ONNX model whose LoRA weights are baked in (e.g.
  ``labhelpers.deploy.export.build_genai(base, out, adapter_dir=...)``), ``OUT/model.onnx`` with the LoRA
  weights as inputs and ``OUT/adapter_weights.onnx_adapter``. On a model without LoRA weights it
  copies the model and writes no adapter; on an ``auto-opt -a`` output (already extracted) it fails.
- ``olive convert-adapters``: one ``.onnx_adapter`` file per PEFT adapter, with tensor names for
  Olive's own exporter's graphs, not the model builder's (see ``convert_adapters_args``).

Olive also writes its cache, ``.olive-cache/``, in the working directory (the CLI has no option
for it); ``run_olive(..., cwd=...)`` chooses that directory.

``olive finetune`` does not seed torch before it creates the LoRA weights (its ``--seed`` reaches the
Trainer, which seeds only afterwards), and torch 2.13 seeds its generator randomly at start-up, so
every run starts from another adapter. ``run_olive(..., torch_seed=N)`` starts Olive's own CLI with
torch seeded first, which makes a run repeatable (same adapter bytes from any folder).
"""

from __future__ import annotations

import ast
import codecs
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labhelpers.data.templates import template_fields
from labhelpers.errors import ConfigError, OliveError
from labhelpers.paths import REPO_ROOT

#: The environment ``make olive-env`` builds (Olive and transformers 5, apart from the main venv).
OLIVE_VENV = REPO_ROOT / ".venv-olive"
#: The Olive release the course's commands were checked with.
OLIVE_VERSION = "0.13.0"
#: How many lines of Olive's log an error shows.
TAIL_LINES = 30
#: Olive's message when a workflow ran but a pass failed or was skipped (its exit code is still 0).
NO_OUTPUT_MESSAGE = "No output model produced"
#: The tiny course model's chat format as an Olive ``--text_template`` over the tone data's columns.
#: Olive does not add special tokens here (``--add_special_tokens`` defaults to False), so the
#: template holds BOS and both EOS tokens; the answer follows ``<|assistant|>`` after a space,
#: so it is trained as " joy", as the chat template writes it.
TONE_TEXT_TEMPLATE = "<s><|user|> {phrase}</s><|assistant|> {tone}</s>"

ADAPTER_FILE = "adapter_weights.onnx_adapter"
#: What ``run_olive(torch_seed=N)`` runs instead of the ``olive`` program: Olive's own entry point, after
#: seeding torch (``python -c CODE N ARGS...``; the seed is an int, checked, and no shell is involved).
SEEDED_START = ("import sys, torch; torch.manual_seed(int(sys.argv.pop(1))); sys.argv[0] = 'olive'; "
                "from olive.cli.launcher import main; sys.exit(main())")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class OliveRun:
    """One finished, checked Olive command."""

    command: list[str]
    seconds: float
    log_tail: str
    outputs: list[Path] = field(default_factory=list)
    log_path: Path | None = None
    args: list[str] = field(default_factory=list)
    torch_seed: int | None = None

    @property
    def text(self) -> str:
        """The Olive command as a copyable shell line (``olive ARGS``; see ``torch_seed``)."""
        return command_text(self.args)


# --- environment -----------------------------------------------------------------------------------

def olive_executable(venv: str | Path | None = None) -> Path:
    """Path of the ``olive`` program in ``.venv-olive`` (or ``venv``); OliveError if it is missing."""
    root = Path(venv) if venv is not None else OLIVE_VENV
    exe = root / ("Scripts/olive.exe" if os.name == "nt" else "bin/olive")
    if not exe.is_file():
        raise OliveError(
            f"Olive's CLI is not installed: {exe} does not exist; run `make olive-env` in {REPO_ROOT} "
            f"(it builds {OLIVE_VENV.name}, with olive-ai {OLIVE_VERSION} and transformers 5, apart from "
            "the course's main environment; a few minutes and about 2 GB).")
    return exe


def olive_env(base: dict | None = None) -> dict[str, str]:
    """Environment for an Olive subprocess: ``base`` (default: this process's, so OMP_NUM_THREADS and
    friends are inherited) with telemetry off, every Hugging Face download off and unbuffered output."""
    env = dict(os.environ if base is None else base)
    # The main venv's Python path must not leak into the other environment.
    for key in ("PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    env.update({
        "OLIVE_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",  # so the log streams while Olive runs
    })
    return env


def command_text(args: Sequence[str | os.PathLike], program: str = "olive") -> str:
    """``olive ARGS`` as one line that can be pasted into a shell (quoted where needed)."""
    return shlex.join([program, *_str_args(args)])


# --- running ---------------------------------------------------------------------------------------

def run_olive(args: Sequence[str | os.PathLike], expect: Sequence[str | os.PathLike],
              log_path: str | Path | None = None, timeout: float = 1800, cwd: str | Path | None = None,
              stream: bool = True, venv: str | Path | None = None, torch_seed: int | None = None) -> OliveRun:
    """Run ``olive *args``, then check that every path in ``expect`` exists and is not empty.

    ``stream`` prints Olive's output while it runs; ``log_path`` keeps all of it in a file.
    ``cwd`` is where Olive runs (and writes ``.olive-cache/``); relative paths in ``args`` and
    ``expect`` are relative to it. ``torch_seed`` seeds torch in Olive's process before Olive starts
    (``olive finetune`` is not repeatable without it; see the module's docstring). Raises OliveError
    on a non-zero exit, a time-out, or a missing or empty output, with the command and the last
    lines of Olive's log.
    """
    args = _str_args(args)
    if not expect:
        raise ConfigError("run_olive: name at least one output the command must produce (expect=[...]); "
                          "Olive can exit 0 without producing anything")
    if torch_seed is not None and (isinstance(torch_seed, bool) or not isinstance(torch_seed, int) or torch_seed < 0):
        raise ConfigError(f"run_olive: torch_seed={torch_seed!r} must be a whole number >= 0 (or None: unseeded)")
    exe = olive_executable(venv)
    cwd_path = Path(cwd) if cwd is not None else Path.cwd()
    wanted = [p if p.is_absolute() else cwd_path / p for p in map(Path, map(os.fspath, expect))]
    if torch_seed is None:
        command = [str(exe), *args]
    else:  # the venv's python, beside its olive program
        command = [str(exe.with_name("python.exe" if os.name == "nt" else "python")), "-c", SEEDED_START,
                   str(torch_seed), *args]
    shown = command_text(args) + ("" if torch_seed is None else f" (started with torch seeded: {torch_seed})")
    log_file = None
    if log_path is not None:
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("w", encoding="utf-8")
    chunks: list[str] = []
    start = time.monotonic()
    try:
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=olive_env(), cwd=cwd_path,
                                    start_new_session=(os.name != "nt"))
        except OSError as err:
            raise OliveError(f"could not start {exe}: {err}. Rebuild the environment with "
                             "`make olive-env`") from err
        pump = threading.Thread(target=_pump, args=(proc.stdout, chunks, log_file, stream), daemon=True)
        pump.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            pump.join(10)
            raise OliveError(f"olive ran over its time limit of {timeout:.0f} s and was stopped: {shown}\n"
                             + _tail_block(chunks, log_path)) from None
        except BaseException:  # KeyboardInterrupt in a notebook: do not leave Olive running
            _kill(proc)
            raise
        pump.join()
    finally:
        if log_file is not None:
            log_file.close()
    seconds = time.monotonic() - start
    missing = [f"{p} ({why})" for p in wanted if (why := _output_problem(p))]
    if code != 0 or missing:
        parts = [f"olive failed after {seconds:.0f} s (exit code {code}"
                 + (", but outputs are missing" if code == 0 else "") + f"): {shown}"]
        if missing:
            parts.append("Missing outputs:\n" + "\n".join(f"  - {m}" for m in missing))
        if NO_OUTPUT_MESSAGE in "".join(chunks):
            parts.append(f"Olive printed {NO_OUTPUT_MESSAGE!r}: a pass failed or was skipped; "
                         "the reason is in the lines before it")
        parts.append(_tail_block(chunks, log_path))
        raise OliveError("\n".join(parts))
    return OliveRun(command=command, seconds=seconds, log_tail=log_tail("".join(chunks)), outputs=wanted,
                    log_path=log_path, args=args, torch_seed=torch_seed)


def log_tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of a log; progress bars (``\\r`` rewrites) and colours removed."""
    parts = [p.rstrip() for p in re.split(r"[\r\n]+", _ANSI.sub("", text)) if p.strip()]
    return "\n".join(parts[-lines:])


def _tail_block(chunks: list[str], log_path: Path | None) -> str:
    where = f" (whole log: {log_path})" if log_path is not None else ""
    tail = log_tail("".join(chunks))
    return f"Last {TAIL_LINES} lines of Olive's log{where}:\n{tail or '(Olive printed nothing)'}"


def _pump(pipe, chunks: list[str], log_file, stream: bool) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        data = pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536)
        text = decoder.decode(data, final=not data)
        if text:
            chunks.append(text)
            if log_file is not None:
                log_file.write(text)
                log_file.flush()
            if stream:
                sys.stdout.write(text)
                sys.stdout.flush()
        if not data:
            break


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        if os.name != "nt":
            os.killpg(proc.pid, signal.SIGKILL)  # Olive's own child processes too
        else:
            proc.kill()
    except OSError:
        pass
    proc.wait()


def _output_problem(path: Path) -> str | None:
    if not path.exists():
        return "does not exist"
    if path.is_dir():
        if not any(f.is_file() and f.stat().st_size > 0 for f in path.rglob("*")):
            return "an empty folder"
    elif path.stat().st_size == 0:
        return "an empty file"
    return None


def _str_args(args) -> list[str]:
    if isinstance(args, (str, bytes, os.PathLike)):
        raise ConfigError(f"pass Olive's arguments as a list, e.g. ['finetune', '-m', 'model', ...], "
                          f"not one string ({args!r}); no shell is used")
    return [os.fspath(a) for a in args]


# --- the course's commands -------------------------------------------------------------------------

def finetune_args(model: str | Path, data_files: str | Path | Sequence[str | Path], text_template: str,
                  method: str = "lora", max_steps: int = 60, out: str | Path = "olive-finetuned", *,
                  learning_rate: float | None = None, lora_r: int = 16, lora_alpha: int = 32,
                  target_modules: Sequence[str] | None = None, torch_dtype: str = "float32",
                  max_seq_len: int = 128, max_samples: int | None = None, data_name: str = "json",
                  extra: Sequence[str] = ()) -> list[str]:
    """Arguments of ``olive finetune`` (LoRA or QLoRA on local JSON/JSONL data with a text template).

    Olive's own defaults are made explicit where they hurt on a CPU: ``--torch_dtype bfloat16`` and
    ``--max_seq_len 1024`` make one step of the tiny model take minutes instead of a second, and
    ``--lora_r 64``/``--lora_alpha 16`` is a large, weakly scaled adapter. Olive packs the rows
    (joined, cut into ``max_seq_len``-token pieces, at most ``max_samples`` pieces: 256 by default)
    and trains on every token, prompt included. ``learning_rate`` and ``extra`` go to
    ``transformers.TrainingArguments`` (e.g. ``["--logging_steps", "10"]``).
    """
    if method not in ("lora", "qlora"):
        raise ConfigError(f"method={method!r}: olive finetune knows 'lora' and 'qlora'")
    if int(max_steps) < 1:
        raise ConfigError(f"max_steps={max_steps} must be at least 1")
    if target_modules and method == "qlora":
        raise ConfigError("target_modules: olive finetune ignores --target_modules for qlora (it adapts "
                          "every linear layer); leave it None")
    fields = template_fields(text_template)
    if not fields:
        raise ConfigError(f"text_template {text_template!r} has no {{column}} placeholder")
    files = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    if not files:
        raise ConfigError("data_files: name at least one file")
    for f in files:
        _check_data_file(Path(f), fields)
    args = ["finetune", "-m", os.fspath(model), "-d", data_name,
            "--data_files", ",".join(os.fspath(f) for f in files), "--text_template", text_template,
            "--method", method, "--torch_dtype", torch_dtype, "--max_seq_len", str(int(max_seq_len)),
            "--lora_r", str(int(lora_r)), "--lora_alpha", str(int(lora_alpha))]
    if target_modules:
        args += ["--target_modules", ",".join(target_modules)]
    if max_samples is not None:
        args += ["--max_samples", str(int(max_samples))]
    args += ["-o", os.fspath(out), "--max_steps", str(int(max_steps))]
    if learning_rate is not None:
        args += ["--learning_rate", repr(float(learning_rate))]
    return args + _str_args(extra)


def finetune_outputs(out: str | Path) -> list[Path]:
    """What ``olive finetune -o OUT`` writes: the PEFT adapter and the copy of the input model."""
    out = Path(out)
    return [out / "adapter" / "adapter_config.json", out / "adapter" / "adapter_model.safetensors",
            out / "model" / "config.json"]


def auto_opt_args(model: str | Path, out: str | Path, adapter: str | Path | None = None,
                  precision: str = "int4", device: str = "cpu", provider: str = "CPUExecutionProvider",
                  extra: Sequence[str] = ()) -> list[str]:
    """Arguments of ``olive auto-opt`` through the ONNX Runtime GenAI model builder.

    ``--use_model_builder`` is the path that works with olive-ai 0.13.0 and transformers 5 (the
    default exporters fail on this stack); it needs onnxruntime-genai 0.14.1 in ``.venv-olive``.
    ``adapter``: a PEFT adapter folder (``olive finetune``'s ``OUT/adapter``) whose weights become
    a separate ``.onnx_adapter`` file.
    """
    args = ["auto-opt", "-m", os.fspath(model), "-o", os.fspath(out), "--device", device,
            "--provider", provider, "--precision", precision, "--use_model_builder"]
    if adapter is not None:
        args += ["-a", os.fspath(adapter)]
    return args + _str_args(extra)


def auto_opt_outputs(out: str | Path, adapter: bool = False) -> list[Path]:
    """What ``olive auto-opt --use_model_builder -o OUT`` writes (and the adapter file with ``-a``)."""
    out = Path(out)
    return [out / "model.onnx", out / "genai_config.json", out / "tokenizer.json"] + (
        [out / ADAPTER_FILE] if adapter else [])


def generate_adapter_args(model: str | Path, out: str | Path, adapter_format: str = "onnx_adapter",
                          extra: Sequence[str] = ()) -> list[str]:
    """Arguments of ``olive generate-adapter``: one ONNX model with LoRA weights baked in → the model with
    those weights as inputs plus an adapter file. (It takes no base model or adapter list.)"""
    return ["generate-adapter", "-m", os.fspath(model), "-o", os.fspath(out),
            "--adapter_format", adapter_format] + _str_args(extra)


def generate_adapter_outputs(out: str | Path) -> list[Path]:
    """What ``olive generate-adapter -o OUT`` writes (default ``onnx_adapter`` format)."""
    out = Path(out)
    return [out / "model.onnx", out / "genai_config.json", out / ADAPTER_FILE]


def convert_adapters_args(adapter: str | Path, out: str | Path, dtype: str = "float32", quantize_int4: bool = False,
                          extra: Sequence[str] = ()) -> list[str]:
    """Arguments of ``olive convert-adapters``: a PEFT LoRA folder → one ``.onnx_adapter`` file ``out``
    (``-o`` names the file itself, not a folder).

    Its tensor names (``...self_attn.q_proj.lora_A.weight``) are those of graphs from Olive's own ONNX
    conversion. A model-builder graph (``auto-opt --use_model_builder``, or ``generate-adapter`` on a
    ``build_genai`` model) names its LoRA inputs ``...attn.q_proj.lora_A.MatMul.weight``, so the file does
    not load there: use ``export.write_onnx_adapter(peft_dir, folder, out)`` for those (tests/deploy/test_olive.py).
    """
    if dtype not in ("float32", "float16"):
        raise ConfigError(f"dtype={dtype!r}: olive convert-adapters writes float32 or float16")
    if not os.fspath(out).endswith(".onnx_adapter"):
        raise ConfigError(f"out={os.fspath(out)!r}: name the adapter file, ending in .onnx_adapter")
    args = ["convert-adapters", "-a", os.fspath(adapter), "-o", os.fspath(out), "--dtype", dtype]
    return args + (["--quantize_int4"] if quantize_int4 else []) + _str_args(extra)


_LOG_DICT = re.compile(r"\{'(?:loss|train_runtime|eval_loss)'[^{}]*\}")


def training_log(text: str) -> list[dict]:
    """The ``{'loss': ..., 'epoch': ...}`` records ``olive finetune`` prints (transformers' log lines),
    in order, with numbers as floats; the last one holds ``train_runtime`` and the mean ``train_loss``."""

    records = []
    for match in _LOG_DICT.finditer(_ANSI.sub("", text)):
        try:
            raw = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            continue  # a record cut by a progress bar redraw
        record = {}
        for key, value in raw.items():
            try:
                record[key] = float(value)
            except (TypeError, ValueError):
                record[key] = value
        records.append(record)
    return records


def packed_samples(max_steps: int, batch_size: int, epochs: float, accumulation: int = 1) -> int:
    """How many training samples (packed pieces) a run had: samples seen / epochs, from Olive's log."""
    if epochs <= 0:
        raise ConfigError(f"epochs={epochs} must be positive (the last 'epoch' figure of the training log)")
    return round(max_steps * batch_size * accumulation / epochs)


def environment_versions(packages: Sequence[str] = ("olive-ai", "transformers", "torch", "peft",
                                                    "onnxruntime-genai", "onnxruntime"),
                         venv: str | Path | None = None) -> dict[str, str | None]:
    """Installed versions of ``packages`` in Olive's environment (None where one is missing)."""
    exe = olive_executable(venv)
    python = exe.with_name("python.exe" if os.name == "nt" else "python")
    code = ("import json, sys\nfrom importlib.metadata import version, PackageNotFoundError\n"
            "def v(p):\n    try:\n        return version(p)\n    except PackageNotFoundError:\n        return None\n"
            "print(json.dumps({p: v(p) for p in sys.argv[1:]}))")
    res = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True,
                         env=olive_env(), timeout=120)
    if res.returncode != 0:
        raise OliveError(f"{python} could not report its packages: {log_tail(res.stderr, 10)}. "
                         "Rebuild the environment with `make olive-env`")
    return json.loads(res.stdout)


def _check_data_file(path: Path, fields: list[str]) -> None:
    """A local JSON Lines file must exist and have the template's columns (checked on its first row)."""
    if not path.is_file():
        raise ConfigError(f"data file {path} not found (olive finetune would fail only after ~20 s of start-up)")
    if path.suffix != ".jsonl":
        return
    with path.open(encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), None)
    if first is None:
        raise ConfigError(f"data file {path} is empty")
    try:
        row = json.loads(first)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:1 is not JSON ({err.msg})") from err
    unknown = [f for f in fields if f not in row]
    if unknown:
        raise ConfigError(f"text_template field(s) {unknown} are not columns of {path} (its columns: "
                          f"{sorted(row)}); rename the placeholder or the column")
