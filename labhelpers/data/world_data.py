"""A task that needs world knowledge: sort a word into country, sport or body part.

None of these words occurs in the tiny Llama's pretraining corpus (``tests/data/test_world_data.py``
checks it against the corpus itself), and the test split's words never occur in training. Only a base model
that learned what "Kenya" or "badminton" is in pretraining can answer a held-out word: measured in notebook 04
(40 LoRA steps), the tiny model does not even learn the new label words (0.00, below the chance of 1/3),
SmolLM2-135M gets 1.00.
Rows are ``{"text", "label"}`` like the course's other classification data.
"""

from __future__ import annotations

import random
from pathlib import Path

from labhelpers.data.tone_data import write_jsonl

LABELS = ("country", "sport", "body")
WORDS = {
    "country": """France Germany Spain Italy Japan China India Brazil Mexico Canada Egypt Kenya Nigeria Peru Chile
        Argentina Russia Poland Sweden Norway Finland Denmark Greece Turkey Vietnam Thailand Indonesia Australia
        Portugal Ireland Austria Hungary Ukraine Morocco Ghana Ethiopia Colombia Cuba Pakistan Nepal""".split(),
    "sport": """football tennis basketball baseball golf hockey cricket rugby volleyball boxing swimming cycling
        skiing surfing wrestling badminton archery fencing rowing karate judo bowling snowboarding handball
        squash skating lacrosse triathlon gymnastics softball""".split(),
    "body": """heart lung liver kidney brain stomach elbow knee ankle wrist shoulder finger thumb spine skull
        tongue tooth hip chin cheek forehead jaw neck throat thigh toe heel eyebrow eyelid""".split(),
}
FRAMES = ["Is {word} a country, a sport or a part of the body?",
          "Which kind of word is {word}: country, sport or body?",
          "Sort this word into country, sport or body: {word}",
          "{word}: is it a country, a sport, or a body part?"]
N_TEST_WORDS = 10  # per label: 30 held-out words in all


def word_splits(seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """``{"train": {label: words}, "test": {label: words}}``: each label's last ``N_TEST_WORDS`` words of a
    seeded shuffle are held out."""
    rng = random.Random(f"world-{seed}")
    out = {"train": {}, "test": {}}
    for label in LABELS:
        words = list(WORDS[label])
        rng.shuffle(words)
        out["train"][label], out["test"][label] = words[:-N_TEST_WORDS], words[-N_TEST_WORDS:]
    return out


def generate(n_train_per_label: int = 64, seed: int = 0) -> dict[str, list[dict]]:
    """Balanced train rows (distinct word-frame pairs) and one test row per held-out word, shuffled."""
    if isinstance(n_train_per_label, bool) or not isinstance(n_train_per_label, int) or n_train_per_label < 1:
        raise ValueError(f"n_train_per_label={n_train_per_label!r} must be a positive integer")
    rng = random.Random(f"world-rows-{seed}")
    words = word_splits(seed)
    train = []
    for label in LABELS:
        pairs = [(w, f) for w in words["train"][label] for f in FRAMES]
        if n_train_per_label > len(pairs):
            raise ValueError(f"n_train_per_label={n_train_per_label}: {label} has only {len(pairs)} distinct rows")
        train += [{"text": f.format(word=w), "label": label} for w, f in rng.sample(pairs, n_train_per_label)]
    test = [{"text": FRAMES[i % len(FRAMES)].format(word=w), "label": label}
            for label in LABELS for i, w in enumerate(words["test"][label])]
    rng.shuffle(train)
    rng.shuffle(test)
    return {"train": train, "test": test}


def write(out_dir: str | Path, n_train_per_label: int = 64, seed: int = 0) -> dict[str, Path]:
    """Write ``train.jsonl`` and ``test.jsonl`` under ``out_dir``; returns the paths."""
    paths = {}
    for split, rows in generate(n_train_per_label, seed).items():
        paths[split] = Path(out_dir) / f"{split}.jsonl"
        write_jsonl(rows, paths[split])
    return paths
