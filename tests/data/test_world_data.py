"""labhelpers.data.world_data: a task the tiny corpus holds no word of, with held-out words."""

import re

import pytest

from labhelpers.data import world_data
from labhelpers.models import corpus


@pytest.fixture(scope="module")
def corpus_words():
    return set(re.findall(r"[a-z]+", " ".join(corpus.generate_corpus(n_docs=20000, seed=0)).lower()))


def test_no_task_word_occurs_in_the_tiny_corpus(corpus_words):
    words = {w.lower() for ws in world_data.WORDS.values() for w in ws}
    assert len(words) == sum(len(ws) for ws in world_data.WORDS.values()), "a word sits under two labels"
    assert not words & corpus_words, sorted(words & corpus_words)


def test_the_test_words_never_occur_in_training():
    rows = world_data.generate(seed=3)
    word = re.compile(r"[A-Za-z]+")
    vocab = {w.lower() for ws in world_data.WORDS.values() for w in ws}
    train_words = {w.lower() for r in rows["train"] for w in word.findall(r["text"])} & vocab
    test_words = {w.lower() for r in rows["test"] for w in word.findall(r["text"])} & vocab
    assert len(test_words) == world_data.N_TEST_WORDS * len(world_data.LABELS) == len(rows["test"])
    assert not train_words & test_words


def test_rows_are_balanced_distinct_and_seeded():
    rows = world_data.generate(n_train_per_label=60, seed=0)
    labels = [r["label"] for r in rows["train"]]
    assert {lab: labels.count(lab) for lab in world_data.LABELS} == {lab: 60 for lab in world_data.LABELS}
    assert len({r["text"] for r in rows["train"]}) == len(rows["train"])
    assert world_data.generate(60, seed=0) == rows and world_data.generate(60, seed=1) != rows


def test_bad_sizes_are_named(tmp_path):
    with pytest.raises(ValueError, match="n_train_per_label=0"):
        world_data.generate(0)
    with pytest.raises(ValueError, match="has only"):
        world_data.generate(10_000)
    paths = world_data.write(tmp_path / "w", 20)
    assert paths["train"].read_text().count("\n") == 60 and paths["test"].is_file()
