"""YAML run configs in the shape of the chapter's second example, with names that really work.

The chapter's YAML writes ``lora_alpha`` and a pass-level ``weight_decay``; Olive's LoRA pass calls
them ``alpha`` and ``training_args: {weight_decay: ...}``, and current Olive configs name the model
``input_model: {type: HfModel, model_path: ...}``. This file mirrors that shape so a config learned
here reads like an Olive config, and runs with ``python -m labhelpers finetune --config run.yaml``::

    input_model: {type: HfModel, model_path: tiny}
    data_configs:
      - name: train_data
        type: HuggingfaceContainer
        load_dataset_config: {data_name: json, data_files: data/qa.jsonl}
        pre_process_data_config: {chat_template: {prompt: input, answer: output}, max_seq_len: 128}
    passes:
      lora:
        type: LoRA
        train_data_config: train_data
        r: 16
        alpha: 32
        lora_dropout: 0.05
        target_modules: [q_proj, v_proj]
        modules_to_save: null
        training_args: {max_steps: 100, learning_rate: 0.002, per_device_train_batch_size: 8}
    output_dir: qa-run
    lab: {validation_fraction: 0.15, response_only: true, seed: 0, precision: auto}   # this course's extras

``chat_template: {prompt: input, answer: output}`` (this course's extra) lets the model's own chat template
write each row: the config then runs unchanged on any model with a chat template, and ``RunConfig.for_tokenizer``
gives the resulting Olive-style ``text_template``. A hand-written ``text_template`` works as in Olive.

Loaded with ``yaml.safe_load`` and checked key by key: unknown keys (with the closest known name),
wrong types and bad values are named with the file and the key path, e.g. ``run.yaml: passes.lora.lora_alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from labhelpers.checks import did_you_mean
from labhelpers.data.templates import chat_text_template, template_fields
from labhelpers.errors import ConfigError
from labhelpers.models.presets import resolve_model
from labhelpers.yamlfile import read_yaml

_ANY = object()

#: key -> (allowed types, default); a dict value is a nested section.
TRAINING_ARGS = {
    "max_steps": ((int,), 100), "learning_rate": ((float, int), 2e-3),
    "per_device_train_batch_size": ((int,), 8), "per_device_eval_batch_size": ((int,), 16),
    "gradient_accumulation_steps": ((int,), 1), "lr_scheduler_type": ((str,), "cosine"),
    "warmup_ratio": ((float, int), 0.05), "weight_decay": ((float, int), 0.0),
    "logging_steps": ((int,), 10), "save_steps": ((int,), 50), "save_total_limit": ((int,), 2),
    "eval_steps": ((int, type(None)), None), "seed": ((int,), 0), "max_grad_norm": ((float, int), 1.0),
}
LORA_PASS = {
    "type": ((str,), "LoRA"), "train_data_config": ((str,), None), "eval_data_config": ((str, type(None)), None),
    "r": ((int,), 8), "alpha": ((float, int), 16), "lora_dropout": ((float, int), 0.05),
    "target_modules": ((str, list), "all-linear"), "modules_to_save": ((list, type(None)), None),
    "training_args": TRAINING_ARGS,
}
DATA_CONFIG = {
    "name": ((str,), None), "type": ((str,), "HuggingfaceContainer"),
    "load_dataset_config": {"data_name": ((str,), "json"), "data_files": ((str, list), None),
                            "split": ((str,), "train")},
    "pre_process_data_config": {"text_template": ((str, type(None)), None),
                                "chat_template": {"prompt": ((str, type(None)), None),
                                                  "answer": ((str, type(None)), None),
                                                  "system": ((str, type(None)), None)},
                                "messages_field": ((str, type(None)), None),
                                "max_seq_len": ((int,), 128)},
}
LAB = {"validation_fraction": ((float,), 0.15), "label_field": ((str, type(None)), None),
       "response_only": ((bool,), True), "seed": ((int,), 0), "eval_samples": ((int,), 64),
       "max_new_tokens": ((int,), 24), "precision": ((str,), "auto")}
#: lab.precision values: auto = bf16 where the device computes bf16 in hardware, else fp32
PRECISIONS = ("auto", "fp32", "bf16")
TOP = {"input_model": {"type": ((str,), "HfModel"), "model_path": ((str,), "tiny")},
       "data_configs": ((list,), None), "passes": ((dict,), None), "output_dir": ((str,), ""), "lab": LAB}
REQUIRED = {"data_configs", "passes"}


def _tnames(types) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list",
             dict: "mapping", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _fill(values, spec: dict, path: str, source: str) -> dict:
    """Check ``values`` against ``spec`` and return it with defaults filled in."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {path or 'the file'} must be a mapping of key: value, got "
                          f"{type(values).__name__} {str(values)[:40]!r}")
    for key in values:
        if key not in spec:
            did = did_you_mean(key, spec)
            extra = ""
            if key == "lora_alpha":
                extra = " (the chapter's name; Olive's LoRA pass calls it 'alpha')"
            elif key == "weight_decay" and "training_args" in spec:
                extra = " (it belongs under training_args)"
            raise ConfigError(f"{source}: unknown key {_join(path, key)!r}{extra}; {did}")
    out = {}
    for key, rule in spec.items():
        kpath = _join(path, key)
        if isinstance(rule, dict):
            out[key] = _fill(values.get(key), rule, kpath, source)
            continue
        types, default = rule
        value = values.get(key, default)
        if key not in values and default is None and type(None) not in types:
            raise ConfigError(f"{source}: {kpath} is required ({_tnames(types)})")
        if float in types and int not in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in types:
            raise ConfigError(f"{source}: {kpath} is true/false, expected {_tnames(types)}")
        if not isinstance(value, types):
            hint = (" (YAML reads 1e-3 as a string: write 1.0e-3 or 0.001)"
                    if isinstance(value, str) and float in types else "")
            raise ConfigError(f"{source}: {kpath} is {type(value).__name__} {value!r}, expected {_tnames(types)}{hint}")
        out[key] = value
    return out


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


