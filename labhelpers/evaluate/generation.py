"""Batched greedy generation for evaluation (left padding, new tokens only)."""

from __future__ import annotations

import torch


def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 32,
                     add_special_tokens: bool = False) -> list[str]:
    """Greedy answers to ``prompts`` (already in the model's prompt format), decoded without specials.

    Left padding keeps every prompt's last token next to its first new token, which decoder-only
    models need in a batch; prompts from ``chat_texts`` already hold BOS, hence
    ``add_special_tokens=False``.
    """

    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    is_module = isinstance(model, torch.nn.Module)   # an optimum ONNX model generates too, with no train mode
    was_training = is_module and model.training
    if is_module:
        model.eval()
    answers: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=add_special_tokens).to(model.device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            answers += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = old_side
        if is_module:
            model.train(was_training)
    return answers
