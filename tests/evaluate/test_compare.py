"""labhelpers.evaluate.compare: one table for several models, largest differences, rubric scoring."""

import pytest

from labhelpers.evaluate import compare as ev


def test_compare_runs_each_model_once_and_tables_the_metrics():
    calls = []

    def evaluate(model):
        calls.append(model)
        return [f"{model}-answer"], {"accuracy": {"base": 0.1, "tuned": 0.9}[model], "f1": 0.5}

    table, outputs = ev.compare({"base model": "base", "LoRA": "tuned"}, evaluate)
    assert calls == ["base", "tuned"]
    assert list(table.index) == ["base model", "LoRA"] and table.loc["LoRA", "accuracy"] == 0.9
    assert outputs["LoRA"] == ["tuned-answer"]
    with pytest.raises(ValueError):
        ev.compare({}, evaluate)


def test_largest_differences_ranks_by_absolute_gain():
    def same(p, r):
        return float(p == r)

    t = ev.largest_differences(["q1", "q2", "q3"], ["x", "y", "z"], ["x", "n", "n"], ["n", "y", "n"], same,
                               names=("base", "tuned"), n=2)
    assert list(t["input"]) == ["q1", "q2"] and list(t["gain"]) == [-1.0, 1.0]
    assert list(t.columns) == ["input", "reference", "base", "tuned", "gain"]


def test_rubric_scores_weighted_on_zero_to_one():
    t = ev.rubric_scores([{"correct": 5, "tone": 1}, {"correct": 3, "tone": 5}], {"correct": 3, "tone": 1})
    assert list(t["score"]) == pytest.approx([3 / 4, (3 * 0.5 + 1) / 4])
    with pytest.raises(ValueError, match="rating 1, criterion 'tone'"):
        ev.rubric_scores([{"correct": 5, "tone": 1}, {"correct": 5, "tone": 6}], {"correct": 1, "tone": 1})
    with pytest.raises(ValueError, match="rating 0, criterion 'tone'"):
        ev.rubric_scores([{"correct": 5}], {"correct": 1, "tone": 1})


def test_rater_agreement_kappa():
    assert ev.rater_agreement([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert ev.rater_agreement([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) < 0
