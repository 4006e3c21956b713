"""labhelpers.data.runconfig: the chapter's YAML with names that work; unknown keys and wrong types are named."""

import copy
from pathlib import Path

import pytest
import yaml

from labhelpers.data import runconfig
from labhelpers.errors import ConfigError
from labhelpers.paths import REPO_ROOT

EXAMPLE = REPO_ROOT / "configs" / "qa_lora.yaml"


def _base():
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_config_loads_with_resolved_paths():
    cfg = runconfig.load_config(EXAMPLE)
    assert cfg.lora["r"] == 16 and cfg.lora["alpha"] == 32 and cfg.lora["target_modules"][0] == "q_proj"
    assert cfg.training_args["max_steps"] == 120 and cfg.training_args["learning_rate"] == 0.003
    assert cfg.train_files == [str((REPO_ROOT / "data" / "qa" / "train.jsonl").resolve())]
    assert Path(cfg.train_files[0]).is_file(), "the example config's data must ship with the repo"
    assert cfg.response_field == "output" and cfg.lab["validation_fraction"] == 0.15
    assert cfg.training_args["per_device_eval_batch_size"] == 16, "defaults are filled in"


@pytest.mark.parametrize("path, key, hint", [
    (("passes", "lora"), "lora_alpha", "'alpha'"),
    (("passes", "lora"), "weight_decay", "training_args"),
    (("passes", "lora", "training_args"), "max_step", "'max_steps'"),
    ((), "input_modle", "'input_model'"),
])
def test_unknown_keys_are_named_with_their_path(path, key, hint):
    values = _base()
    node = values
    for p in path:
        node = node[p]
    node[key] = 1
    with pytest.raises(ConfigError) as err:
        runconfig.from_dict(values, source="run.yaml", base_dir=EXAMPLE.parent)
    msg = str(err.value)
    assert msg.startswith("run.yaml: unknown key") and ".".join(path + (key,)) in msg and hint in msg


@pytest.mark.parametrize("path, value, expect", [
    (("passes", "lora", "r"), "16", "passes.lora.r is str '16', expected integer"),
    (("passes", "lora", "r"), True, "passes.lora.r is true/false"),
    (("passes", "lora", "training_args", "learning_rate"), "1e-3", "YAML reads 1e-3 as a string"),
    (("lab", "response_only"), "yes", "lab.response_only is str"),
    (("passes", "lora", "lora_dropout"), 1.5, "lora_dropout=1.5 must be in [0, 1)"),
    (("passes", "lora", "training_args", "max_steps"), 0, "max_steps=0 must be >= 1"),
    (("passes", "lora", "train_data_config"), "nope", "names no data config"),
    (("passes", "lora", "target_modules"), "q_proj", "'all-linear' or a list"),
    (("lab", "precision"), "fp16", "lab.precision='fp16' must be one of auto, fp32, bf16"),
])
def test_wrong_types_and_values_are_named(path, value, expect):
    values = _base()
    node = values
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match="run.yaml: ") as err:
        runconfig.from_dict(values, source="run.yaml", base_dir=EXAMPLE.parent)
    assert expect in str(err.value)


def test_missing_sections_and_required_keys():
    values = _base()
    del values["passes"]
    with pytest.raises(ConfigError, match="passes is required"):
        runconfig.from_dict(values, source="run.yaml")
    values = _base()
    del values["data_configs"][0]["load_dataset_config"]["data_files"]
    with pytest.raises(ConfigError, match=r"data_configs\[0\].load_dataset_config.data_files is required"):
        runconfig.from_dict(values, source="run.yaml")


def test_yaml_is_safe_loaded_and_errors_name_the_line(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("input_model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        runconfig.load_config(evil)
    bad = tmp_path / "bad.yaml"
    bad.write_text("passes:\n  lora:\n    r: 8\n   alpha: 16\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:line \d+: not valid YAML"):
        runconfig.load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        runconfig.load_config(empty)


def test_round_trip_through_dump(tmp_path):
    values = _base()
    values["data_configs"][0]["load_dataset_config"]["data_files"] = str(REPO_ROOT / "data" / "qa" / "train.jsonl")
    path = runconfig.dump_config(copy.deepcopy(values), tmp_path / "rt.yaml")
    assert (runconfig.load_config(path).chat_template
            == {**values["data_configs"][0]["pre_process_data_config"]["chat_template"], "system": None})


def test_chat_template_fields_let_each_model_write_its_own_rows(tiny_tokenizer):
    from labhelpers.data.templates import chat_texts

    cfg = runconfig.load_config(EXAMPLE)
    assert cfg.text_template == "" and cfg.chat_template["answer"] == "output" and cfg.response_field == "output"
    written = cfg.for_tokenizer(tiny_tokenizer)
    row = {"input": "What is LoRA?", "output": "A low-rank adapter."}
    assert written.text_template.format(**row) == chat_texts(tiny_tokenizer, row["input"], row["output"])[1]
    assert written.for_tokenizer(tiny_tokenizer) == written and cfg.text_template == ""  # a copy, not a mutation


def test_a_hand_written_text_template_is_kept_as_it_is(tiny_tokenizer):
    values = _base()
    pre = values["data_configs"][0]["pre_process_data_config"]
    del pre["chat_template"]
    pre["text_template"] = "User: {input}\nAssistant: {output}"
    cfg = runconfig.from_dict(values, source="run.yaml", base_dir=EXAMPLE.parent)
    assert cfg.for_tokenizer(tiny_tokenizer).text_template == "User: {input}\nAssistant: {output}"


@pytest.mark.parametrize("pre, expect", [
    ({"max_seq_len": 96}, "not none"),
    ({"chat_template": {"prompt": "input", "answer": "output"}, "text_template": "Q: {input} A: {output}"},
     "not chat_template and text_template"),
    ({"messages_field": "messages", "text_template": "Q: {input} A: {output}"},
     "not text_template and messages_field"),
    ({"messages_field": "the messages"}, r"messages_field must name a column, e.g. messages \(got 'the messages'\)"),
    ({"chat_template": {"prompt": "input"}}, r"chat_template.answer must name a column"),
    ({"chat_template": {"prompt": "my input", "answer": "output"}}, r"chat_template.prompt must name a column"),
    ({"chat_template": {"prompt": "input", "answr": "output"}}, "did you mean 'answer'"),
])
def test_template_choice_errors_name_the_key(pre, expect):
    values = _base()
    values["data_configs"][0]["pre_process_data_config"] = pre
    with pytest.raises(ConfigError, match=expect):
        runconfig.from_dict(values, source="run.yaml", base_dir=EXAMPLE.parent)
