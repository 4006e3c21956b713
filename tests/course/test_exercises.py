"""Exercise checkers: right answers pass, each common mistake gets its own hint, None is "not answered"."""

import re

import pytest

from labhelpers.course.exercises import Feedback, check_weight_memory
from labhelpers.models.shapes import shape_of
from labhelpers.paths import NOTEBOOKS_DIR, REPO_ROOT

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

    from labhelpers.course.exercises import check_lora_parameters, lora_extra_parameters
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

    from labhelpers.course.exercises import lora_extra_parameters

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
    from labhelpers.course.exercises import check_nf4_gigabytes

    fb = check_nf4_gigabytes(answer, n_params=8e9)
    assert fb.ok is ok and hint in fb.message, fb.message


def test_check_best_step_solution_and_hints():
    from labhelpers.course.exercises import check_best_step

    hist = [{"loss": 2.0, "step": 10}, {"eval_loss": 1.5, "step": 25}, {"eval_loss": 1.2, "step": 50},
            {"eval_loss": 1.3, "step": 75}, {"loss": 0.9, "step": 80}]
    assert check_best_step(None, hist).ok is None
    assert check_best_step(50, hist).ok is True
    for wrong, hint in ((80, "last step"), (30, "only on steps"), (25, "lower validation loss"), ("50", "integer")):
        fb = check_best_step(wrong, hist)
        assert fb.ok is False and hint in fb.message, (wrong, fb.message)


def test_check_lora_inputs_solution_and_hints():
    from labhelpers.course.exercises import check_lora_inputs

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
    from labhelpers.course.exercises import check_largest_batch
    from labhelpers.memory.fitcheck import plan_training

    kw = dict(model="llama-3.2-1b", method="lora", seq_len=512, memory_gib=16)
    truth = 2  # solutions/07_troubleshooting.md
    def plan(b):
        return plan_training("llama-3.2-1b", "lora", batch_size=b, seq_len=512, machine={"memory_gib": 16})

    assert plan(truth).fits and not plan(truth + 1).fits
    assert check_largest_batch(None, **kw).ok is None
    right = check_largest_batch(truth, **kw)
    assert right.ok is True and "batch 3 needs" in right.message
    small = check_largest_batch(1, **kw)
    assert small.ok is False and "a larger one" in small.message
    big = check_largest_batch(8, **kw)
    assert big.ok is False and "over the" in big.message and "smaller" in big.message
    assert check_largest_batch("2", **kw).ok is False


def test_check_adapters_per_copy_solution_and_hints():
    from labhelpers.course.exercises import check_adapters_per_copy
    from labhelpers.memory.estimate import lora_trainable_params

    shape = shape_of("llama-3.2-1b")
    truth = shape["n_params"] / lora_trainable_params(shape, 8)
    assert 150 < truth < 260  # 1.24 B parameters / ~6 M per rank-8 all-linear adapter
    assert check_adapters_per_copy(None).ok is None
    assert check_adapters_per_copy(round(truth)).ok is True
    assert "rank 16" in check_adapters_per_copy(truth / 2).message
    assert "model / adapter" in check_adapters_per_copy(1 / truth).message
    assert check_adapters_per_copy(truth * 1.5).ok is False
    assert check_adapters_per_copy("205").ok is False


def test_check_olive_samples_solution_and_hints():
    from labhelpers.course.exercises import check_olive_samples

    kw = {"max_steps": 400, "batch_size": 4, "epochs": 6.25, "max_seq_len": 64}
    assert check_olive_samples(None, **kw).ok is None
    right = check_olive_samples(256, **kw)
    assert right.ok is True and "--max_samples 256" in right.message  # the cap is named when it was hit
    uncapped = check_olive_samples(144, max_steps=60, batch_size=8, epochs=3.3333, max_seq_len=128)
    assert uncapped.ok is True and "max_samples" not in uncapped.message
    for wrong, hint in ((1600, "divide by the epochs"), (800, "rows in the file"), (10000, "not multiply"),
                        (300, "max_steps x batch_size / epochs")):
        fb = check_olive_samples(wrong, **kw)
        assert fb.ok is False and hint in fb.message, (wrong, fb.message)
    assert check_olive_samples("256", **kw).ok is False


# --- 04: error lines of a validation report ----------------------------------------------

def _report():
    from labhelpers.data.validation import Issue, Report

    def issue(level, line):
        return Issue(level, "kind", "broken.jsonl", line, "output", "message", "fix")

    # errors on lines 3 and 5 (and one without a line), warnings on 7 and 8
    return Report(n_rows=10, issues=[issue("error", 3), issue("error", 5), issue("error", None),
                                     issue("warning", 7), issue("warning", 8)])


