"""TRL's padding-free packing (what ``packing=True`` uses) on a CPU, without FlashAttention: do packed
conversations attend to each other? Through ``SFTTrainer.compute_loss`` they do not (it turns the cache off,
and transformers then builds a per-sample mask from ``position_ids``); fed to the model with its cache on, as
a hand-written loop would, they do."""

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from labhelpers.data import templates
from labhelpers.paths import BASE_MODEL_DIR  # the shipped tiny Llama: trained attention, so a leak shows


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(BASE_MODEL_DIR)


@pytest.fixture(scope="module")
def batches(tokenizer):
    rows = [templates.tokenize_example(tokenizer, *templates.chat_texts(tokenizer, p, t))
            for p, t in [("We finally won the cup!", "joy"), ("The lights went out.", "fear"),
                         ("Grandma was gloomy all week.", "sad")]]
    feats = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    pad_id = tokenizer.pad_token_id
    return (DataCollatorForLanguageModeling(pad_token_id=pad_id)(feats),
            DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=True)(feats))


def test_packed_rows_stay_apart_in_sfttrainer_but_leak_with_the_cache_on(tokenizer, batches, tmp_path):
    padded, flat = batches
    assert flat["input_ids"].shape[0] == 1 and "attention_mask" not in flat   # one row, samples end to end
    model = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR, attn_implementation="eager").eval()
    trainer = SFTTrainer(model=model, processing_class=tokenizer,
                         args=SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False,
                                        gradient_checkpointing=False, loss_type="nll"),
                         train_dataset=datasets.Dataset.from_list([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}]))
    with torch.no_grad():
        reference = model(**padded).loss.item()
        through_trainer = trainer.compute_loss(model, dict(flat)).item()
        cache_on = model(**flat).loss.item()
        cache_off = model(**flat, use_cache=False).loss.item()
    assert through_trainer == pytest.approx(reference, abs=1e-4)
    assert cache_off == pytest.approx(reference, abs=1e-4)
    # measured: 12.95 padded, 13.43 packed with the cache on
    assert abs(cache_on - reference) > 0.1, "with the cache on, the packed samples attend to each other"