@dataclass
class RunConfig:
    """A validated run config: the raw sections plus resolved paths."""

    source: str
    model_path: str
    train_files: list[str]
    eval_files: list[str] | None
    data_name: str
    text_template: str  # "" until ``for_tokenizer`` writes it when the config names chat_template fields
    max_seq_len: int
    lora: dict
    training_args: dict
    output_dir: str
    lab: dict
    raw: dict = field(repr=False, default_factory=dict)
    chat_template: dict | None = None  # {prompt, answer, system}: fields the model's chat template writes
    messages_field: str | None = None  # the column of chat-format conversations (system/user/assistant turns)

    @property
    def response_field(self) -> str | None:
        """The column holding the answer; None for conversations (the answer is the last assistant turn)."""
        if self.messages_field:
            return None
        return self.chat_template["answer"] if self.chat_template else template_fields(self.text_template)[-1]

    def for_tokenizer(self, tokenizer) -> "RunConfig":
        """This config with its ``text_template`` written by the tokenizer's chat template, where the config
        asks for one (``chat_template: {prompt, answer}``); a hand-written template is kept as it is."""
        if not self.chat_template:
            return self
        c = self.chat_template
        return replace(self, text_template=chat_text_template(tokenizer, c["prompt"], c["answer"], system=c["system"]))

    def to_dict(self) -> dict:
        return {"config": self.source, "model_path": self.model_path, "train_files": self.train_files,
                "text_template": self.text_template, "messages_field": self.messages_field,
                "max_seq_len": self.max_seq_len,
                **{f"lora_{k}": v for k, v in self.lora.items()}, **self.training_args, **self.lab,
                "output_dir": self.output_dir}


