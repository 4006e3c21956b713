"""labhelpers.evaluate.textmetrics against values computed by hand."""

import math

import pytest

from labhelpers.evaluate import textmetrics as tm


def test_bleu_hand_computed():
    # precisions 4/5, 3/4, 2/3, 1/2; same length so no brevity penalty
    assert tm.bleu(["a b c d e"], ["a b c d f"]) == pytest.approx(100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25,
                                                                  rel=1e-4)
    # every n-gram right, but 4 words for a 6-word reference: brevity penalty exp(1 - 6/4)
    assert tm.bleu(["a b c d"], ["a b c d e f"]) == pytest.approx(100 * math.exp(1 - 6 / 4), rel=1e-4)
    assert tm.bleu([""], ["a b c d"]) == 0.0


def test_chrf_bounds_and_order():
    assert tm.chrf(["Anna felt sad."], ["Anna felt sad."]) == pytest.approx(100)
    assert tm.chrf([""], ["Anna felt sad."]) == 0.0
    assert (tm.chrf(["Anna felt sad."], ["Anna felt sad at the park."])
            > tm.chrf(["Ben ran."], ["Anna felt sad at the park."]))


def test_rouge_hand_computed_and_empty_prediction():
    # LCS 3 of 3 predicted and 6 reference words: P 1, R 1/2, F 2/3
    assert tm.rouge(["Anna felt sad"], ["Anna felt sad at the park"])["rougeL"] == pytest.approx(2 / 3)
    assert tm.rouge([""], ["Anna felt sad"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_exact_match_and_empty_prediction():
    assert tm.exact_match(["", "It means joy"], ["It means joy.", "it means JOY!"]) == 0.5
    with pytest.raises(ValueError, match="equal"):
        tm.bleu(["a"], ["a", "b"])
