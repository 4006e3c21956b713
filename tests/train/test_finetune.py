"""labhelpers.train.finetune + CLI: a config runs end to end into a run folder it never overwrites; --resume
continues."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from labhelpers import __main__ as cli
from labhelpers.data import runconfig, task_data, templates
from labhelpers.errors import ConfigError, DataError, OverwriteError
from labhelpers.evaluate import textmetrics
from labhelpers.memory import hardware
from labhelpers.paths import REPO_ROOT
from labhelpers.train import finetune

TEMPLATE = "<|user|> {input}</s><|assistant|> {output}"


@pytest.fixture
def config_file(tmp_path, tiny_model_dir):
    paths = task_data.write_task("qa", tmp_path / "data", {"train": 40}, seed=0)

    def make(max_steps=4, save_steps=2, output="run", logging_steps=1, **lab):
        values = {
            "input_model": {"type": "HfModel", "model_path": str(tiny_model_dir)},
            "data_configs": [{"name": "d",
                              "load_dataset_config": {"data_name": "json", "data_files": "data/train.jsonl"},
                              "pre_process_data_config": {"text_template": TEMPLATE, "max_seq_len": 48}}],
            "passes": {"lora": {"type": "LoRA", "train_data_config": "d", "r": 4, "alpha": 8,
                                "training_args": {"max_steps": max_steps, "save_steps": save_steps,
                                                  "per_device_train_batch_size": 4,
                                                  "logging_steps": logging_steps}}},
            "output_dir": str(tmp_path / output),
            "lab": {"eval_samples": 4, "max_new_tokens": 4, **lab},
        }
        return runconfig.dump_config(values, tmp_path / f"{output}.yaml")

    assert paths["train"].is_file()
    return make


def test_template_split_keeps_space_with_answer(tiny_tokenizer):
    assert templates.split_template(TEMPLATE) == ("<|user|> {input}</s><|assistant|>", " {output}")
    prompt, full = templates.texts(TEMPLATE, tiny_tokenizer, {"input": "hi", "output": "yes"})
    assert prompt == "<s><|user|> hi</s><|assistant|>" and full == prompt + " yes"
    ex = templates.encode(TEMPLATE, tiny_tokenizer, {"input": "hi", "output": "yes"}, 48)
    assert (ex["input_ids"][-1] == tiny_tokenizer.eos_token_id
            and ex["input_ids"].count(tiny_tokenizer.eos_token_id) == 2)
    assert ex["labels"][: len(tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"])] == [-100] * len(
        tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    with pytest.raises(ConfigError, match="response field"):
        templates.split_template("{output}")


def test_run_writes_adapter_and_metrics_then_refuses_to_overwrite(config_file, tmp_path):
    path = config_file()
    logs = []
    result = finetune.run(path, log=logs.append)
    out = result.run_dir
    assert out == tmp_path / "run"
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "metrics.json",
                 "report.json", "config.yaml"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["train_rows"] == 34 and metrics["validation_rows"] == 6
    assert metrics["params"]["lora_r"] == 4
    assert 0 < metrics["seconds_per_step"] <= metrics["train_seconds"]  # one step's seconds, within the run's
    # The reported exact match is the trained model's own, on the first eval_samples validation rows.
    rows = result.splits["validation"].select(range(4)).to_list()
    preds = finetune.answers(result.model, result.tokenizer, result.config.text_template, rows, max_new_tokens=4)
    assert metrics["exact_match"] == textmetrics.exact_match(preds, [r["output"] for r in rows])
    assert any(line.startswith("step 4/4") for line in logs)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(OverwriteError, match="refusing to overwrite"):
        finetune.run(path, log=None)
    with pytest.raises(OverwriteError, match="finished run"):
        finetune.run(path, resume=True, log=None)
    assert sorted(p.name for p in out.iterdir()) == before


def test_run_with_no_logging_step_still_records_the_training_loss(config_file):
    result = finetune.run(config_file(max_steps=2, logging_steps=50), log=None)
    assert result.metrics["final_train_loss"] > 0  # from the Trainer's mean loss, not a missing log line


def test_resume_continues_from_last_checkpoint(config_file, tmp_path):
    first = finetune.run(config_file(max_steps=2, save_steps=2, output="r2"), log=None)
    assert (first.run_dir / "checkpoints" / "checkpoint-2").is_dir()
    (first.run_dir / "metrics.json").unlink()  # as if the run had stopped after its checkpoint
    second = finetune.run(config_file(max_steps=4, save_steps=2, output="r2"), resume=True, log=None)
    assert second.metrics["steps"] == 4
    state = json.loads((second.run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    with pytest.raises(ConfigError, match="no checkpoint"):
        finetune.run(config_file(output="fresh"), resume=True, log=None)


def test_bad_data_stops_before_training(config_file, tmp_path):
    (tmp_path / "data" / "train.jsonl").write_text('{"input": "a?", "output": "b."}\n' * 3 + '{"input": "c?"}\n')
    with pytest.raises(DataError, match=r"train.jsonl:line 4: field 'output' required field is missing"):
        finetune.run(config_file(output="bad"), log=None)
    assert not (tmp_path / "bad").exists()  # validated before the run folder is made: nothing left behind


def test_bad_data_leaves_no_timestamped_run_folder(config_file, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(runs))
    (tmp_path / "data" / "train.jsonl").write_text('{"input": "a?", "output": "b."}\n' * 3 + '{"input": "c?"}\n')
    path = config_file(output="unused")
    values = yaml.safe_load(path.read_text())
    values["output_dir"] = ""  # a new runs/<time>-finetune folder
    runconfig.dump_config(values, path)
    with pytest.raises(DataError, match="train.jsonl:line 4: field 'output'"):
        finetune.run(path, log=None)
    assert not runs.exists() or not any(runs.iterdir())


def test_cli_runs_from_a_fresh_shell_and_refuses_existing_folder(config_file, tmp_path, monkeypatch, capsys):
    path = config_file(max_steps=2, save_steps=2, output="cli")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "labhelpers", "finetune", "--config", str(path)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(tmp_path / "cli")
    assert "step 2/2" in done.stdout
    # The refusals run the same main() in this process (a fresh interpreter costs ~10 s each; the run above
    # already proved the command starts from a shell).
    monkeypatch.chdir(tmp_path)
    assert cli.main(["finetune", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "--resume" in err
    assert cli.main(["finetune", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_the_template_path_trains_exactly_the_course_encoding(config_file):
    """SFTTrainer keeps the course's ids and labels (prompt at -100) as they are."""
    result = finetune.run(config_file(max_steps=1, save_steps=1, output="enc"), log=None)
    rows = result.splits["train"].to_list()
    expected = [templates.encode(result.config.text_template, result.tokenizer, r, 48) for r in rows]
    assert result.trained["input_ids"] == [e["input_ids"] for e in expected]
    assert result.trained["labels"] == [e["labels"] for e in expected]


