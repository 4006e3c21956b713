"""labhelpers.evaluate.perplexity: exp(mean NLL over exactly the scored tokens), checked against the model's own
loss."""

import math

import pytest
import torch

from labhelpers.data.templates import tokenize_example
from labhelpers.evaluate.perplexity import perplexity


def _examples(tok, pairs, response_only=True):
    return [tokenize_example(tok, tok.bos_token + "<|user|> " + p + "</s><|assistant|>",
                             tok.bos_token + "<|user|> " + p + "</s><|assistant|> " + a, response_only=response_only)
            for p, a in pairs]


PAIRS = [("What is glad?", "It means joy."), ("Which feeling is gloomy, in the end?", "It means sad."),
         ("Tense?", "It means fear, mostly, I think.")]


def test_single_example_equals_exp_of_the_model_loss(tiny_model, tiny_tokenizer):
    ex = _examples(tiny_tokenizer, PAIRS[:1])[0]
    with torch.no_grad():
        loss = tiny_model(input_ids=torch.tensor([ex["input_ids"]]), labels=torch.tensor([ex["labels"]])).loss
    got = perplexity(tiny_model, [ex], tiny_tokenizer)
    assert got["perplexity"] == pytest.approx(math.exp(float(loss)), rel=1e-5)
    assert got["tokens"] == sum(label != -100 for label in ex["labels"][1:])


def test_many_examples_weight_tokens_not_batches(tiny_model, tiny_tokenizer):
    exs = _examples(tiny_tokenizer, PAIRS)
    total = count = 0.0
    for ex in exs:  # independently: per-example mean loss times its token count
        with torch.no_grad():
            loss = tiny_model(input_ids=torch.tensor([ex["input_ids"]]), labels=torch.tensor([ex["labels"]])).loss
        n = sum(label != -100 for label in ex["labels"][1:])
        total, count = total + float(loss) * n, count + n
    for bs in (1, 2, 3):  # padding and batch size must not change the result
        assert perplexity(tiny_model, exs, tiny_tokenizer, batch_size=bs)["perplexity"] == pytest.approx(
            math.exp(total / count), rel=1e-5)
    full = perplexity(tiny_model, _examples(tiny_tokenizer, PAIRS, response_only=False), tiny_tokenizer)
    assert full["tokens"] > count  # without masking, prompts are scored too


def test_nothing_to_score_is_an_error(tiny_model, tiny_tokenizer):
    ex = _examples(tiny_tokenizer, PAIRS[:1])[0]
    ex = {**ex, "labels": [-100] * len(ex["labels"])}
    with pytest.raises(ValueError, match="no token is scored"):
        perplexity(tiny_model, [ex], tiny_tokenizer)
    with pytest.raises(ValueError, match="at least one"):
        perplexity(tiny_model, [], tiny_tokenizer)
