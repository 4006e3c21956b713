"""Exercise checkers: right answers pass, each common mistake gets its own hint, None is "not answered"."""

import pytest

from labhelpers.exercises import Feedback, check_weight_memory

N = 3_688_704   # the embedded tiny model's parameter count (any count works; this one is realistic)


def test_unanswered_is_not_a_failure():
    fb = check_weight_memory(None, N)
    assert fb.ok is None and "None" in fb.message
    assert str(fb).startswith("Not answered yet")


@pytest.mark.parametrize("answer", [N * 4 / 1e6, round(N * 4 / 1e6, 1), N * 4 / 1e6 * 1.009])
def test_right_answer_in_mb(answer):
    fb = check_weight_memory(answer, N)
    assert fb.ok is True, fb.message
    assert "14.75 MB" in fb.message


def test_mib_is_accepted_with_a_note():
    fb = check_weight_memory(N * 4 / 2**20, N)
    assert fb.ok is True and "MiB" in fb.message


@pytest.mark.parametrize("answer,hint", [
    (N / 1e6, "parameter count"),              # forgot the 4 bytes per parameter
    (N / 2**20, "parameter count"),
    (N * 32 / 1e6, "bits"),                    # multiplied by 32 bits
    (N * 2 / 1e6, "bf16"),                     # used 2 bytes
    (N * 4, "number of bytes"),                # gave bytes, not MB
    (N * 4 / 1e3, "kilobytes"),
    (N * 4 / 1e9, "gigabytes"),
    (20.0, "parameters x bytes per parameter"),  # anything else: the general rule
])
def test_common_mistakes_get_specific_hints(answer, hint):
    fb = check_weight_memory(answer, N)
    assert fb.ok is False
    assert hint in fb.message, fb.message


def test_just_outside_tolerance_is_wrong():
    assert check_weight_memory(N * 4 / 1e6 * 1.02, N).ok is False


def test_other_bytes_per_param():
    assert check_weight_memory(N * 2 / 1e6, N, bytes_per_param=2).ok is True
    assert check_weight_memory(N * 4 / 1e6, N, bytes_per_param=2).ok is False


@pytest.mark.parametrize("answer", ["14.75", True, [14.75]])
def test_non_numbers_are_named(answer):
    fb = check_weight_memory(answer, N)
    assert fb.ok is False and "answer_mb" in fb.message


def test_feedback_renders_in_notebooks():
    assert Feedback(True, "x")._repr_markdown_() == "**Correct: x**"


# --- 02: LoRA parameter count -------------------------------------------------------------

def test_lora_parameter_checker():
    from transformers import AutoModelForCausalLM

    from labhelpers.exercises import check_lora_parameters, lora_extra_parameters
    from labhelpers.paths import BASE_MODEL_DIR

    tiny_model = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR)  # 4 layers: "one of each" differs

    truth = lora_extra_parameters(tiny_model, 16, ["q_proj", "v_proj"])
    assert truth > 0
    assert check_lora_parameters(None, tiny_model).ok is None
    assert check_lora_parameters(truth, tiny_model).ok is True
    assert "rank r" in check_lora_parameters(truth // 16, tiny_model).message
    layers = tiny_model.config.num_hidden_layers
    assert "one layer of each kind" in check_lora_parameters(truth // layers, tiny_model).message
    frozen = sum(m.weight.numel() for n, m in tiny_model.named_modules() if n.endswith(("q_proj", "v_proj")))
    assert "frozen weights" in check_lora_parameters(frozen, tiny_model).message
    assert check_lora_parameters(truth + 1, tiny_model).ok is False


def test_lora_count_matches_peft(tiny_model):
    import copy

    from peft import LoraConfig, get_peft_model

    from labhelpers.exercises import lora_extra_parameters

    peft_model = get_peft_model(copy.deepcopy(tiny_model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert peft_model.get_nb_trainable_parameters()[0] == lora_extra_parameters(tiny_model, 4, ["q_proj", "v_proj"])


# --- 03: NF4 memory ----------------------------------------------------------------------

@pytest.mark.parametrize("answer, ok, hint", [
    (None, None, "replace None"),
    (4.127, True, "byte per weight"),
    (4.0, False, "codes only"),
    (4.5, False, "without double quantization"),
    (32.0, False, "fp32"),
    (3.844, False, "GiB"),
    (7.0, False, "per weight"),
])
def test_nf4_checker(answer, ok, hint):
    from labhelpers.exercises import check_nf4_gigabytes

    fb = check_nf4_gigabytes(answer, n_params=8e9)
    assert fb.ok is ok and hint in fb.message, fb.message


def test_check_best_step_solution_and_hints():
    from labhelpers.exercises import check_best_step

    hist = [{"loss": 2.0, "step": 10}, {"eval_loss": 1.5, "step": 25}, {"eval_loss": 1.2, "step": 50},
            {"eval_loss": 1.3, "step": 75}, {"loss": 0.9, "step": 80}]
    assert check_best_step(None, hist).ok is None
    assert check_best_step(50, hist).ok is True
    for wrong, hint in ((80, "last step"), (30, "only on steps"), (25, "lower validation loss"), ("50", "integer")):
        fb = check_best_step(wrong, hist)
        assert fb.ok is False and hint in fb.message, (wrong, fb.message)


def test_check_lora_inputs_solution_and_hints():
    from labhelpers.exercises import check_lora_inputs

    projs = [("attn", p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")] + \
            [("mlp", p) for p in ("gate_proj", "up_proj", "down_proj")]
    names = {f"model.layers.{i}.{block}.{proj}.lora_{ab}.MatMul.weight": (256, None)
             for i in range(4) for block, proj in projs for ab in "AB"}
    assert check_lora_inputs(None, names).ok is None
    fb = check_lora_inputs(56, names)
    assert fb.ok is True and "4 layers x 7" in fb.message
    for wrong, hint in ((28, "two LoRA matrices"), (14, "one decoder layer"), (7, "one decoder layer"),
                        (32, "MLP's projections"), (112, "share the same inputs"), (50, "layers x adapted"),
                        ("56", "whole number"), (56.0, "whole number")):
        fb = check_lora_inputs(wrong, names)
        assert fb.ok is False and hint in fb.message, (wrong, fb.message)


def test_check_largest_batch_solution_and_hints():
    from labhelpers.exercises import check_largest_batch
    from labhelpers.fitcheck import plan_training

    kw = dict(model="llama-3.2-1b", method="lora", seq_len=512, memory_gib=16)
    truth = 2  # solutions/07_troubleshooting.md
    plan = lambda b: plan_training("llama-3.2-1b", "lora", batch_size=b, seq_len=512, machine={"memory_gib": 16})
    assert plan(truth).fits and not plan(truth + 1).fits
    assert check_largest_batch(None, **kw).ok is None
    right = check_largest_batch(truth, **kw)
    assert right.ok is True and "batch 3 needs" in right.message
    small = check_largest_batch(1, **kw)
    assert small.ok is False and "a larger one" in small.message
    big = check_largest_batch(8, **kw)
    assert big.ok is False and "over the" in big.message and "smaller" in big.message
    assert check_largest_batch("2", **kw).ok is False
