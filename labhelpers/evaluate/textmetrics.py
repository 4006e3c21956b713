"""Metrics for generated text: exact match, JSON field match, keyword coverage, ROUGE (rouge-score),
BLEU and chrF (sacrebleu)."""

from __future__ import annotations

import json
import re

import sacrebleu
from rouge_score import rouge_scorer


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def exact_match(preds: list[str], refs: list[str]) -> float:
    """Share of predictions equal to their reference, ignoring case, punctuation and extra spaces."""
    _same_length(preds, refs)
    return sum(_norm(p) == _norm(r) for p, r in zip(preds, refs)) / len(refs)


def parse_json_object(text: str) -> dict | None:
    """The first JSON object in ``text``, or None if there is none that parses."""
    start = str(text).find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def field_match(preds: list[str], refs: list[str | dict]) -> dict:
    """Extraction scores: ``field_accuracy`` (share of reference fields whose value is exactly right),
    ``all_fields`` (share of rows with every field right) and ``valid_json`` (share that parse)."""
    _same_length(preds, refs)
    right = total = rows_ok = valid = 0
    for p, r in zip(preds, refs):
        ref = json.loads(r) if isinstance(r, str) else r
        got = parse_json_object(p)
        valid += got is not None
        ok = [got is not None and got.get(k) == v for k, v in ref.items()]
        right += sum(ok)
        total += len(ok)
        rows_ok += all(ok)
    return {"field_accuracy": right / total, "all_fields": rows_ok / len(refs), "valid_json": valid / len(refs)}


def keyword_coverage(preds: list[str], keywords: list[list[str]]) -> float:
    """Share of the required words that appear (as whole words) in each prediction, averaged."""
    _same_length(preds, keywords)
    scores = []
    for p, kws in zip(preds, keywords):
        words = set(_norm(p).split())
        scores.append(sum(_norm(k) in words for k in kws) / len(kws))
    return sum(scores) / len(scores)


def rouge(preds: list[str], refs: list[str]) -> dict:
    """Mean ROUGE-1/2/L F-measures (rouge-score, stemming on)."""

    _same_length(preds, refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for p, r in zip(preds, refs):
        for k, s in scorer.score(r, p).items():
            totals[k] += s.fmeasure
    return {k: v / len(refs) for k, v in totals.items()}


def bleu(preds: list[str], refs: list[str]) -> float:
    """Corpus BLEU (sacrebleu, 0-100) with one reference per prediction."""

    _same_length(preds, refs)
    return float(sacrebleu.corpus_bleu([str(p) for p in preds], [[str(r) for r in refs]]).score)


def chrf(preds: list[str], refs: list[str]) -> float:
    """Corpus chrF (sacrebleu, 0-100): character n-gram F-score, kinder than BLEU to short texts."""

    _same_length(preds, refs)
    return float(sacrebleu.corpus_chrf([str(p) for p in preds], [[str(r) for r in refs]]).score)


def _same_length(a, b) -> None:
    if len(a) != len(b) or not a:
        raise ValueError(f"need equal, non-empty lists (got {len(a)} predictions, {len(b)} references)")
