"""labhelpers.shapes: the presets' recorded architectures build to exactly their parameter counts, stand-ins
are labelled and seeded, memory.py reads its shapes from here, and advice() agrees with the calculator and
the measured table."""

import json

import pytest
import torch

from labhelpers import fitcheck, memory, shapes
from labhelpers.errors import ConfigError
from labhelpers.models import PRESETS

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
    n, layers, hidden, inter, vocab, tied = memory._PRESET_SHAPES[preset]
    a = shapes.PRESET_CONFIGS[preset]
    assert (n, layers, hidden, inter, vocab, tied) == (
        a["n_params"], a["num_hidden_layers"], a["hidden_size"], a["intermediate_size"], a["vocab_size"],
        a["tie_word_embeddings"])
    assert memory.shape_of(preset) == (a["n_params"], a["num_hidden_layers"], a["hidden_size"])


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


# --- advice ----------------------------------------------------------------------------------------------

#: A table as bench/scale.py writes it (only the columns advice reads), with round numbers.
TABLE = [
    {"kind": "train", "status": "measured", "preset": "smollm2-135m", "method": "lora", "sec_per_step": "2.0",
     "seq_len": "64", "cores": "2"},
    {"kind": "train", "status": "measured", "preset": "qwen2.5-0.5b", "method": "qlora", "sec_per_step": "10.0",
     "seq_len": "64", "cores": "2"},
    {"kind": "train", "status": "skipped", "preset": "phi-3.5-mini", "method": "lora", "sec_per_step": "",
     "seq_len": "64", "cores": "2"},
]
LAPTOP_8GB = {"device": "cpu", "cpu_count": 4, "total_memory_gib": 8.0, "bf16_supported": False}
DESKTOP_16GB = {"device": "cpu", "cpu_count": 8, "total_memory_gib": 16.0, "available_memory_gib": 16.0,
                "bf16_supported": False}
GPU_24GB = {"device": "cuda", "cpu_count": 8, "total_memory_gib": 32.0, "gpu_memory_total_gib": 24.0,
            "bf16_supported": True}


def _row(df, model, method):
    return df[(df["model"] == model) & (df["method"] == method)].iloc[0]


@pytest.mark.parametrize("machine", [LAPTOP_8GB, DESKTOP_16GB, GPU_24GB])
def test_advice_matches_the_calculator(machine):
    df = shapes.advice(machine, TABLE)
    assert len(df) == len(REAL) * 3
    precision = "bf16" if machine["device"] == "cuda" else "fp32"
    memory_gib = machine.get("gpu_memory_total_gib") or machine["total_memory_gib"]
    budget = fitcheck.HEADROOM * memory_gib
    for _, r in df.iterrows():
        at8 = fitcheck.predict_gib(memory.preset_shape(r["model"]), {
            "method": r["method"], "precision": precision, "batch_size": 8, "seq_len": 64, "lora_r": 8,
            "lora_dropout": 0.05, "gradient_checkpointing": False})
        assert (r["fits"] == "yes") == (at8 <= budget), r.to_dict()
        if r["fits"] != "no":
            assert r["predicted_gib"] <= budget
        assert r["budget_gib"] == pytest.approx(budget, abs=0.01)


def test_advice_8gb_laptop():
    df = shapes.advice(LAPTOP_8GB, TABLE)
    assert _row(df, "smollm2-135m", "lora")["fits"] == "yes"
    assert _row(df, "qwen2.5-0.5b", "full")["fits"] == "no"        # 16 bytes/param: ~8 GB before activations
    assert _row(df, "phi-3.5-mini", "lora")["fits"] == "no"        # 15 GB of fp32 weights
    assert "-p method qlora" in _row(df, "phi-3.5-mini", "lora")["to_run_it"]
    phi_q = _row(df, "phi-3.5-mini", "qlora")
    assert phi_q["fits"] == f"at batch {phi_q['batch_size']}" and phi_q["batch_size"] < 8
    assert f"-p batch_size {phi_q['batch_size']}" in phi_q["to_run_it"]
    assert "-p model_name smollm2-135m -p method lora" in _row(df, "smollm2-135m", "lora")["to_run_it"]


