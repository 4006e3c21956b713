"""The course's generated task data: phrase -> tone, in the spirit of the chapter's first example.

Held-out splits use feeling words *and* sentence frames that the training split never shows, so
test accuracy measures generalisation, not memory. Which feeling word means which tone is
knowledge the base model got in pretraining (see ``basemodel.py``): fine-tuning only has to teach
the task and its format. Run ``python -m labhelpers.data.tone_data --out data/tone`` to regenerate
(``--chat --out data/tone_chat``: the same phrases as system/user/assistant conversations).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from labhelpers.models.corpus import TONE_CUES, TONES
from labhelpers.paths import TONE_CHAT_DIR, TONE_DATA_DIR

#: (subject, past form of "to be") so frames stay grammatical.
SUBJECTS = [("I", "was"), ("we", "were"), ("my brother", "was"), ("my sister", "was"),
            ("the kids", "were"), ("our neighbor", "was"), ("my friend", "was"),
            ("the whole team", "was"), ("grandma", "was"), ("the teacher", "was"),
            ("my roommate", "was"), ("everyone at work", "was"), ("the new intern", "was"),
            ("my parents", "were")]

#: Tone-neutral sentence frames; {cue} carries the tone.
FRAMES = [
    "{S} {be} {cue} after the phone call.",
    "Honestly, {s} {be} {cue} all morning.",
    "{S} {be} so {cue} when the letter arrived.",
    "After the meeting {s} felt {cue}.",
    "{S} looked {cue} at dinner last night.",
    "By the end of the trip {s} {be} {cue}.",
    "{S} felt {cue} reading the message.",
    "When the lights came on, {s} {be} {cue}.",
    "{S} {be} really {cue} about the results.",
    "On the way home {s} felt {cue}.",
    "{S} seemed {cue} this afternoon.",
    "At the station {s} {be} {cue}.",
    "{S} {be} {cue} to hear the news.",
    "Right after the game {s} felt {cue}.",
    "{S} got {cue} when the door opened.",
    "All week {s} {be} quite {cue}.",
    # Frames from here on are held out: only validation and test use them.
    "{S} {be} {cue} the moment the results came in.",
    "Later that evening {s} felt very {cue}.",
    "{S} sounded {cue} on the phone.",
    "During the storm {s} {be} {cue}.",
    "{S} {be} {cue} after opening the box.",
    "At the party {s} felt a little {cue}.",
    "{S} came back from the market {cue}.",
    "This morning {s} {be} completely {cue}.",
]
N_TRAIN_FRAMES = 16
#: Per tone: this many cues for training, then validation, then test (disjoint).
CUE_SPLIT = (10, 3, 3)
DEFAULT_SIZES = {"train": 800, "validation": 100, "test": 200}


def cue_splits(seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """Which feeling words each split may use: ``{split: {tone: [cues]}}``, disjoint across splits."""
    rng = random.Random(seed)
    out: dict[str, dict[str, list[str]]] = {"train": {}, "validation": {}, "test": {}}
    n_tr, n_va, _ = CUE_SPLIT
    for tone in TONES:
        cues = list(TONE_CUES[tone])
        rng.shuffle(cues)
        out["train"][tone] = cues[:n_tr]
        out["validation"][tone] = cues[n_tr:n_tr + n_va]
        out["test"][tone] = cues[n_tr + n_va:]
    return out


def _render(frame: str, subject: tuple[str, str], cue: str) -> str:
    s, be = subject
    text = frame.format(S=s[0].upper() + s[1:], s=s, be=be, cue=cue)
    return text


def generate_tone_dataset(sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, list[dict]]:
    """Return ``{split: [{"phrase", "tone"}, ...]}``, balanced per tone, no phrase in two splits."""
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    for split, n in sizes.items():
        if n % len(TONES):
            raise ValueError(f"size of split {split!r} ({n}) must be a multiple of {len(TONES)} "
                             "so every tone gets the same number of rows")
    cues = cue_splits(seed)
    frames = {"train": FRAMES[:N_TRAIN_FRAMES], "validation": FRAMES[N_TRAIN_FRAMES:],
              "test": FRAMES[N_TRAIN_FRAMES:]}
    rng = random.Random(seed + 1)
    data: dict[str, list[dict]] = {}
    for split, n in sizes.items():
        rows = []
        for tone in TONES:
            pool = [_render(f, s, c) for f in frames[split] for s in SUBJECTS for c in cues[split][tone]]
            per_tone = n // len(TONES)
            if per_tone > len(pool):
                raise ValueError(f"split {split!r} asks for {per_tone} rows per tone but only "
                                 f"{len(pool)} distinct phrases exist; lower its size")
            rows += [{"phrase": p, "tone": tone} for p in rng.sample(pool, per_tone)]
        rng.shuffle(rows)
        data[split] = rows
    return data


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_tone_dataset(out_dir: str | Path, seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, Path]:
    """Write ``train/validation/test.jsonl`` into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    paths = {}
    for split, rows in generate_tone_dataset(sizes, seed).items():
        paths[split] = out_dir / f"{split}.jsonl"
        write_jsonl(rows, paths[split])
    return paths


#: system prompts of the chat-format copy (``conversations``); some conversations have none
SYSTEM_PROMPTS = ["Name the tone of each phrase: joy, sad, fear or surprise.",
                  "You label phrases by tone. Answer with one word: joy, sad, fear or surprise.",
                  "Reply with the tone of the user's phrase, nothing else."]


def conversations(rows: list[dict], seed: int = 0, max_exchanges: int = 3) -> list[dict]:
    """The rows as chat-format records ``{"messages": [...]}``: each takes the next 1 to ``max_exchanges`` rows
    as user/assistant exchanges, two in three with a system prompt first; every row is used once."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(rows):
        n = rng.randint(1, max_exchanges)
        turns = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < 2 / 3 else []
        for row in rows[i:i + n]:
            turns += [{"role": "user", "content": row["phrase"]}, {"role": "assistant", "content": row["tone"]}]
        out.append({"messages": turns})
        i += n
    return out


def write_chat_dataset(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the train and validation splits as conversations (``conversations``) into ``out_dir``."""
    data = generate_tone_dataset(None, seed)
    paths = {}
    for split in ("train", "validation"):
        paths[split] = Path(out_dir) / f"{split}.jsonl"
        write_jsonl(conversations(data[split], seed=seed), paths[split])
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Generate the course's phrase -> tone dataset.")
    ap.add_argument("--out", default=None, help="output folder (default: data/tone)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chat", action="store_true", help="write the chat-format copy (messages) instead")
    args = ap.parse_args(argv)
    if args.chat:
        paths = write_chat_dataset(args.out or TONE_CHAT_DIR, seed=args.seed)
    else:
        paths = write_tone_dataset(args.out or TONE_DATA_DIR, seed=args.seed)
    for split, p in paths.items():
        print(f"{split:<10} {sum(1 for _ in open(p)):>5} rows  {p}")


if __name__ == "__main__":
    main()
