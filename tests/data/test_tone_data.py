import json

import pytest

from labhelpers.data import tone_data as dg
from labhelpers.paths import TONE_CHAT_DIR, TONE_DATA_DIR


def test_regenerating_gives_the_shipped_files(tmp_path):
    paths = dg.write_tone_dataset(tmp_path)
    for split, path in paths.items():
        assert path.read_bytes() == (TONE_DATA_DIR / f"{split}.jsonl").read_bytes(), split


def test_same_seed_same_data_other_seed_other_data():
    assert dg.generate_tone_dataset(seed=0) == dg.generate_tone_dataset(seed=0)
    assert dg.generate_tone_dataset(seed=0) != dg.generate_tone_dataset(seed=1)


def test_splits_are_balanced_and_disjoint():
    data = dg.generate_tone_dataset()
    for split, rows in data.items():
        assert len(rows) == dg.DEFAULT_SIZES[split]
        counts = {t: sum(r["tone"] == t for r in rows) for t in dg.TONES}
        assert len(set(counts.values())) == 1, (split, counts)
    phrases = {s: {r["phrase"] for r in rows} for s, rows in data.items()}
    assert not phrases["train"] & phrases["test"]
    assert not phrases["train"] & phrases["validation"]
    assert not phrases["validation"] & phrases["test"]


def test_held_out_splits_use_unseen_feeling_words():
    data = dg.generate_tone_dataset()
    train_words = {w.strip(".,?").lower() for r in data["train"] for w in r["phrase"].split()}
    cues = dg.cue_splits()
    for tone in dg.TONES:
        for cue in cues["test"][tone]:
            assert cue not in train_words, cue
        assert any(cue in r["phrase"] for r in data["test"] for cue in cues["test"][tone])


def test_no_cue_contains_its_label():
    for tone, cues in dg.TONE_CUES.items():
        assert len(cues) == len(set(cues)) == sum(dg.CUE_SPLIT)
        for cue in cues:
            assert tone not in cue


def test_jsonl_rows_have_phrase_and_tone():
    for split in ("train", "validation", "test"):
        with open(TONE_DATA_DIR / f"{split}.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                assert set(row) == {"phrase", "tone"} and row["tone"] in dg.TONES


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="train"):
        dg.generate_tone_dataset({"train": 10})
    with pytest.raises(ValueError, match="distinct phrases"):
        dg.generate_tone_dataset({"test": 4000})


def test_the_chat_copy_regenerates_and_holds_every_phrase_once(tmp_path):
    from labhelpers.data.chat import conversation_problem

    paths = dg.write_chat_dataset(tmp_path)
    for split, path in paths.items():
        assert path.read_bytes() == (TONE_CHAT_DIR / f"{split}.jsonl").read_bytes(), split
    rows = dg.generate_tone_dataset()["train"]
    chats = dg.conversations(rows)
    assert all(conversation_problem(c["messages"]) is None for c in chats)
    pairs = []
    for c in chats:
        turns = [t for t in c["messages"] if t["role"] != "system"]
        pairs += [(u["content"], a["content"]) for u, a in zip(turns[::2], turns[1::2])]
    assert pairs == [(r["phrase"], r["tone"]) for r in rows]
    sizes = {len([t for t in c["messages"] if t["role"] == "user"]) for c in chats}
    assert sizes == {1, 2, 3} and 0.5 < sum(c["messages"][0]["role"] == "system" for c in chats) / len(chats) < 0.8
