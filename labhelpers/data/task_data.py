"""Small generated datasets for the chapter's task types, in words the embedded base model knows.

The tiny base model was pretrained on ``corpus.py``'s word lists, so these tasks use the same names,
jobs, places, animals, foods and feeling words: fine-tuning only has to teach the task and its format.
Every generator is deterministic for a seed, and no ``input`` occurs twice in one call.

Tasks (``TASKS``), each a list of records:
- ``qa``: a question about a feeling word -> its meaning (``input``/``output``, the chapter's second
  example);
- ``classification``: a sentence -> its tone (``text``/``label``);
- ``generation``: "write a <tone> sentence about <place>" -> a sentence (``input``/``output``, plus the
  ``tone`` it must have, checked with ``on_tone``);
- ``extraction``: a sentence -> JSON with the ``place`` it happened and the ``tone`` (``input``/``output``);
- ``summarization``: three sentences -> the one-sentence gist: who felt what, where (``input``/``output``).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from labhelpers.data.tone_data import TONE_CUES, TONES, write_jsonl
from labhelpers.models.corpus import ANIMALS, JOBS, LABEL_FEEL, NAMES, PLACES, THINGS, TIMES

WEATHER = ["sunny", "rainy", "windy", "foggy", "snowy", "cold", "warm"]
#: What the base model learned about each tone word (corpus.KNOWLEDGE uses these forms).
FEEL = LABEL_FEEL

# A 3.7 M-parameter base model knows little. What it does know from pretraining: which feeling word
# goes with which tone (corpus.KNOWLEDGE), the everyday words, how to repeat a name or place from
# earlier in its context (corpus.STORY) and what a one-line JSON record looks like (corpus.RECORDS).
# Every task's answer is built from those pieces, so a short fine-tune only has to teach the task.

QA_FRAMES = ["What does the word {cue} mean?", "Which feeling is {cue}?", "If someone is {cue}, how do they feel?",
             "What is the tone of the word {cue}?", "My friend says she is {cue}. What does she feel?",
             "Explain the word {cue} in one word."]


def _qa(rng):
    tone = rng.choice(TONES)
    cue = rng.choice(TONE_CUES[tone])
    return {"input": rng.choice(QA_FRAMES).format(cue=cue), "output": f"It means {FEEL[tone]}."}


CLASS_FRAMES = ["The {job} at {place} was {cue} {time}.", "{name} felt {cue} near {place}.",
                "{time_cap} the {job} looked {cue}.", "{name} and the {animal} were {cue} at {place}."]


def _classification(rng):
    tone = rng.choice(TONES)
    time = rng.choice(TIMES)
    text = rng.choice(CLASS_FRAMES).format(job=rng.choice(JOBS), place=rng.choice(PLACES),
                                           cue=rng.choice(TONE_CUES[tone]), time=time,
                                           time_cap=time[0].upper() + time[1:], name=rng.choice(NAMES),
                                           animal=rng.choice(ANIMALS))
    return {"text": text[0].upper() + text[1:], "label": tone}


GEN_FRAMES = ["Write a {feel} sentence about {place}.", "Give me one {feel} line set at {place}.",
              "Describe a {feel} moment at {place}.", "A short {feel} sentence about {place}, please.",
              "Write one sentence about {place} with a {feel} tone."]


def _generation(rng):
    tone, place, name = rng.choice(TONES), rng.choice(PLACES), rng.choice(NAMES)
    return {"input": rng.choice(GEN_FRAMES).format(feel=FEEL[tone], place=place),
            "output": f"At {place}, {name} was {rng.choice(TONE_CUES[tone])}.", "tone": tone}


def on_tone(text: str, tone: str) -> bool:
    """Whether ``text`` uses a feeling word of ``tone`` (and none of another tone)."""
    words = set(str(text).lower().replace(".", " ").replace(",", " ").split())
    hits = {t for t, cues in TONE_CUES.items() if words & set(cues)}
    return hits == {tone}


def _extraction(rng):
    tone, name, place = rng.choice(TONES), rng.choice(NAMES), rng.choice(PLACES)
    time = rng.choice(TIMES)
    time_cap = time[0].upper() + time[1:]
    cue = rng.choice(TONE_CUES[tone])
    text = rng.choice([f"{name} was {cue} at {place} {time}.", f"{time_cap}, {name} felt {cue} at {place}.",
                       f"{name} looked {cue} near {place}."])
    return {"input": text, "output": json.dumps({"place": place, "tone": tone})}


def _summarization(rng):
    tone, name, place = rng.choice(TONES), rng.choice(NAMES), rng.choice(PLACES)
    weather, time, thing = rng.choice(WEATHER), rng.choice(TIMES), rng.choice(THINGS)
    sents = [f"{name} went to {place} {time}.", f"The weather was {weather}.",
             f"{name} was {rng.choice(TONE_CUES[tone])} to find {thing} there."]
    if rng.random() < 0.5:
        sents[1], sents[2] = sents[2], sents[1]
    return {"input": " ".join(sents), "output": f"{name} felt {FEEL[tone]} at {place}."}


TASKS = {"qa": _qa, "classification": _classification, "generation": _generation,
         "extraction": _extraction, "summarization": _summarization}
#: The field a task's input lives in (classification uses text/label like most classification sets).
INPUT_FIELD = {t: ("text" if t == "classification" else "input") for t in TASKS}
OUTPUT_FIELD = {t: ("label" if t == "classification" else "output") for t in TASKS}


def generate_task(task: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct records of ``task`` (deterministic for ``seed``)."""
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {', '.join(TASKS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer")
    rng = random.Random(f"{task}-{seed}")
    key = INPUT_FIELD[task]
    rows, seen = [], set()
    for _ in range(n * 50):
        row = TASKS[task](rng)
        if row[key] not in seen:
            seen.add(row[key])
            rows.append(row)
            if len(rows) == n:
                return rows
    raise ValueError(f"could not make {n} distinct {task} records; ask for fewer")


def generate_splits(task: str, sizes: dict[str, int], seed: int = 0) -> dict[str, list[dict]]:
    """``{split: rows}`` with no input shared between splits (one pool, cut in order)."""
    rows = generate_task(task, sum(sizes.values()), seed)
    out, i = {}, 0
    for split, n in sizes.items():
        out[split] = rows[i:i + n]
        i += n
    return out


def write_task(task: str, out_dir: str | Path, sizes: dict[str, int], seed: int = 0) -> dict[str, Path]:
    """Write ``<out_dir>/<split>.jsonl`` for each split; returns the paths."""
    paths = {}
    for split, rows in generate_splits(task, sizes, seed).items():
        paths[split] = Path(out_dir) / f"{split}.jsonl"
        write_jsonl(rows, paths[split])
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a generated task dataset as JSONL splits.")
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for split, p in write_task(args.task, args.out, {"train": args.train, "test": args.test}, args.seed).items():
        print(f"{split:<6} {p}")


if __name__ == "__main__":
    main()
