"""labhelpers.memory.fitcheck: the verdict follows the machine's memory, remedies come cheapest-first and stop at
the first fit, and the prediction is close to what training really peaks at on the embedded model."""

import pytest

from labhelpers.errors import ConfigError
from labhelpers.memory import estimate
from labhelpers.memory.fitcheck import HEADROOM, plan_training, predict_gib
from labhelpers.models.shapes import shape_of


def test_fits_as_requested_on_a_big_machine():
    plan = plan_training("smollm2-135m", "lora", batch_size=8, seq_len=256, machine={"memory_gib": 64})
    assert plan.fits and plan.steps == []
    assert plan.settings == plan.requested
    assert "fits as requested" in str(plan)
    assert plan.budget_gib == pytest.approx(HEADROOM * 64)


def test_verdict_flips_at_the_budget():
    need = plan_training("qwen2.5-0.5b", "lora", machine={"memory_gib": 1000}).predicted_gib
    assert plan_training("qwen2.5-0.5b", "lora", machine={"memory_gib": need / HEADROOM * 1.01}).fits
    assert not plan_training("qwen2.5-0.5b", "lora", machine={"memory_gib": need / HEADROOM * 0.99}).fits


def test_first_remedy_is_checkpointing_and_it_stops_at_the_first_fit():
    plan = plan_training("qwen2.5-0.5b", "full", batch_size=16, seq_len=512, machine={"memory_gib": 24})
    assert not plan.fits
    assert [s.change for s in plan.steps] == ["gradient checkpointing on"]
    assert plan.steps[0].fits and plan.fits_after_changes
    assert plan.settings["gradient_checkpointing"] and plan.settings["method"] == "full"


def test_remedies_in_order_each_lowering_the_prediction():
    plan = plan_training("llama-3.2-1b", "full", batch_size=16, seq_len=1024, machine={"memory_gib": 8})
    changes = [s.change for s in plan.steps]
    assert changes == ["gradient checkpointing on", "batch 1 x gradient accumulation 16",
                       "LoRA instead of full fine-tuning", "QLoRA (4-bit NF4 base)"]
    totals = [plan.predicted_gib] + [s.predicted_gib for s in plan.steps]
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == len(totals)
    assert [s.fits for s in plan.steps] == [False, False, False, True]
    s = plan.settings
    assert (s["method"], s["batch_size"], s["grad_accum"], s["seq_len"]) == ("qlora", 1, 16, 1024)
    assert len(plan.to_frame()) == 5


def test_bf16_is_offered_only_where_the_hardware_has_it():
    kw = dict(batch_size=16, seq_len=1024)
    no = plan_training("llama-3.2-1b", "full", machine={"memory_gib": 8, "bf16": False}, **kw)
    yes = plan_training("llama-3.2-1b", "full", machine={"memory_gib": 8, "bf16": True}, **kw)
    assert not any("bf16" in s.change for s in no.steps)
    assert any("bf16" in s.change for s in yes.steps)


def test_without_bitsandbytes_no_qlora_and_an_honest_failure():
    plan = plan_training("phi-3.5-mini", "lora", batch_size=8, seq_len=1024, machine={"memory_gib": 4},
                         allow_qlora=False)
    assert not any("QLoRA" in s.change for s in plan.steps)
    assert not plan.fits_after_changes
    assert plan.steps[-1].settings["seq_len"] == 128  # shortened as far as it goes
    assert "does not fit: use a smaller model" in str(plan)


def test_free_size_and_shape_dict_agree():
    shape = estimate.shape_for_params(3.0)
    a = plan_training(3.0, "qlora", machine={"memory_gib": 16})
    b = plan_training(shape, "qlora", machine={"memory_gib": 16})
    assert a.predicted_gib == pytest.approx(b.predicted_gib)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="dpo"), "method='dpo'"),
    (dict(batch_size=0), "batch_size=0"),
    (dict(seq_len=2.5), "seq_len=2.5"),
    (dict(precision="fp8"), "precision='fp8'"),
    (dict(lora_dropout=1.5), "lora_dropout=1.5"),
    (dict(machine={"memory_gib": -1}), "machine['memory_gib']=-1"),
    (dict(machine={"ram": 4}), "must be a dict like"),
    (dict(model={"n_params": 5}), "lacks"),
    (dict(model="gpt-9"), "gpt-9"),
])
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        plan_training(**kwargs)


@pytest.mark.parametrize("batch_size", [8, 16])
def test_prediction_is_close_to_the_measured_peak_on_the_embedded_model(batch_size):
    """Measured in a fresh process: LoRA r 8, dropout 0.05, batch 8 or 16 x 128 tokens. The prediction includes
    OVERHEAD and the weights; the measurement is the RSS growth during training plus the weights."""
    from labhelpers.memory.measure import measure_training_subprocess

    m = measure_training_subprocess("lora", batch_size=batch_size, seq_len=128, steps=1, warmup_steps=1, lora_r=8,
                                    lora_dropout=0.05)
    measured_gib = (m["peak_growth_mb"] + m["weights_mb"]) * 1e6 / estimate.GIB
    predicted = predict_gib(shape_of("tiny"), {
        "method": "lora", "precision": "fp32", "batch_size": batch_size, "seq_len": 128, "lora_r": 8,
        "lora_dropout": 0.05, "gradient_checkpointing": False})
    # Measured 2026-12-01: batch 8 ratio 0.967-0.969 here (3 fresh processes) and 0.902 on the CI machine (its RSS
    # was 15 MB higher: the allocator and CPU kernels differ between machines); batch 16 ratio 1.042 here.
    # Window 0.85-1.10 holds both machines with ~5 % to spare. Dropping the dropout-mask term gives 0.69 at batch
    # 8; pricing half the batch gives 0.54.
    assert 0.85 <= predicted / measured_gib <= 1.10, (measured_gib, predicted)