def test_training_dtype_follows_lab_precision():
    assert finetune.training_dtype("fp32", "cpu") == torch.float32
    assert finetune.training_dtype("bf16", "cpu") == torch.bfloat16
    auto = torch.bfloat16 if hardware.cpu_bf16_supported() else torch.float32
    assert finetune.training_dtype("auto", "cpu") == auto


def test_precision_is_the_configs_even_after_a_bf16_trainer_in_the_same_process(config_file, monkeypatch):
    """TrainingArguments(bf16=True) leaves ACCELERATE_MIXED_PRECISION=bf16 behind; an fp32 run must not train
    under bf16 autocast because of it, and the variable is put back after the run."""
    clean = finetune.run(config_file(max_steps=2, output="fp32", precision="fp32"), log=None)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    after_bf16 = finetune.run(config_file(max_steps=2, output="fp32-again", precision="fp32"), log=None)
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "bf16"
    bf16 = finetune.run(config_file(max_steps=2, output="bf16", precision="bf16"), log=None)
    assert clean.metrics["precision"] == after_bf16.metrics["precision"] == "fp32"
    assert after_bf16.metrics["final_train_loss"] == pytest.approx(clean.metrics["final_train_loss"], abs=1e-6)
    assert after_bf16.metrics["eval_loss"] == pytest.approx(clean.metrics["eval_loss"], abs=1e-6)
    # bf16 really trains otherwise (so the equality above can fail): weights in bf16, another loss
    assert bf16.metrics["precision"] == "bf16"
    assert bf16.model.get_base_model().model.embed_tokens.weight.dtype == torch.bfloat16
    assert abs(bf16.metrics["eval_loss"] - clean.metrics["eval_loss"]) > 1e-5   # measured 8.5e-5


