"""The phrase -> tone task packaged for the notebooks after 02, which spells each step out.

Data loading, chat-template encoding with response-only labels, held-out prompts and scoring by
generation: the same steps as notebook 02, in one object so later lessons stay on their topic.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from labhelpers.data.templates import chat_texts, tokenize_example
from labhelpers.data.tone_data import TONES
from labhelpers.evaluate.generation import generate_answers
from labhelpers.evaluate.metrics import classification_scores, parse_label
from labhelpers.paths import TONE_DATA_DIR

SPLITS = ("train", "validation", "test")


class ToneTask:
    """``task.train`` (tokenized), ``task.test`` (rows), ``task.evaluate(model)`` -> (answers, scores)."""

    labels = TONES

    def __init__(self, tokenizer, n_test: int = 200, max_length: int = 64, data_dir: str | Path = TONE_DATA_DIR):
        self.tokenizer = tokenizer
        self.max_length = max_length
        data_dir = Path(data_dir)
        self.data = datasets.load_dataset("json", data_files={s: str(data_dir / f"{s}.jsonl") for s in SPLITS})
        self.test = self.data["test"].select(range(min(n_test, len(self.data["test"]))))
        self.prompts = [chat_texts(tokenizer, p)[0] for p in self.test["phrase"]]
        self._tokenized: dict = {}

    def encode(self, row: dict) -> dict:
        prompt, full = chat_texts(self.tokenizer, row["phrase"], row["tone"])
        return tokenize_example(self.tokenizer, prompt, full, max_length=self.max_length)

    def tokenized(self, split: str = "train"):
        """A split as input_ids / attention_mask / labels (cached)."""
        if split not in self._tokenized:
            ds = self.data[split]
            self._tokenized[split] = ds.map(self.encode, remove_columns=ds.column_names)
        return self._tokenized[split]

    @property
    def train(self):
        return self.tokenized("train")

    def evaluate(self, model, batch_size: int = 32) -> tuple[list[str], dict]:
        """Greedy answers to the held-out prompts and their scores (accuracy, F1, unparseable)."""
        answers = generate_answers(model, self.tokenizer, self.prompts, max_new_tokens=4, batch_size=batch_size)
        preds = [parse_label(a, self.labels) for a in answers]
        return answers, classification_scores(self.test["tone"], preds, self.labels)
