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
