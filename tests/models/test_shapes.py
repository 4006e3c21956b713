"""labhelpers.models.shapes: the presets' recorded architectures build to exactly their parameter counts, stand-ins
are labelled and seeded, and the memory estimate reads its shapes from here (advice(): tests/memory/test_advice.py)."""

import json

import pytest
import torch

from labhelpers.errors import ConfigError
from labhelpers.memory import estimate
from labhelpers.models import shapes
from labhelpers.models.presets import PRESETS

REAL = [name for name in PRESETS if name != "tiny"]
#: A few-hundred-kB variant of the SmolLM2 architecture for tests that really allocate weights.
SMALL = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 16, "intermediate_size": 96, "vocab_size": 500}


def _meta_model(preset):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # shapes only: no memory, no time
        return AutoModelForCausalLM.from_config(shapes.make_config(preset))


def test_every_real_preset_has_a_recorded_architecture():
    assert sorted(shapes.PRESET_CONFIGS) == sorted(REAL)
    for name in REAL:
        assert shapes.PRESET_CONFIGS[name]["hub_id"] == PRESETS[name].path


@pytest.mark.parametrize("preset", REAL)
def test_built_config_has_exactly_the_recorded_parameter_count(preset):
    model = _meta_model(preset)
    a = shapes.PRESET_CONFIGS[preset]
    assert sum(p.numel() for p in model.parameters()) == a["n_params"]
    assert model.config.model_type == a["model_type"]
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (
        a["num_hidden_layers"], a["hidden_size"], a["vocab_size"])
    assert model.config.num_key_value_heads == a["num_key_value_heads"]
    assert model.config.tie_word_embeddings == a["tie_word_embeddings"]
    assert model.config.rope_theta == a["rope_theta"]
    assert model.config.max_position_embeddings == a["max_position_embeddings"]


def test_architecture_details_qwen_bias_phi_fused_llama_gqa():
    qwen = _meta_model("qwen2.5-0.5b").model.layers[0].self_attn
    assert qwen.q_proj.bias is not None and qwen.k_proj.bias is not None and qwen.v_proj.bias is not None
    assert qwen.o_proj.bias is None
    phi = _meta_model("phi-3.5-mini").model.layers[0]
    assert hasattr(phi.self_attn, "qkv_proj") and hasattr(phi.mlp, "gate_up_proj")
    assert phi.self_attn.qkv_proj.out_features == 3 * 3072
    assert set(PRESETS["phi-3.5-mini"].target_modules) >= {"qkv_proj", "gate_up_proj"}
    llama = _meta_model("llama-3.2-1b").model.layers[0].self_attn
    assert llama.k_proj.out_features == 8 * 64  # 8 KV heads of 64
    assert shapes.make_config("llama-3.2-1b").rope_scaling["rope_type"] == "llama3"


@pytest.mark.parametrize("preset", REAL)
def test_memory_reads_its_shapes_from_here(preset):
    s = shapes.shape_of(preset)
    a = shapes.PRESET_CONFIGS[preset]
    assert (s["n_params"], s["n_layers"], s["hidden"], s["intermediate"], s["vocab"]) == (
        a["n_params"], a["num_hidden_layers"], a["hidden_size"], a["intermediate_size"], a["vocab_size"])
    assert s["n_embedding"] == a["vocab_size"] * a["hidden_size"] * (1 if a["tie_word_embeddings"] else 2)
    est = estimate.estimate_for_preset(preset, "full")
    assert est == estimate.estimate_memory(s["n_params"], "full", n_layers=s["n_layers"], hidden_size=s["hidden"],
                                           intermediate_size=s["intermediate"], vocab_size=s["vocab"])


def test_saved_stand_in_is_labelled_and_loads(tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "stand-in"
    shapes.build_stand_in("smollm2-135m", out, seed=0, overrides=SMALL)
    assert list(out.glob("*.safetensors")), "weights are saved as safetensors"
    card = (out / "STAND_IN.md").read_text()
    assert "TIMING STAND-IN" in card and "no meaningful text" in card and "random weights" in card
    assert "not the preset's size" in card  # overrides are declared
    cfg = json.loads((out / "config.json").read_text())
    assert "TIMING STAND-IN" in cfg["lab_stand_in"] and "no meaningful text" in cfg["lab_stand_in"]
    assert cfg["lab_stand_in_of"] == "smollm2-135m" and cfg["lab_stand_in_overrides"]["num_hidden_layers"] == 2
    assert shapes.is_stand_in(out) and not shapes.is_stand_in(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(out)
    batch = shapes.random_batch(model.config.vocab_size, batch=2, seq=8, seed=0)
    assert torch.isfinite(model(**batch).loss)
    from labhelpers.errors import OverwriteError

    with pytest.raises(OverwriteError):
        shapes.build_stand_in("smollm2-135m", out, overrides=SMALL)


def test_stand_in_is_seeded():
    a = shapes.build_stand_in("qwen2.5-0.5b", seed=0, overrides=SMALL).state_dict()
    b = shapes.build_stand_in("qwen2.5-0.5b", seed=0, overrides=SMALL).state_dict()
    c = shapes.build_stand_in("qwen2.5-0.5b", seed=1, overrides=SMALL).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    half = shapes.build_stand_in("qwen2.5-0.5b", seed=0, dtype=torch.bfloat16, overrides=SMALL)
    assert next(half.parameters()).dtype == torch.bfloat16


def test_random_batch():
    b = shapes.random_batch(1000, batch=3, seq=16, seed=5)
    assert b["input_ids"].shape == (3, 16) and b["input_ids"].min() >= 3 and b["input_ids"].max() < 1000
    assert torch.equal(b["labels"], b["input_ids"]) and b["attention_mask"].all()
    assert torch.equal(b["input_ids"], shapes.random_batch(1000, 3, 16, seed=5)["input_ids"])
    assert not torch.equal(b["input_ids"], shapes.random_batch(1000, 3, 16, seed=6)["input_ids"])
    with pytest.raises(ConfigError, match="seq"):
        shapes.random_batch(1000, 1, 0)


def test_unknown_preset_is_named():
    with pytest.raises(ConfigError, match="tiny"):
        shapes.architecture("tiny")
    with pytest.raises(ConfigError, match="smollm2-135m"):
        shapes.build_stand_in("gpt-5")
