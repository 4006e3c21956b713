import json

import pytest

from labhelpers.data.tone_data import TONES
from labhelpers.errors import OverwriteError
from labhelpers.models import basemodel as bm
from labhelpers.models.corpus import generate_corpus
from labhelpers.paths import BASE_MODEL_DIR


def test_corpus_is_deterministic_and_ties_cues_to_tones():
    a, b = generate_corpus(300, seed=3), generate_corpus(300, seed=3)
    assert a == b and a != generate_corpus(300, seed=4)
    text = " ".join(generate_corpus(2000))
    for tone in TONES:
        assert f" {tone}" in text
    assert "<|user|>" not in text and "<|assistant|>" not in text  # a base model never sees the chat format


def test_corpus_rewards_copying_and_holds_json():
    import random

    from labhelpers.models import corpus

    rng = random.Random(0)
    for _ in range(50):
        doc = corpus.story(rng)
        first = doc.split()[0]
        assert first in corpus.NAMES and doc.count(first) >= 3, doc  # the same person recurs
        sentence, _, obj = corpus.record(rng).partition(" {")
        fields = json.loads("{" + obj)
        for value in fields.values():
            for v in value if isinstance(value, list) else [value]:
                assert v in sentence, (v, sentence)  # every JSON value is copied from its sentence


def test_test_size_build_loads_like_a_hub_model(tiny_model_dir, tiny_tokenizer, tiny_model):
    files = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "build_info.json", "README.md"} <= files
    assert not any(n.endswith(".bin") for n in files)  # safetensors only
    assert len(tiny_tokenizer) == bm.SPECS["test"].vocab_size
    assert tiny_tokenizer.model_input_names == ["input_ids", "attention_mask"]
    assert tiny_tokenizer("hello").input_ids[0] == tiny_tokenizer.bos_token_id
    assert tiny_model.config.model_type == "llama"
    assert tiny_model.config.hidden_size // tiny_model.config.num_attention_heads % 2 == 0
    enc = tiny_tokenizer("Anna walked", return_tensors="pt")
    out = tiny_model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > enc.input_ids.shape[1]


def test_build_refuses_to_overwrite(tiny_model_dir):
    with pytest.raises(OverwriteError, match="--force"):
        bm.build_base_model(tiny_model_dir, bm.SPECS["test"], log=None)


def test_build_is_deterministic(tmp_path, tiny_model_dir):
    again = bm.build_base_model(tmp_path / "again", bm.SPECS["test"], log=None)
    assert (again / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()


def test_odd_head_dim_is_refused(tiny_tokenizer):
    import dataclasses

    with pytest.raises(ValueError, match="even"):
        bm.build_model(dataclasses.replace(bm.SPECS["test"], hidden_size=30, num_attention_heads=2), tiny_tokenizer)


def test_shipped_model_is_the_default_spec():
    info = json.loads((BASE_MODEL_DIR / "build_info.json").read_text())
    spec = bm.SPECS["default"]
    assert info["spec"]["vocab_size"] == spec.vocab_size and info["spec"]["steps"] == spec.steps
    assert 3e6 <= info["parameters"] <= 10e6
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(BASE_MODEL_DIR)
    assert len(tok) == spec.vocab_size  # the corpus is rich enough to fill the vocabulary
    for tone in TONES:  # each answer word is one token, the same one pretraining used
        assert len(tok(f" {tone}", add_special_tokens=False).input_ids) == 1
