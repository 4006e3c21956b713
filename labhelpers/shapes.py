"""The real presets' architectures, random-weight stand-ins of them, and what this machine can do with each.

``PRESET_CONFIGS`` holds, for each real preset of ``labhelpers.models.PRESETS``, the facts of its public
``config.json`` on the hub that decide its size and speed (layers, hidden size, attention and KV heads,
MLP width, vocabulary, tied embeddings, RoPE base, context length, architecture) and its exact parameter
count. ``labhelpers.memory`` reads its shapes from here: one source of truth.

``build_stand_in(preset)`` builds a model of that architecture with **random weights** through
transformers' own config class (``LlamaConfig``, ``Qwen2Config``, ``Phi3Config``) and
``AutoModelForCausalLM.from_config``. It has the real model's tensors, so it costs the same memory and
time per step, and it needs no download, licence or tokenizer; it produces no meaningful text. Saved
folders say so twice: a ``STAND_IN.md`` file and a ``lab_stand_in`` field in ``config.json``.
``random_batch`` makes tokenizer-free inputs for it.

``advice(machine, table)`` answers "what can my machine do": for each preset and method (lora, qlora,
full) whether it fits (the memory calculator, ``labhelpers.fitcheck``) and roughly how long notebook 02
would take, from the stand-in timings measured by ``bench/scale.py`` (``bench/results/scale_*.csv``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .errors import ConfigError

#: Public config.json facts of each real preset (hub id in labhelpers.models.PRESETS). ``n_params`` is the
#: exact count of the built model (tied embeddings counted once); tests/test_shapes.py checks it.
#: Phi-3.5 fuses q/k/v into ``qkv_proj`` and gate/up into ``gate_up_proj``; Qwen2.5 has q/k/v biases
#: (Qwen2Config always builds them). Phi-3.5's "longrope" scaling (two lists of 48 factors) is left out
#: of the stand-in: it changes neither a parameter nor the cost per token at the course's lengths.
PRESET_CONFIGS: dict[str, dict] = {
    "smollm2-135m": {
        "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "model_type": "llama", "n_params": 134_515_008,
        "num_hidden_layers": 30, "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
        "head_dim": 64, "intermediate_size": 1536, "vocab_size": 49152, "tie_word_embeddings": True,
        "rope_theta": 100000.0, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
        "attention_bias": False, "fused_projections": False, "bos_token_id": 1, "eos_token_id": 2,
    },
    "qwen2.5-0.5b": {
        "hub_id": "Qwen/Qwen2.5-0.5B-Instruct", "model_type": "qwen2", "n_params": 494_032_768,
        "num_hidden_layers": 24, "hidden_size": 896, "num_attention_heads": 14, "num_key_value_heads": 2,
        "head_dim": 64, "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True,
        "rope_theta": 1000000.0, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
        "attention_bias": True, "fused_projections": False, "bos_token_id": 151643, "eos_token_id": 151645,
    },
    "llama-3.2-1b": {
        "hub_id": "meta-llama/Llama-3.2-1B-Instruct", "model_type": "llama", "n_params": 1_235_814_400,
        "num_hidden_layers": 16, "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 64, "intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": True,
        "rope_theta": 500000.0, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
        "attention_bias": False, "fused_projections": False, "bos_token_id": 128000, "eos_token_id": 128009,
    },
    "phi-3.5-mini": {
        "hub_id": "microsoft/Phi-3.5-mini-instruct", "model_type": "phi3", "n_params": 3_821_079_552,
        "num_hidden_layers": 32, "hidden_size": 3072, "num_attention_heads": 32, "num_key_value_heads": 32,
        "head_dim": 96, "intermediate_size": 8192, "vocab_size": 32064, "tie_word_embeddings": False,
        "rope_theta": 10000.0, "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "attention_bias": False, "fused_projections": True,
        "bos_token_id": 1, "eos_token_id": 32000,
    },
}
#: What the config.json of a saved stand-in says about itself (and STAND_IN.md at length).
STAND_IN_LABEL = ("TIMING STAND-IN: random weights in the shape of {hub_id}; it costs the same memory and time "
                  "per step but produces no meaningful text. Not the real model.")
#: Keys of PRESET_CONFIGS that are ours, not transformers config arguments.
_OWN_KEYS = ("hub_id", "model_type", "n_params", "fused_projections")


def preset_names() -> list[str]:
    return list(PRESET_CONFIGS)


def architecture(preset: str) -> dict:
    """A copy of ``PRESET_CONFIGS[preset]`` (a ConfigError names the presets for an unknown name)."""
    if preset not in PRESET_CONFIGS:
        raise ConfigError(f"preset={preset!r} has no recorded architecture; pick one of "
                          f"{', '.join(PRESET_CONFIGS)} (the embedded 'tiny' model is real, not a stand-in)")
    return json.loads(json.dumps(PRESET_CONFIGS[preset]))


def memory_shape(preset: str) -> tuple:
    """(n_params, n_layers, hidden, intermediate, vocab, tied): the tuple labhelpers.memory works with."""
    a = architecture(preset)
    return (a["n_params"], a["num_hidden_layers"], a["hidden_size"], a["intermediate_size"], a["vocab_size"],
            a["tie_word_embeddings"])


def make_config(preset: str, **overrides):
    """The transformers config (LlamaConfig / Qwen2Config / Phi3Config) of ``preset``'s architecture.

    ``overrides`` replace config values, e.g. ``num_hidden_layers=2`` for a cheap smoke test (the
    stand-in is then no longer the preset's size; ``build_stand_in`` records the overrides).
    """
    from transformers import LlamaConfig, Phi3Config, Qwen2Config

    a = architecture(preset)
    kind = a["model_type"]
    kwargs = {k: v for k, v in a.items() if k not in _OWN_KEYS}
    kwargs.update(overrides)
    if kind == "llama":
        return LlamaConfig(**kwargs)
    if kind == "qwen2":
        kwargs.pop("attention_bias", None)  # Qwen2 always has q/k/v biases and no o_proj bias
        kwargs.pop("head_dim", None)       # derived: hidden / heads
        return Qwen2Config(**kwargs)
    if kind == "phi3":
        kwargs.pop("attention_bias", None)
        kwargs.pop("head_dim", None)
        return Phi3Config(**kwargs)
    raise ConfigError(f"unknown model_type {kind!r} for {preset}")


def count_params(preset: str, **overrides) -> int:
    """Parameters of the built architecture, counted on the ``meta`` device (no memory, instant)."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = make_config(preset, **overrides)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def _stand_in_md(preset: str, a: dict, overrides: dict, seed: int, dtype) -> str:
    changed = f"\nChanged from the real shape (not the preset's size any more): `{overrides}`.\n" if overrides else ""
    return f"""# TIMING STAND-IN, not a usable model

This folder holds a model with the architecture of **{a['hub_id']}** ({a['model_type']}, {a['n_params']:,}
parameters, {a['num_hidden_layers']} layers, hidden {a['hidden_size']}) and **random weights** (seed {seed},
{str(dtype).replace('torch.', '')}), made by `labhelpers.shapes.build_stand_in("{preset}")`.
{changed}
- It costs the same memory and time per training step and per generated token as the real model, which
  is what `bench/scale.py` measures with it.
- It **produces no meaningful text**: nothing was trained. Do not fine-tune, evaluate or publish it.
- There is no tokenizer: feed it `labhelpers.shapes.random_batch(...)`.

For the real model use `-p model_name {preset}` in the notebooks (downloads {a['hub_id']}).
"""


def build_stand_in(preset: str, out_dir: str | Path | None = None, seed: int = 0, dtype=None,
                   overrides: dict | None = None, device: str | None = None):
    """A random-weight model of ``preset``'s architecture (``from_config``), seeded; saved if ``out_dir``.

    The saved folder (safetensors) has ``STAND_IN.md`` and ``config.json["lab_stand_in"]`` saying it is a
    timing stand-in that produces no meaningful text. ``overrides`` change config values (see make_config).
    ``device`` (e.g. "cuda") builds it there: much faster for big shapes, but another random stream than
    the CPU's, so the weights differ from a CPU build with the same seed. Returns the model (in eval mode).
    """
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if dtype is None else dtype
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be an integer >= 0")
    overrides = dict(overrides or {})
    a = architecture(preset)
    cfg = make_config(preset, **overrides)
    cfg.lab_stand_in = STAND_IN_LABEL.format(hub_id=a["hub_id"])
    cfg.lab_stand_in_of = preset
    if overrides:
        cfg.lab_stand_in_overrides = dict(overrides)
    out = None
    if out_dir is not None:
        out = Path(out_dir).expanduser()
        if out.exists() and any(out.iterdir()):
            from .errors import OverwriteError

            raise OverwriteError(f"out_dir {out} already exists and is not empty; refusing to overwrite it. "
                                 "Pass a new out_dir or delete that folder yourself.")
    torch.manual_seed(seed)
    if device is not None:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()
    else:
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        (out / "STAND_IN.md").write_text(_stand_in_md(preset, a, overrides, seed, dtype))
    return model


def is_stand_in(model_dir: str | Path) -> bool:
    """True if ``model_dir``'s config.json carries the stand-in label."""
    path = Path(model_dir) / "config.json"
    return path.is_file() and "lab_stand_in" in json.loads(path.read_text())


def random_batch(vocab: int, batch: int = 1, seq: int = 64, seed: int = 0) -> dict:
    """Tokenizer-free inputs: ``{"input_ids", "attention_mask", "labels"}`` of random ids in [3, vocab)."""
    import torch

    for name, value in (("vocab", vocab), ("batch", batch), ("seq", seq)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    if vocab <= 3:
        raise ConfigError(f"vocab={vocab} must be above 3 (ids 0-2 are kept for special tokens)")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, seq), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


# --- what this machine can do: the calculator plus the measured stand-in table ------------------------------

#: Notebook 02's defaults: 300 optimizer steps of batch 8, rows cut at 64 tokens (the bench's sequence length).
NB02_STEPS, NB02_BATCH, NB02_SEQ_LEN = 300, 8, 64
#: Batch sizes tried, largest first, when notebook 02's batch 8 does not fit.
BATCH_CHOICES = (8, 4, 2, 1)
#: Beyond this many cores the time estimate stops scaling (memory bandwidth, not cores, limits then).
MAX_SCALED_CORES = 16
ADVICE_METHODS = ("lora", "qlora", "full")


def results_dir() -> Path:
    from .paths import REPO_ROOT

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
        from .hardware import hardware_report

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
    from . import fitcheck

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
    (the memory calculator, as labhelpers.fitcheck prices it, in 80 % of the memory), at which notebook-02 batch
    size, roughly how long notebook 02's default run (300 steps x batch 8) takes, and what to pass to run it.

    ``machine``: a description as hardware.hardware_report() returns (None: this machine); see _machine_view.
    ``table``: the measured stand-in table (bench/scale.py's CSV; None: the course's recorded one).
    Times come only from that table, measured on a CPU, and are scaled by cores (see nb02_minutes); on a GPU
    they are not estimated (no GPU measurement exists). Returns a pandas DataFrame, one row per preset x method;
    ``df.attrs["note"]`` says where the figures come from.
    """
    import pandas as pd

    from . import fitcheck, memory

    m = _machine_view(machine)
    budget = fitcheck.HEADROOM * m["memory_gib"]
    measured = {(r["preset"], r["method"]): r for r in load_table(table)}
    rows = []
    for preset in PRESET_CONFIGS:
        shape = memory.preset_shape(preset)
        for method in ADVICE_METHODS:
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
                                     f"batch {batch or NB02_BATCH} x {cores_m}/{min(m['cores'], MAX_SCALED_CORES)} cores"
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
        f"Fits: the memory calculator (labhelpers.fitcheck: estimate x {fitcheck.OVERHEAD}) at notebook 02's "
        f"settings ({m['precision']}, batch 8 -> 1, <= {NB02_SEQ_LEN} tokens) in 80 % of {m['memory_gib']:.1f} GiB "
        f"{m['where']}. Times: seconds per step measured with random-weight stand-ins of each model on the course's "
        f"{_table_cores(measured)}-core CPU machine (bench/results), scaled to {m['cores']} cores and to notebook "
        f"02's 300 steps x batch {NB02_BATCH}; rough, and pessimistic where that machine was busy (see the load "
        "averages in bench/results).")
    return df


def _table_cores(measured: dict) -> str:
    cores = sorted({r["cores"] for r in measured.values()})
    return "/".join(str(c) for c in cores) if cores else "?"
