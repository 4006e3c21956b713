"""Notebook 01's checker: GiB to fully fine-tune a model in bf16 mixed precision (16 bytes/param)."""

import pytest

from labhelpers.course.exercises import check_full_finetune_gib
from labhelpers.memory import estimate

N = 7e9
GIB = 2**30


def test_unanswered_is_not_a_failure():
    fb = check_full_finetune_gib(None)
    assert fb.ok is None and "None" in fb.message


@pytest.mark.parametrize("answer", [16 * N / GIB, round(16 * N / GIB), 104.3])
def test_right_answer(answer):
    fb = check_full_finetune_gib(answer, N)
    assert fb.ok is True, fb.message
    assert "16 bytes per parameter" in fb.message


def test_agrees_with_the_estimator():
    truth = estimate.estimate_memory(int(N), "full", "bf16")["total_gib"]
    assert check_full_finetune_gib(truth, N).ok is True


@pytest.mark.parametrize("answer,hint", [
    (16 * N / 1e9, "GB"),                 # right bytes, wrong unit
    (12 * N / GIB, "master copy"),        # forgot the fp32 master weights
    (2 * N / GIB, "weights alone"),
    (4 * N / GIB, "moments"),
    (8 * N / GIB, "fp32"),
    (1.0, "bytes per parameter"),
])
def test_common_mistakes_get_hints(answer, hint):
    fb = check_full_finetune_gib(answer, N)
    assert fb.ok is False and hint in fb.message, fb.message


@pytest.mark.parametrize("answer", ["104", True, [104.3]])
def test_non_numbers_are_named(answer):
    fb = check_full_finetune_gib(answer, N)
    assert fb.ok is False and "answer_gib" in fb.message


def test_other_sizes():
    assert check_full_finetune_gib(16 * 1e9 / GIB, 1e9).ok is True
    assert check_full_finetune_gib(16 * N / GIB, 1e9).ok is False
