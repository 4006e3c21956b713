"""labhelpers.train.monitoring: history and throughput, TensorBoard files readable by tensorboard, and an
interrupted run resumed from its checkpoint ending exactly where the uninterrupted one does."""

import pytest
import torch

from labhelpers.data import task_data
from labhelpers.data.templates import IGNORE_INDEX, encode
from labhelpers.train.monitoring import LiveMonitor, StopAtStep, memory_mb, read_scalars

TEMPLATE = "<|user|> {input}</s><|assistant|> {output}"


@pytest.fixture(scope="module")
def train_set(tiny_tokenizer):
    import datasets

    rows = task_data.generate_task("qa", 48, seed=0)
    return datasets.Dataset.from_list([encode(TEMPLATE, tiny_tokenizer, r, 48) for r in rows])


def _trainer(tiny_model_dir, tiny_tokenizer, train_set, out, callbacks=(), **kw):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    set_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    args = dict(output_dir=str(out), max_steps=6, learning_rate=5e-3, per_device_train_batch_size=4,
                logging_steps=1, save_steps=3, seed=0, data_seed=0, report_to="none", use_cpu=True,
                disable_tqdm=True, include_num_input_tokens_seen=True, eval_strategy="steps", eval_steps=3)
    args.update(kw)
    return Trainer(model=model, args=TrainingArguments(**args), train_dataset=train_set,
                   eval_dataset=train_set.select(range(8)),
                   data_collator=DataCollatorForSeq2Seq(tiny_tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
                   callbacks=list(callbacks))


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_monitor_records_loss_throughput_memory(tiny_model_dir, tiny_tokenizer, train_set, tmp_path):
    lines = []
    mon = LiveMonitor(live=False, log=lines.append)
    _trainer(tiny_model_dir, tiny_tokenizer, train_set, tmp_path / "a", [mon]).train()
    frame = mon.frame()
    assert list(frame["step"].dropna().astype(int))[:2] == [1, 2]
    assert frame["loss"].notna().sum() == 6 and frame["eval_loss"].notna().sum() == 2
    assert (frame["samples_per_s"] > 0).all() and (frame["tokens_per_s"] > 0).all() and (frame["memory_mb"] > 10).all()
    assert len(lines) == len(frame) and lines[0].startswith("step    1  loss ")
    fig = mon.plot()
    assert len(fig.axes[0].lines) == 2  # train and validation curves
    assert memory_mb() > 10


def test_tensorboard_event_files_are_readable(tiny_model_dir, tiny_tokenizer, train_set, tmp_path):
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, train_set, tmp_path / "tb",
                       report_to="tensorboard", logging_dir=str(tmp_path / "tb" / "logs"))
    trainer.train()
    scalars = read_scalars(tmp_path / "tb" / "logs")
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx(_losses(trainer), rel=1e-5)
    assert len(scalars["eval/loss"]) == 2
    with pytest.raises(FileNotFoundError, match="report_to"):
        read_scalars(tmp_path / "nothing-here")


def test_interrupted_then_resumed_run_ends_like_an_uninterrupted_one(tiny_model_dir, tiny_tokenizer, train_set,
                                                                     tmp_path):
    whole = _trainer(tiny_model_dir, tiny_tokenizer, train_set, tmp_path / "whole")
    whole.train()
    cut = _trainer(tiny_model_dir, tiny_tokenizer, train_set, tmp_path / "cut", [StopAtStep(3)])
    cut.train()
    assert cut.state.global_step == 3 and (tmp_path / "cut" / "checkpoint-3").is_dir()
    resumed = _trainer(tiny_model_dir, tiny_tokenizer, train_set, tmp_path / "cut")
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-3"))
    assert resumed.state.global_step == 6
    assert _losses(resumed)[-1] == pytest.approx(_losses(whole)[-1], rel=1e-5)
    for (n, a), (_, b) in zip(whole.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_stop_at_step_without_save_only_stops():
    from types import SimpleNamespace

    from transformers import TrainerControl

    state = SimpleNamespace(global_step=4)
    control = StopAtStep(4, save=False).on_step_end(None, state, TrainerControl())
    assert control.should_training_stop and not control.should_save
    control = StopAtStep(4).on_step_end(None, state, TrainerControl())
    assert control.should_training_stop and control.should_save
    assert not StopAtStep(5, save=False).on_step_end(None, state, TrainerControl()).should_training_stop