def test_advice_16gb_desktop_fits_more():
    small, big = shapes.advice(LAPTOP_8GB, TABLE), shapes.advice(DESKTOP_16GB, TABLE)
    assert _row(big, "qwen2.5-0.5b", "full")["fits"] == "yes"
    assert _row(big, "llama-3.2-1b", "lora")["fits"] == "yes"
    assert _row(small, "llama-3.2-1b", "lora")["fits"] != "yes"
    assert _row(big, "llama-3.2-1b", "full")["fits"] == "no"        # ~20 GB of weights, gradients and moments
    assert (big["fits"] != "no").sum() > (small["fits"] != "no").sum()


def test_advice_24gb_gpu_uses_bf16_and_claims_no_time():
    df = shapes.advice(GPU_24GB, TABLE)
    assert df.attrs["machine"]["precision"] == "bf16"
    assert _row(df, "phi-3.5-mini", "lora")["fits"] == "yes"       # 7.6 GB of bf16 weights
    assert _row(df, "llama-3.2-1b", "full")["fits"] == "no"
    assert df["nb02_minutes"].isna().all() and df["time_basis"].str.contains("not measured").all()


def test_advice_times_scale_from_the_table():
    # 300 steps x batch 8 x 2.0 s (batch 1 x 64 tokens on 2 cores) x 2/4 cores = 2400 s = 40 min.
    df = shapes.advice(LAPTOP_8GB, TABLE)
    r = _row(df, "smollm2-135m", "lora")
    assert r["nb02_minutes"] == pytest.approx(300 * 8 * 2.0 * 2 / 4 / 60)
    assert r["s_per_step_measured"] == 2.0
    q = _row(df, "qwen2.5-0.5b", "qlora")
    assert q["nb02_minutes"] == pytest.approx(300 * 8 * 10.0 * 2 / 4 / 60)  # 200 min: suggests fewer steps
    assert "-p max_steps 60" in q["to_run_it"]
    assert pd_isna(_row(df, "phi-3.5-mini", "lora")["nb02_minutes"])  # skipped rows give no time
    one_core = shapes.advice(dict(LAPTOP_8GB, cpu_count=1), TABLE)
    assert _row(one_core, "smollm2-135m", "lora")["nb02_minutes"] == pytest.approx(4 * r["nb02_minutes"])  # 4 -> 1 core
    many = shapes.advice(dict(LAPTOP_8GB, cpu_count=64), TABLE)   # no gain assumed beyond 16 cores
    assert _row(many, "smollm2-135m", "lora")["nb02_minutes"] == pytest.approx(
        300 * 8 * 2.0 * 2 / shapes.MAX_SCALED_CORES / 60)


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_advice_reads_the_recorded_table():
    rows = shapes.load_table()
    assert rows, "bench/results/scale_cpu-*core.csv is missing: run `python bench/scale.py`"
    df = shapes.advice(LAPTOP_8GB)
    measured = {(r["preset"], r["method"]) for r in rows}
    for _, r in df.iterrows():
        has_time = not pd_isna(r["nb02_minutes"])
        assert has_time == ((r["model"], r["method"]) in measured and r["fits"] != "no"), r.to_dict()
    assert "stand-ins" in df.attrs["note"]


def test_advice_names_bad_machines():
    with pytest.raises(ConfigError, match="memory"):
        shapes.advice({"device": "cpu", "cpu_count": 2}, TABLE)
    with pytest.raises(ConfigError, match="device"):
        shapes.advice({"device": "tpu", "cpu_count": 2, "total_memory_gib": 8}, TABLE)
    with pytest.raises(ConfigError, match="does not exist"):
        shapes.advice(LAPTOP_8GB, "/nonexistent/scale.csv")