def test_resume_ends_on_the_loss_of_an_uninterrupted_run(config_file):
    straight = finetune.run(config_file(max_steps=4, save_steps=2, output="straight"), log=None)
    first = finetune.run(config_file(max_steps=4, save_steps=2, output="stopped"), log=None)
    (first.run_dir / "metrics.json").unlink()   # as if it had stopped after checkpoint-2 ...
    shutil.rmtree(first.run_dir / "checkpoints" / "checkpoint-4")
    resumed = finetune.run(config_file(max_steps=4, save_steps=2, output="stopped"), resume=True, log=None)
    assert resumed.metrics["final_train_loss"] == pytest.approx(straight.metrics["final_train_loss"], abs=1e-6)
    assert resumed.metrics["eval_loss"] == pytest.approx(straight.metrics["eval_loss"], abs=1e-6)


def chat_config(tmp_path, tiny_model_dir, rows, max_steps=4, output="chat"):
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    values = {
        "input_model": {"type": "HfModel", "model_path": str(tiny_model_dir)},
        "data_configs": [{"name": "d", "load_dataset_config": {"data_name": "json", "data_files": str(data)},
                          "pre_process_data_config": {"messages_field": "messages", "max_seq_len": 256}}],
        "passes": {"lora": {"type": "LoRA", "train_data_config": "d", "r": 4, "alpha": 8,
                            "training_args": {"max_steps": max_steps, "save_steps": max_steps,
                                              "per_device_train_batch_size": 4, "logging_steps": 1}}},
        "output_dir": str(tmp_path / output),
        "lab": {"eval_samples": 4, "max_new_tokens": 4},
    }
    return runconfig.dump_config(values, tmp_path / f"{output}.yaml")


def test_a_messages_file_trains_the_assistant_turns_only(tmp_path, tiny_model_dir):
    from labhelpers.data import chat
    from labhelpers.data.tone_data import conversations, generate_tone_dataset

    rows = conversations(generate_tone_dataset({"train": 60, "validation": 4, "test": 4})["train"])
    assert any(len(r["messages"]) > 3 for r in rows) and any(r["messages"][0]["role"] == "system" for r in rows)
    result = finetune.run(chat_config(tmp_path, tiny_model_dir, rows), log=None)
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert result.metrics["steps"] == 4 and result.metrics["train_rows"] == len(result.splits["train"])
    assert result.metrics["truncated_rows"] == 0
    tok = result.tokenizer
    assert chat.has_generation_markers(tok.chat_template)
    for conv, ids, labels in zip(result.splits["train"]["messages"], result.trained["input_ids"],
                                 result.trained["labels"]):
        want_ids, mask = chat.assistant_mask(tok, conv, tok.chat_template)
        assert ids == want_ids and [int(x != -100) for x in labels] == mask
        trained = tok.decode([i for i, x in zip(ids, labels) if x != -100])
        assert trained.count(tok.eos_token) == sum(t["role"] == "assistant" for t in conv)
    # exact match is scored on each validation conversation's last answer
    convs = result.splits["validation"]["messages"][:4]
    prompts, refs = finetune.conversation_prompts(tok, convs)
    assert refs == [c[-1]["content"] for c in convs] and all(p.endswith("<|assistant|>") for p in prompts)
    preds = finetune.generate_answers(result.model, tok, prompts, max_new_tokens=4)
    assert result.metrics["exact_match"] == textmetrics.exact_match(preds, refs)


def test_a_bad_conversation_stops_before_any_run_folder(tmp_path, tiny_model_dir):
    good = {"messages": [{"role": "user", "content": "what a day"}, {"role": "assistant", "content": "joy"}]}
    bad = {"messages": [{"role": "user", "content": "oh no"}, {"role": "assistant", "content": ""}]}
    path = chat_config(tmp_path, tiny_model_dir, [good] * 5 + [bad], output="badchat")
    with pytest.raises(DataError, match=r"chat.jsonl:line 6, record 6: turn 2 \(assistant\): 'content' is empty"):
        finetune.run(path, log=None)
    assert not (tmp_path / "badchat").exists()
