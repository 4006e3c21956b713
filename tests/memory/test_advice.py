"""labhelpers.memory.advice: what this machine can do with each real preset agrees with the calculator, and its
times scale from the measured stand-in table."""

import pytest

from labhelpers.errors import ConfigError
from labhelpers.memory import advice, fitcheck
from labhelpers.models.presets import PRESETS
from labhelpers.models.shapes import shape_of

REAL = [name for name in PRESETS if name != "tiny"]

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
    df = advice.advice(machine, TABLE)
    assert len(df) == len(REAL) * 3
    precision = "bf16" if machine["device"] == "cuda" else "fp32"
    memory_gib = machine.get("gpu_memory_total_gib") or machine["total_memory_gib"]
    budget = fitcheck.HEADROOM * memory_gib
    for _, r in df.iterrows():
        at8 = fitcheck.predict_gib(shape_of(r["model"]), {
            "method": r["method"], "precision": precision, "batch_size": 8, "seq_len": 64, "lora_r": 8,
            "lora_dropout": 0.05, "gradient_checkpointing": False})
        assert (r["fits"] == "yes") == (at8 <= budget), r.to_dict()
        if r["fits"] != "no":
            assert r["predicted_gib"] <= budget
        assert r["budget_gib"] == pytest.approx(budget, abs=0.01)


def test_advice_8gb_laptop():
    df = advice.advice(LAPTOP_8GB, TABLE)
    assert _row(df, "smollm2-135m", "lora")["fits"] == "yes"
    assert _row(df, "qwen2.5-0.5b", "full")["fits"] == "no"        # 16 bytes/param: ~8 GB before activations
    assert _row(df, "phi-3.5-mini", "lora")["fits"] == "no"        # 15 GB of fp32 weights
    assert "-p method qlora" in _row(df, "phi-3.5-mini", "lora")["to_run_it"]
    phi_q = _row(df, "phi-3.5-mini", "qlora")
    assert phi_q["fits"] == f"at batch {phi_q['batch_size']}" and phi_q["batch_size"] < 8
    assert f"-p batch_size {phi_q['batch_size']}" in phi_q["to_run_it"]
    assert "-p model_name smollm2-135m -p method lora" in _row(df, "smollm2-135m", "lora")["to_run_it"]


def test_advice_16gb_desktop_fits_more():
    small, big = advice.advice(LAPTOP_8GB, TABLE), advice.advice(DESKTOP_16GB, TABLE)
    assert _row(big, "qwen2.5-0.5b", "full")["fits"] == "yes"
    assert _row(big, "llama-3.2-1b", "lora")["fits"] == "yes"
    assert _row(small, "llama-3.2-1b", "lora")["fits"] != "yes"
    assert _row(big, "llama-3.2-1b", "full")["fits"] == "no"        # ~20 GB of weights, gradients and moments
    assert (big["fits"] != "no").sum() > (small["fits"] != "no").sum()


def test_advice_24gb_gpu_uses_bf16_and_claims_no_time():
    df = advice.advice(GPU_24GB, TABLE)
    assert df.attrs["machine"]["precision"] == "bf16"
    assert _row(df, "phi-3.5-mini", "lora")["fits"] == "yes"       # 7.6 GB of bf16 weights
    assert _row(df, "llama-3.2-1b", "full")["fits"] == "no"
    assert df["nb02_minutes"].isna().all() and df["time_basis"].str.contains("not measured").all()


def test_advice_times_scale_from_the_table():
    # 300 steps x batch 8 x 2.0 s (batch 1 x 64 tokens on 2 cores) x 2/4 cores = 2400 s = 40 min.
    df = advice.advice(LAPTOP_8GB, TABLE)
    r = _row(df, "smollm2-135m", "lora")
    assert r["nb02_minutes"] == pytest.approx(300 * 8 * 2.0 * 2 / 4 / 60)
    assert r["s_per_step_measured"] == 2.0
    q = _row(df, "qwen2.5-0.5b", "qlora")
    assert q["nb02_minutes"] == pytest.approx(300 * 8 * 10.0 * 2 / 4 / 60)  # 200 min: suggests fewer steps
    assert "-p max_steps 60" in q["to_run_it"]
    assert pd_isna(_row(df, "phi-3.5-mini", "lora")["nb02_minutes"])  # skipped rows give no time
    one_core = advice.advice(dict(LAPTOP_8GB, cpu_count=1), TABLE)
    assert _row(one_core, "smollm2-135m", "lora")["nb02_minutes"] == pytest.approx(4 * r["nb02_minutes"])  # 4 -> 1 core
    many = advice.advice(dict(LAPTOP_8GB, cpu_count=64), TABLE)   # no gain assumed beyond 16 cores
    assert _row(many, "smollm2-135m", "lora")["nb02_minutes"] == pytest.approx(
        300 * 8 * 2.0 * 2 / advice.MAX_SCALED_CORES / 60)


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_advice_reads_the_recorded_table():
    rows = advice.load_table()
    assert rows, "bench/results/scale_cpu-*core.csv is missing: run `python bench/scale.py`"
    df = advice.advice(LAPTOP_8GB)
    measured = {(r["preset"], r["method"]) for r in rows}
    for _, r in df.iterrows():
        has_time = not pd_isna(r["nb02_minutes"])
        assert has_time == ((r["model"], r["method"]) in measured and r["fits"] != "no"), r.to_dict()
    assert "stand-ins" in df.attrs["note"]


def test_advice_names_bad_machines():
    with pytest.raises(ConfigError, match="memory"):
        advice.advice({"device": "cpu", "cpu_count": 2}, TABLE)
    with pytest.raises(ConfigError, match="device"):
        advice.advice({"device": "tpu", "cpu_count": 2, "total_memory_gib": 8}, TABLE)
    with pytest.raises(ConfigError, match="does not exist"):
        advice.advice(LAPTOP_8GB, "/nonexistent/scale.csv")
