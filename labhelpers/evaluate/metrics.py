"""Classification metrics on top of scikit-learn: robust answer parsing, accuracy, F1, confusion matrix.

Text metrics (BLEU, chrF, ROUGE, exact match) are in ``textmetrics``; perplexity in ``perplexity``."""

from __future__ import annotations

import re

import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

UNPARSEABLE = "<unparseable>"


def parse_label(answer: str, labels: list[str] | tuple[str, ...]) -> str:
    """The label a generated answer names: its first word, case and punctuation ignored.

    Anything else is ``UNPARSEABLE`` and is counted as wrong, never guessed.
    """
    words = re.findall(r"[a-z]+", answer.lower())
    wanted = {label.lower(): label for label in labels}
    return wanted.get(words[0], UNPARSEABLE) if words else UNPARSEABLE


def find_label(answer: str, labels: list[str] | tuple[str, ...]) -> str:
    """The first label named anywhere in a free-form answer ("The tone of this sentence is fear.").

    A lenient reading for models that were only asked, never trained on the answer format."""
    wanted = {label.lower(): label for label in labels}
    return next((wanted[w] for w in re.findall(r"[a-z]+", answer.lower()) if w in wanted), UNPARSEABLE)


def classification_scores(y_true: list[str], y_pred: list[str], labels: list[str] | tuple[str, ...]) -> dict:
    """Accuracy, macro F1, per-class F1 and the share of unparseable answers (flat dict)."""

    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"need equal, non-empty lists (got {len(y_true)} labels, {len(y_pred)} predictions)")
    labels = list(labels)
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "unparseable": sum(p == UNPARSEABLE for p in y_pred) / len(y_pred),
    }
    out.update({f"f1_{label}": float(f) for label, f in zip(labels, per_class)})
    return out


def confusion_table(y_true: list[str], y_pred: list[str], labels: list[str] | tuple[str, ...]):
    """Confusion matrix as a pandas table: rows are the true labels, columns the predictions, with an
    ``<unparseable>`` column only when some answers could not be parsed."""

    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"need equal, non-empty lists (got {len(y_true)} labels, {len(y_pred)} predictions)")
    cols = list(labels) + ([UNPARSEABLE] if UNPARSEABLE in y_pred else [])
    m = confusion_matrix(y_true, y_pred, labels=cols)
    return pd.DataFrame(m[: len(labels)], index=pd.Index(list(labels), name="true"),
                        columns=pd.Index(cols, name="predicted"))
