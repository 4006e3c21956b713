"""Comparing models on one held-out set, and scoring answers with a human rubric.

``compare`` runs the same evaluation function on several models (base, LoRA, QLoRA, merged, an ONNX
session...) and puts their metrics in one table; ``largest_differences`` shows where two of them
disagree most. ``rubric_scores`` and ``rater_agreement`` turn human ratings into numbers you can track.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd
from sklearn.metrics import cohen_kappa_score


def compare(models: dict, evaluate: Callable) -> tuple:
    """``(table, outputs)``: ``evaluate(model) -> (answers, metrics)`` for each named model.

    ``table`` is a pandas DataFrame, one row per model; ``outputs`` maps each name to its answers, so
    the same predictions feed ``largest_differences`` without generating twice.
    """

    if not models:
        raise ValueError("compare needs at least one model")
    rows, outputs = {}, {}
    for name, model in models.items():
        answers, metrics = evaluate(model)
        outputs[name] = answers
        rows[name] = metrics
    return pd.DataFrame.from_dict(rows, orient="index"), outputs


def largest_differences(inputs: list[str], refs: list[str], a: list[str], b: list[str],
                        score: Callable[[str, str], float], names=("a", "b"), n: int = 5):
    """The ``n`` rows where ``score(pred, ref)`` differs most between predictions ``a`` and ``b``."""

    if not (len(inputs) == len(refs) == len(a) == len(b)) or not inputs:
        raise ValueError(f"need equal, non-empty lists (got {len(inputs)}, {len(refs)}, {len(a)}, {len(b)})")
    frame = pd.DataFrame({"input": inputs, "reference": refs, names[0]: a, names[1]: b})
    frame["gain"] = [score(y, r) - score(x, r) for x, y, r in zip(a, b, refs)]
    return frame.reindex(frame["gain"].abs().sort_values(ascending=False, kind="stable").index).head(n)


def rubric_scores(ratings: list[dict], weights: dict[str, float], scale: tuple[int, int] = (1, 5)):
    """Weighted rubric score per rated answer, on 0-1.

    ``ratings``: one dict per answer, criterion -> integer score on ``scale`` (e.g. 1-5 for
    "correct", "helpful", "tone"). A missing criterion or an out-of-scale score is an error naming
    the answer and criterion. Returns a pandas table with the ratings and a ``score`` column.
    """

    lo, hi = scale
    if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"weights {weights!r} must be non-negative with a positive sum")
    total = sum(weights.values())
    scores = []
    for i, r in enumerate(ratings):
        for c in weights:
            v = r.get(c)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"rating {i}, criterion {c!r}: {v!r} is not an integer from {lo} to {hi}")
        scores.append(sum(weights[c] * (r[c] - lo) / (hi - lo) for c in weights) / total)
    frame = pd.DataFrame(ratings)
    frame["score"] = scores
    return frame


def rater_agreement(a: list[int], b: list[int]) -> float:
    """Cohen's kappa (quadratic weights, for ordinal scores) between two raters' scores of the same answers:
    1 is perfect agreement, 0 is chance level."""

    if len(a) != len(b) or not a:
        raise ValueError(f"need equal, non-empty lists (got {len(a)} and {len(b)} ratings)")
    return float(cohen_kappa_score(a, b, weights="quadratic"))