def test_check_error_lines_solution_and_hints():
    from labhelpers.course.exercises import check_error_lines

    report = _report()
    assert check_error_lines(None, report).ok is None
    assert check_error_lines([5, 3], report).ok is True
    assert check_error_lines((3, 5, 5), report).ok is True   # order and repeats do not matter
    for wrong, hint in (([3, 5, 7], "only have warnings"), ([3], "error line(s) missing"),
                        ([3, 5, 9], "have no error"), (3, "list of line numbers"), ("3, 5", "list of line numbers"),
                        ([3, True], "integers")):
        fb = check_error_lines(wrong, report)
        assert fb.ok is False and hint in fb.message, (wrong, fb.message)


# --- every checker: a right answer passes, a wrong one fails with a hint ------------------
# checker name -> (build(fixture) -> (right answer, keyword arguments), a wrong answer).
# A new check_* function in labhelpers/course/exercises.py must be added here (test_every_checker_is_registered).

HISTORY = [{"loss": 2.0, "step": 10}, {"eval_loss": 1.5, "step": 25}, {"eval_loss": 1.2, "step": 50},
           {"eval_loss": 1.3, "step": 75}, {"loss": 0.9, "step": 80}]
LORA_INPUTS = [f"model.layers.{i}.{block}.{proj}.lora_{ab}.MatMul.weight" for i in range(2)
               for block, proj in (("attn", "q_proj"), ("attn", "v_proj")) for ab in "AB"]


def _lora_parameters(model):
    from labhelpers.course.exercises import lora_extra_parameters

    return lora_extra_parameters(model, 16, ["q_proj", "v_proj"])


def _adapters_per_copy():
    from labhelpers.memory.estimate import lora_trainable_params

    shape = shape_of("llama-3.2-1b")
    return shape["n_params"] / lora_trainable_params(shape, 8)


EXERCISES = {
    "check_weight_memory": (lambda fx: (N * 4 / 1e6, {"n_params": N}), N / 1e6),
    "check_full_finetune_gib": (lambda fx: (16 * 7e9 / 2**30, {"n_params": 7e9}), 2 * 7e9 / 2**30),
    "check_lora_parameters": (lambda fx: (_lora_parameters(fx("tiny_model")), {"model": fx("tiny_model")}), 1),
    "check_nf4_gigabytes": (lambda fx: (4.127, {"n_params": 8e9}), 4.0),
    "check_error_lines": (lambda fx: ([3, 5], {"report": _report()}), [3, 5, 7]),
    "check_best_step": (lambda fx: (50, {"log_history": HISTORY}), 80),
    "check_lora_inputs": (lambda fx: (8, {"lora_inputs": LORA_INPUTS}), 4),
    "check_largest_batch": (lambda fx: (2, {"model": "llama-3.2-1b", "method": "lora", "seq_len": 512,
                                           "memory_gib": 16}), 8),
    "check_adapters_per_copy": (lambda fx: (round(_adapters_per_copy()), {}), 1000),
    "check_olive_samples": (lambda fx: (256, {"max_steps": 400, "batch_size": 4, "epochs": 6.25}), 800),
}


def _checkers():
    import inspect

    from labhelpers.course import exercises

    return {name for name, fn in inspect.getmembers(exercises, inspect.isfunction)
            if name.startswith("check_") and fn.__module__ == exercises.__name__}


def test_every_checker_is_registered():
    untested = sorted(_checkers() - set(EXERCISES))
    assert not untested, f"add a right and a wrong answer for {untested} to EXERCISES in tests/course/test_exercises.py"
    assert not set(EXERCISES) - _checkers(), "EXERCISES names a checker that labhelpers.course.exercises no longer has"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_checker_right_wrong_and_unanswered(name, request):
    from labhelpers.course import exercises

    check = getattr(exercises, name)
    build, wrong = EXERCISES[name]
    right, kwargs = build(request.getfixturevalue)
    assert check(None, **kwargs).ok is None
    fb = check(right, **kwargs)
    assert fb.ok is True and fb.message, (name, fb.message)
    fb = check(wrong, **kwargs)
    assert fb.ok is False, (name, fb.message)
    assert len(fb.message) > 20 and fb.message != check(None, **kwargs).message, (name, fb.message)


# --- every notebook's exercise has its worked solution ------------------------------------

SOLUTIONS_DIR = REPO_ROOT / "solutions"


def _exercise_calls() -> dict[str, set[str]]:
    """Notebook stem -> the exercises.check_* functions its cells call (read from its jupytext source)."""
    return {path.stem: set(re.findall(r"exercises\.(check_\w+)\(", path.read_text(encoding="utf-8")))
            for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))}


def test_every_notebook_has_an_exercise_with_a_real_checker():
    calls = _exercise_calls()
    assert calls
    for stem, called in calls.items():
        assert called, f"{stem}: no cell calls exercises.check_*"
        assert called <= _checkers(), f"{stem} calls {sorted(called - _checkers())}, not in labhelpers.course.exercises"


@pytest.mark.parametrize("stem", sorted(_exercise_calls()))
def test_every_exercise_has_a_solution(stem):
    found = sorted(SOLUTIONS_DIR.glob(f"{stem[:2]}_*.md"))
    assert found, f"{stem} has an exercise but no worked solution: write solutions/{stem}.md"
    assert found[0].read_text(encoding="utf-8").strip()