def from_dict(values, source: str = "config", base_dir: str | Path | None = None) -> RunConfig:
    """Validate a config mapping (as ``yaml.safe_load`` returns it). Relative data files are taken
    from ``base_dir`` (the YAML file's folder)."""

    cfg = _fill(values, TOP, "", source)
    missing = REQUIRED - set(values or {})
    if missing:
        raise ConfigError(f"{source}: missing section(s) {sorted(missing)}")
    if cfg["input_model"]["type"] != "HfModel":
        raise ConfigError(f"{source}: input_model.type must be HfModel (a transformers model folder or hub id)")
    data = {}
    for i, dc in enumerate(cfg["data_configs"]):
        d = _fill(dc, DATA_CONFIG, f"data_configs[{i}]", source)
        if d["name"] in data:
            raise ConfigError(f"{source}: data_configs[{i}].name {d['name']!r} is used twice")
        data[d["name"]] = (i, d)
    if not data:
        raise ConfigError(f"{source}: data_configs is empty; add one with load_dataset_config.data_files")
    passes = cfg["passes"]
    if list(passes) != ["lora"] and len(passes) != 1:
        raise ConfigError(f"{source}: passes must hold one LoRA pass (got {', '.join(map(str, passes))})")
    pname = next(iter(passes))
    lora = _fill(passes[pname], LORA_PASS, f"passes.{pname}", source)
    if lora["type"].lower() not in ("lora",):
        raise ConfigError(f"{source}: passes.{pname}.type {lora['type']!r}: this runner does LoRA (type: LoRA); "
                          "QLoRA is notebook 03")
    for key in ("train_data_config", "eval_data_config"):
        if lora[key] is not None and lora[key] not in data:
            raise ConfigError(f"{source}: passes.{pname}.{key} {lora[key]!r} names no data config "
                              f"(have: {', '.join(data)})")
    targets = lora["target_modules"]
    if isinstance(targets, str) and targets != "all-linear":
        raise ConfigError(f"{source}: passes.{pname}.target_modules must be 'all-linear' "
                          "or a list like [q_proj, v_proj]")
    _positive(source, f"passes.{pname}.r", lora["r"])
    _positive(source, f"passes.{pname}.alpha", lora["alpha"])
    if not 0 <= lora["lora_dropout"] < 1:
        raise ConfigError(f"{source}: passes.{pname}.lora_dropout={lora['lora_dropout']} must be in [0, 1)")
    ta = lora.pop("training_args")
    for key in ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps",
                "save_steps"):
        _positive(source, f"passes.{pname}.training_args.{key}", ta[key])
    if not 0 < ta["learning_rate"] < 1:
        raise ConfigError(f"{source}: passes.{pname}.training_args.learning_rate={ta['learning_rate']} must be in "
                          "(0, 1), e.g. 1e-4 for real models, 2e-3 for the tiny one")
    if not 0 < cfg["lab"]["validation_fraction"] < 1:
        raise ConfigError(f"{source}: lab.validation_fraction must be in (0, 1); 0.1-0.2 is usual")
    if cfg["lab"]["precision"] not in PRECISIONS:
        raise ConfigError(f"{source}: lab.precision={cfg['lab']['precision']!r} must be one of {', '.join(PRECISIONS)} "
                          "(auto: bf16 where the hardware computes it, else fp32)")

    base = Path(base_dir) if base_dir is not None else Path.cwd()
    _, train = data[lora["train_data_config"]]
    pre = train["pre_process_data_config"]
    where = f"data_configs[{data[lora['train_data_config']][0]}].pre_process_data_config"
    chat = pre["chat_template"] if any(v is not None for v in pre["chat_template"].values()) else None
    given = [k for k, v in (("chat_template", chat), ("text_template", pre["text_template"]),
                            ("messages_field", pre["messages_field"])) if v is not None]
    if len(given) != 1:
        raise ConfigError(f"{source}: {where} needs one of chat_template (e.g. {{prompt: input, answer: output}}: the "
                          "model's own chat template writes each row), text_template (e.g. "
                          "\"User: {input}\\nAssistant: {output}\") or messages_field (e.g. messages: a column of "
                          "system/user/assistant conversations), not " + (" and ".join(given) or "none"))
    if pre["messages_field"] is not None:
        if not pre["messages_field"].isidentifier():
            raise ConfigError(f"{source}: {where}.messages_field must name a column, e.g. messages "
                              f"(got {pre['messages_field']!r})")
        if cfg["lab"]["label_field"] is not None:
            raise ConfigError(f"{source}: lab.label_field does not apply to conversations (messages_field): "
                              "remove it")
    elif chat is not None:
        for key in ("prompt", "answer"):
            if not isinstance(chat[key], str) or not chat[key].isidentifier():
                raise ConfigError(f"{source}: {where}.chat_template.{key} must name a column, e.g. "
                                  f"{'input' if key == 'prompt' else 'output'} (got {chat[key]!r})")
    elif len(template_fields(pre["text_template"])) < 2:
        raise ConfigError(f"{source}: text_template needs a prompt field and, last, the response field, e.g. "
                          "'User: {input}\\nAssistant: {output}'")

    def files(d, i):
        lc = d["load_dataset_config"]
        if lc["data_files"] is None:
            raise ConfigError(f"{source}: data_configs[{i}].load_dataset_config.data_files is required")
        fl = [lc["data_files"]] if isinstance(lc["data_files"], str) else lc["data_files"]
        out = []
        for f in fl:
            if not isinstance(f, str):
                raise ConfigError(f"{source}: data_configs[{i}].load_dataset_config.data_files holds {f!r}, not a path")
            p = Path(f).expanduser()
            out.append(str(p if p.is_absolute() else (base / p).resolve()))
        return out

    train_files = files(train, data[lora["train_data_config"]][0])
    eval_files = (files(data[lora["eval_data_config"]][1], data[lora["eval_data_config"]][0])
                  if lora["eval_data_config"] else None)
    try:
        model_path = resolve_model(cfg["input_model"]["model_path"])
    except Exception as err:
        raise ConfigError(f"{source}: input_model.model_path: {err}") from None
    if not Path(model_path).is_dir() and not Path(cfg["input_model"]["model_path"]).is_absolute():
        cand = base / cfg["input_model"]["model_path"]
        if (cand / "config.json").is_file():
            model_path = str(cand.resolve())
    return RunConfig(source=source, model_path=model_path, train_files=train_files, eval_files=eval_files,
                     data_name=train["load_dataset_config"]["data_name"], text_template=pre["text_template"] or "",
                     chat_template=chat, messages_field=pre["messages_field"],
                     max_seq_len=pre["max_seq_len"], lora={k: lora[k] for k in ("r", "alpha", "lora_dropout",
                     "target_modules", "modules_to_save")}, training_args=ta, output_dir=cfg["output_dir"],
                     lab=cfg["lab"], raw=values)


def _positive(source, path, value):
    if value < 1:
        raise ConfigError(f"{source}: {path}={value} must be >= 1")


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run config (``yaml.safe_load``: no Python objects from the file)."""

    path = Path(path)
    return from_dict(read_yaml(path, "config"), source=str(path), base_dir=path.parent)


def dump_config(values: dict, path: str | Path) -> Path:
    """Write a config mapping as YAML (for notebooks that build one)."""

    path = Path(path)
    path.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
