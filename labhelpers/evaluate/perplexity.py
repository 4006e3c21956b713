"""Perplexity on held-out text: exp(mean negative log-likelihood) over exactly the scored tokens.

Averaging per-batch losses would weight a short batch like a long one; summing token losses and
dividing by the token count does not. Labels of -100 (padding, masked prompts) are not scored.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import DataCollatorForSeq2Seq

from labhelpers.data.templates import IGNORE_INDEX


def token_nll(model, batch: dict) -> tuple[float, int]:
    """(sum of token NLL, number of scored tokens) of one batch with ``input_ids`` and ``labels``."""

    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    # Causal LM: the logits at position t predict the token at t + 1.
    logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                          ignore_index=IGNORE_INDEX, reduction="sum")
    return float(nll), int((labels != IGNORE_INDEX).sum())


def perplexity(model, examples: list[dict], tokenizer, batch_size: int = 16) -> dict:
    """Perplexity of ``model`` on tokenized ``examples`` (input_ids, attention_mask, labels).

    Returns ``{"perplexity", "mean_nll", "tokens"}``. With response-only labels it scores answers only.
    """

    if not examples:
        raise ValueError("perplexity needs at least one example")
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(examples), batch_size):
            batch = collate([{k: list(e[k]) for k in ("input_ids", "attention_mask", "labels")}
                             for e in examples[i:i + batch_size]])
            batch = {k: v.to(model.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            s, n = token_nll(model, batch)
            total, count = total + s, count + n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no token is scored: every label is -100 (check response-only masking and truncation)")
    mean = total / count
    return {"perplexity": math.exp(mean), "mean_nll": mean, "tokens": count}
