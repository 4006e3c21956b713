"""The real presets' architectures and random-weight stand-ins of them (same memory and time, no download).

``PRESET_CONFIGS`` holds, for each real preset of ``labhelpers.models.presets.PRESETS``, the facts of its public
``config.json`` on the hub that decide its size and speed (layers, hidden size, attention and KV heads,
MLP width, vocabulary, tied embeddings, RoPE base, context length, architecture) and its exact parameter
count. ``labhelpers.memory.estimate`` reads its shapes from here: one source of truth.

``build_stand_in(preset)`` builds a model of that architecture with **random weights** through
transformers' own config class (``LlamaConfig``, ``Qwen2Config``, ``Phi3Config``) and
``AutoModelForCausalLM.from_config``. It has the real model's tensors, so it costs the same memory and
time per step, and it needs no download, licence or tokenizer; it produces no meaningful text. Saved
folders say so twice: a ``STAND_IN.md`` file and a ``lab_stand_in`` field in ``config.json``.
``random_batch`` makes tokenizer-free inputs for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Phi3Config, Qwen2Config

from labhelpers import paths
from labhelpers.errors import ConfigError, OverwriteError

#: Public config.json facts of each real preset (hub id in labhelpers.models.presets.PRESETS). ``n_params`` is the
#: exact count of the built model (tied embeddings counted once); tests/models/test_shapes.py checks it.
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


def tiny_shape() -> dict:
    """The embedded model's shape from data/tiny-llama-base/config.json (exact parameter count)."""
    path = Path(paths.BASE_MODEL_DIR) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: build the embedded model with `make base-model`")
    c = json.loads(path.read_text())
    h, i, v, L = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    head_dim = c.get("head_dim") or h // heads
    bias = 1 if c.get("attention_bias") else 0
    attn = h * heads * head_dim + 2 * h * kv * head_dim + heads * head_dim * h
    attn += bias * (heads * head_dim + 2 * kv * head_dim + h)
    mlp = 3 * h * i + (i * 2 + h if c.get("mlp_bias") else 0)
    per_layer = attn + mlp + 2 * h  # + two RMSNorm weights
    emb = v * h * (1 if c.get("tie_word_embeddings", True) else 2)
    return {"n_params": L * per_layer + emb + h, "n_layers": L, "hidden": h, "intermediate": i, "vocab": v,
            "n_embedding": emb}


def shape_of(preset: str, **overrides) -> dict:
    """n_params, n_layers, hidden, intermediate, vocab and n_embedding (embedding + untied lm_head) of a
    preset: the one shape the memory calculator, fitcheck and the benches work with. "tiny" reads the
    embedded model's config.json; ``overrides`` (e.g. ``num_hidden_layers=2``) shape a smaller variant."""
    if preset == "tiny" and not overrides:
        return tiny_shape()
    if preset not in PRESET_CONFIGS:
        raise ConfigError(f"preset={preset!r} is not one of tiny, {', '.join(PRESET_CONFIGS)}")
    if overrides:
        cfg = make_config(preset, **overrides)
        n, L, h, i, v = (count_params(preset, **overrides), cfg.num_hidden_layers, cfg.hidden_size,
                         cfg.intermediate_size, cfg.vocab_size)
        tied = bool(cfg.tie_word_embeddings)
    else:
        a = PRESET_CONFIGS[preset]
        n, L, h, i, v = a["n_params"], a["num_hidden_layers"], a["hidden_size"], a["intermediate_size"], a["vocab_size"]
        tied = a["tie_word_embeddings"]
    return {"n_params": n, "n_layers": L, "hidden": h, "intermediate": i, "vocab": v,
            "n_embedding": v * h * (1 if tied else 2)}


def make_config(preset: str, **overrides):
    """The transformers config (LlamaConfig / Qwen2Config / Phi3Config) of ``preset``'s architecture.

    ``overrides`` replace config values, e.g. ``num_hidden_layers=2`` for a cheap smoke test (the
    stand-in is then no longer the preset's size; ``build_stand_in`` records the overrides).
    """

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

    cfg = make_config(preset, **overrides)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def _stand_in_md(preset: str, a: dict, overrides: dict, seed: int, dtype) -> str:
    changed = f"\nChanged from the real shape (not the preset's size any more): `{overrides}`.\n" if overrides else ""
    return f"""# TIMING STAND-IN, not a usable model

This folder holds a model with the architecture of **{a['hub_id']}** ({a['model_type']}, {a['n_params']:,}
parameters, {a['num_hidden_layers']} layers, hidden {a['hidden_size']}) and **random weights** (seed {seed},
{str(dtype).replace('torch.', '')}), made by `labhelpers.models.shapes.build_stand_in("{preset}")`.
{changed}
- It costs the same memory and time per training step and per generated token as the real model, which
  is what `bench/scale.py` measures with it.
- It **produces no meaningful text**: nothing was trained. Do not fine-tune, evaluate or publish it.
- There is no tokenizer: feed it `labhelpers.models.shapes.random_batch(...)`.

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

    for name, value in (("vocab", vocab), ("batch", batch), ("seq", seq)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    if vocab <= 3:
        raise ConfigError(f"vocab={vocab} must be above 3 (ids 0-2 are kept for special tokens)")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, seq), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
