# %% [markdown]
# # 04 · Custom data: from your own JSON/JSONL/CSV file to a YAML-configured run, and the four task types
#
# The chapter's second example writes a tiny JSON file of `input`/`output` pairs, a YAML config (model,
# data, template `User: {input}\nAssistant: {output}`, LoRA r 16 / alpha 32) and runs it. Here we do
# that the way a careful practitioner would: load the file, **validate** it with a report, template it,
# **split** it, run it from a YAML config (`python -m labhelpers finetune --config ...` does the same
# from a shell), and compare answers before and after. Then the chapter's four task-specific types:
# classification, generation, extraction (text → JSON fields) and summarisation, each with a small
# generated dataset, a short run and its own metric.
#
# **Goals**
# - see why two records are not a dataset, and what a dataset needs (size, a held-out split);
# - validate data before training: fields, types, empty values, duplicates, leakage, token lengths, labels;
# - read a validation report, and the one-line errors that name file, line and field;
# - write a run config whose names really work (Olive's LoRA pass: `alpha`, `training_args`);
# - fine-tune for four task types and score each with a fitting metric (accuracy, on-tone rate,
#   exact field match, ROUGE);
# - see why the base model matters: one run config on the tiny Llama and on SmolLM2-135M, on a task whose
#   words the tiny model never saw.
#
# **Model:** SmolLM2-135M-Instruct by default: the four tasks are scored base vs fine-tuned, and a base that
# already reads English is what makes a 10-step run a fair test of the data and the template. Section 8 trains
# the tiny Llama beside it to show why. `-p model_name tiny` runs the first seven sections on the tiny Llama
# (about 1.5 minutes, 100-150 steps a task where SmolLM2 needs 10).
#
# **Time on 2 CPU cores:** about 2.5 minutes on an Intel CPU with AMX bf16, 8.5 on a CPU without bf16 (seven short LoRA
# runs: the Q&A config and the four task types, 10 steps each, then the same config on both models in section 8; each
# task is scored before and after on 30 held-out rows); 1.5 with `model_name tiny`.
#
# **Chapter:** Example 2 (custom dataset + YAML config); Types of fine-tuning → task-specific; Best
# practices → data.

# %% tags=["parameters"]
# Parameters: papermill sets these (-p name value).
# model_name: a preset (smollm2-135m; tiny or empty: the embedded tiny Llama), a hub id or a local folder.
# output_dir: empty means a new folder under runs/; an existing non-empty folder is refused.
# qa_steps, task_steps, min_margin: "auto" takes the schedule and the margins measured for this model
# (labhelpers/train/workshop.py); min_margin asserts each run beats the base model by that margin on its
# metric; a number sets one margin for all; None only reports.
model_name = "smollm2-135m"
qa_steps = "auto"          # LoRA steps for the Q&A run from the YAML config (SmolLM2: 10, tiny: 100)
task_steps = "auto"        # LoRA steps for each of the four task runs (SmolLM2: 10, tiny: 150)
learning_rate = 3e-3
lora_r = 8
lora_alpha = 16
lora_dropout = 0.0         # 0: its random masks were a third of a CPU step (notebook 02, section 4)
batch_size = 8
validation_fraction = 0.15
n_eval = 30                # held-out rows scored per task, by both models (30: about 10 s a task)
seed = 0
output_dir = ""
min_margin = "auto"
# Section 8 trains the tiny Llama and this real model on a task whose words the tiny corpus never holds.
world_model = "smollm2-135m"
world_steps = 20           # LoRA steps for each of the two (bars apply from 20 steps: labhelpers/train/workshop.py)
world_lr = 2e-3

# %%
# Check the parameters first: a wrong one stops here, named.
from labhelpers.checks import check_fraction, check_int, check_number
from labhelpers.errors import ConfigError
from labhelpers.models.presets import resolve_model
from labhelpers.train import workshop
from labhelpers.train.config import TrainConfig

schedule = workshop.steps("04", resolve_model(model_name), qa_steps=qa_steps, task_steps=task_steps)
qa_steps, task_steps = schedule["qa_steps"], schedule["task_steps"]
check_int("qa_steps", qa_steps, low=1)   # before TrainConfig, which would name it max_steps
cfg = TrainConfig(model_name=model_name, max_steps=qa_steps, learning_rate=learning_rate, lora_r=lora_r,
                  lora_alpha=lora_alpha, lora_dropout=lora_dropout, batch_size=batch_size, seed=seed,
                  output_dir=output_dir)
for name, value in {"task_steps": task_steps, "n_eval": n_eval, "world_steps": world_steps}.items():
    check_int(name, value, low=1)
check_number("world_lr", world_lr, 0.0, 1.0, "e.g. 2e-3")
world_bars = workshop.world_bars(resolve_model(world_model, param="world_model"), world_steps)
check_fraction("validation_fraction", validation_fraction, 0.05, 0.5, "0.1-0.2 is usual")
TASKS = ("qa", "classification", "generation", "extraction", "summarization")
if min_margin == "auto":   # each bar sits below what the workshop run measured (see the closing table)
    margins = workshop.bar("04", cfg.model_path, "min_margin", "auto", schedule)
elif min_margin is None:
    margins = None
elif isinstance(min_margin, (int, float)) and not isinstance(min_margin, bool) and 0 <= min_margin <= 1:
    margins = {k: float(min_margin) for k in TASKS}
else:
    raise ConfigError(f"min_margin={min_margin!r}: use \"auto\", a number in [0, 1] such as 0.2, or None")
print(f"model {cfg.model_path}; Q&A {qa_steps} steps, tasks {task_steps} steps each; margins asserted: {margins}")

# %%
import hashlib
import json
import time

import datasets
import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from labhelpers import runs
from labhelpers.course import exercises, widgets
from labhelpers.data import records, runconfig, task_data, templates, validation, world_data
from labhelpers.data.tone_data import TONES
from labhelpers.errors import DataError, OverwriteError, expect_error
from labhelpers.evaluate import plots, textmetrics
from labhelpers.evaluate.metrics import classification_scores, parse_label
from labhelpers.train import finetune

set_seed(cfg.seed)
datasets.disable_progress_bars()   # finetune.run prints one line per logging step instead
run_dir = runs.prepare_output_dir(cfg.output_dir, "04_custom_data")
tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
base_model = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=torch.float32)
t_start = time.perf_counter()
print("outputs in", run_dir)

# %% [markdown]
# ## 1 · The chapter's two records — and why they are not a dataset
#
# The chapter's example data is two `input`/`output` records. They load, and they are valid. But a
# dataset must let you **measure**: the chapter's own best practice holds out 10–20 % for validation,
# and 15 % of two rows is nothing. Two examples also cannot show a pattern: a model trained on them
# memorises two strings. A few hundred varied, representative examples is a *small* dataset.

# %%
two = run_dir / "two_records.json"
two.write_text(json.dumps([
    {"input": "What is machine learning?", "output": "Machine learning is a way for computers to learn from data."},
    {"input": "Explain deep learning.", "output": "Deep learning uses neural networks with many layers."},
], indent=2))
chapter_rows = records.read_records(two)
print(len(chapter_rows), "records, starting on lines", chapter_rows.lines)
print("report:", validation.validate(chapter_rows, required={"input": str, "output": str}).summary())
print("DataError:", expect_error(DataError, records.split, chapter_rows, validation=validation_fraction))

# %% [markdown]
# ## 2 · A generated Q&A dataset in `input`/`output` form
#
# The base model knows from pretraining which feeling word goes with which tone (`gloomy` → sad: SmolLM2
# read it in English text; the tiny Llama's corpus was written to hold it). A Q&A dataset that asks about those words lets a short fine-tune teach the
# **task and its format** while the knowledge comes from the base: transfer learning.
# `labhelpers.data.task_data` writes the files; the test split's questions never occur in training.

# %%
qa_paths = task_data.write_task("qa", run_dir / "qa", {"train": 300, "test": 60}, seed=cfg.seed)
qa_records = records.read_records(qa_paths["train"])
qa_test = records.read_records(qa_paths["test"])
display(pd.DataFrame(qa_records.rows[:5]))
print(f"{len(qa_records)} train rows, {len(qa_test)} test rows")

# %% [markdown]
# ## 3 · Validate before training
#
# `validation.validate` checks required fields and types, empty or whitespace values, control characters,
# exact and near duplicates, **leakage** (rows also in the test set), label balance and token lengths
# against `max_seq_len`. Errors stop a run; warnings are listed for you to decide. The clean data first:

# %%
# The model's own chat template writes each row (section 4 shows the text); nothing here is model-specific.
TEMPLATE = templates.chat_text_template(tokenizer, "input", "output")
MAX_SEQ_LEN = 96   # the longest row is about 40 tokens on the tiny model, 70 on SmolLM2 (its system prompt)
report = validation.validate(qa_records, required={"input": str, "output": str}, template=TEMPLATE, tokenizer=tokenizer,
                       max_seq_len=MAX_SEQ_LEN, others={"test": qa_test})
print(report.summary())
assert report.ok and report.n_truncated() == 0
report.plot_lengths()

# %% [markdown]
# Now a deliberately broken copy: a missing field, a wrong type, an empty answer, a control
# character, a duplicate, a near duplicate, a test question (leakage) and one over-long row. Each issue
# names the file, the line and the field. The file on disk is only read, never changed (checked by hash).

# %%
rows = [dict(r) for r in qa_records.rows[:12]]
rows[2] = {"input": rows[2]["input"]}                                   # missing output
rows[3]["output"] = 42                                                  # wrong type
rows[4]["output"] = "   "                                               # empty
rows[5]["input"] = rows[5]["input"] + "\x07"                            # control character
rows[6] = dict(rows[1])                                                 # exact duplicate
rows[7] = {"input": rows[0]["input"].upper(), "output": rows[0]["output"]}  # near duplicate
rows[8] = dict(qa_test.rows[0])                                         # leakage from the test set
rows[9]["input"] = "Tell me what these words mean: " + ", ".join(["gloomy"] * 40) + "?"  # too long
broken = run_dir / "qa_broken.jsonl"
broken.write_text("".join(json.dumps(r) + "\n" for r in rows))
before = hashlib.sha256(broken.read_bytes()).hexdigest()
# Mixed types in one column stop *reading* (Arrow needs one type per column); we validate the rows instead.
broken_report = validation.validate(records.Records(str(broken), rows, list(range(1, len(rows) + 1))),
                              required={"input": str, "output": str}, tokenizer=tokenizer, max_seq_len=MAX_SEQ_LEN,
                              others={"test": qa_test})
with pd.option_context("display.max_colwidth", 90):
    display(broken_report.to_frame()[["level", "kind", "line", "field", "message"]])
print("reading the file itself stops at the first blocker:\n ", expect_error(DataError, records.read_records, broken))
err = expect_error(DataError, broken_report.raise_for_errors)
print(str(err).splitlines()[0], "(the first lines of the error)")
assert hashlib.sha256(broken.read_bytes()).hexdigest() == before, "the input file must not change"

# %%
# Errors found while reading: each names the file and line, and says how to fix it.
samples = {
    "bom.jsonl": b"\xef\xbb\xbf" + qa_paths["train"].read_bytes()[:200].rsplit(b"\n", 1)[0] + b"\n",
    "cut.jsonl": qa_paths["train"].read_bytes()[:150],
    "latin1.jsonl": '{"input": "caf\u00e9?", "output": "It means joy."}\n'.encode("latin-1"),
    "ragged.csv": b"input,output\nWhat is glad?,It means joy.\nWhat is sad, really?,It means sad.\n",
    "object.json": b'{"input": "a", "output": "b"}',
    "empty.jsonl": b"",
}
for name, content in samples.items():
    path = run_dir / "bad" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    err = expect_error(DataError, records.read_records, path)   # every sample is broken on purpose
    print(f"{name}: {str(err).replace(str(path.parent) + '/', '')}\n")
    assert path.name in str(err) and path.read_bytes() == content   # the error names the file; the file is unchanged

# %% [markdown]
# ## 4 · Template: prompt, answer, EOS once, and what the loss trains
#
# The chapter's template `User: {input}\nAssistant: {output}` works with any model, but a model learns
# fastest in the format it already knows: its own chat template. `templates.chat_text_template` asks the
# tokenizer's chat template to write one conversation and turns it into a text template (the one Olive's
# `--text_template` takes), so the same code trains the tiny Llama and SmolLM2 in their own formats. The
# **last** placeholder is the answer; everything before it is the prompt, and the prompt's tokens get
# label -100 (response-only training). The answer keeps the whitespace before it, so it is tokenized the
# way the base saw those words. A placeholder the data lacks fails with the columns listed.

# %%
print("text template:", repr(TEMPLATE))
prompt_part, answer_part = templates.split_template(TEMPLATE)
print("prompt part:", repr(prompt_part), " answer part:", repr(answer_part))
example = templates.encode(TEMPLATE, tokenizer, qa_records.rows[0], MAX_SEQ_LEN)
shown = templates.show_trained_tokens(tokenizer, example)
display(pd.DataFrame(shown, columns=["token", "trained"]).T)
trained = [t for t, on in shown if on]
# EOS once, closing the answer; ChatML then writes a newline after it, which the model may also learn.
eos_at = [i for i, t in enumerate(trained) if t == tokenizer.eos_token]
assert len(eos_at) == 1 and not tokenizer.convert_tokens_to_string(trained[eos_at[0] + 1:]).strip(), trained
print("DataError:", expect_error(DataError, templates.render_template, "User: {question}\nAssistant: {output}",
                                 qa_records.rows[0], where=f"{qa_records.where(0)}"))

# %%
# Try it: edit the template or the fields. Green tokens are trained, grey ones masked (label -100).
# Try "User: {input}\nAssistant: {output}", a {question} placeholder, or a small max_seq_len.
widgets.template_playground(tokenizer, template=templates.chat_text_template(tokenizer, "input", "output"),
                            row={"input": "What does the word gloomy mean?", "output": "It means sad."})

# %% [markdown]
# ## 5 · Split: seeded, and stratified for classification
#
# `records.split` holds out `validation_fraction` of the rows (seeded, so the same split every run) and,
# given a label field, keeps each label's share the same in both splits. Here the Q&A answers serve as
# labels, to show the counts.

# %%
qa_splits, counts = records.split(qa_records, validation=validation_fraction, label_field="output", seed=cfg.seed)
display(counts)
assert not set(qa_splits["train"]["input"]) & set(qa_splits["validation"]["input"])

# %% [markdown]
# ## 6 · Run it from a YAML config
#
# The chapter's YAML, with the names that really work in Olive's LoRA pass: `alpha` (not `lora_alpha`),
# training settings under `training_args`, and `input_model: {type: HfModel}`. `lab:` holds this
# course's extras; `lab.precision` (default `auto`) trains in bf16 where the CPU or GPU computes bf16 in
# hardware, as notebook 02 does, and in fp32 elsewhere (`fp32` forces it). The same file runs from a shell with
# `python -m labhelpers finetune --config qa_run.yaml` (see `configs/qa_lora.yaml`); a run never
# writes into an existing run folder unless you pass `--resume`.

# %%
qa_config = {
    "input_model": {"type": "HfModel", "model_path": cfg.model_path},
    "data_configs": [{"name": "qa_train", "type": "HuggingfaceContainer",
                      "load_dataset_config": {"data_name": "json", "data_files": str(qa_paths["train"])},
                      "pre_process_data_config": {"chat_template": {"prompt": "input", "answer": "output"},
                                                  "max_seq_len": MAX_SEQ_LEN}}],
    "passes": {"lora": {"type": "LoRA", "train_data_config": "qa_train", "r": cfg.lora_r, "alpha": cfg.lora_alpha,
                        "lora_dropout": cfg.lora_dropout, "target_modules": "all-linear", "modules_to_save": None,
                        "training_args": {"max_steps": qa_steps, "learning_rate": cfg.learning_rate,
                                          "per_device_train_batch_size": cfg.batch_size, "logging_steps": 20,
                                          "save_steps": qa_steps, "seed": cfg.seed}}},
    "output_dir": str(run_dir / "qa_run"),
    "lab": {"validation_fraction": validation_fraction, "seed": cfg.seed, "eval_samples": 16, "max_new_tokens": 8},
}
config_path = runconfig.dump_config(qa_config, run_dir / "qa_run.yaml")
print(config_path.read_text())
chapter_style = json.loads(json.dumps(qa_config))
chapter_style["passes"]["lora"]["lora_alpha"] = chapter_style["passes"]["lora"].pop("alpha")
print("ConfigError:", expect_error(ConfigError, runconfig.from_dict, chapter_style, source="chapter.yaml"))


# %%
def answers(model, template, rows, max_new_tokens=12):
    return finetune.answers(model, tokenizer, template, rows, max_new_tokens=max_new_tokens)

qa_eval = qa_test.rows[:n_eval]
qa_refs = [r["output"] for r in qa_eval]
qa_before = answers(base_model, TEMPLATE, qa_eval)
qa_result = finetune.run(config_path)
qa_after = answers(qa_result.model, TEMPLATE, qa_eval)
qa_scores = {"base": textmetrics.exact_match(qa_before, qa_refs),
             "fine-tuned": textmetrics.exact_match(qa_after, qa_refs)}
with pd.option_context("display.max_colwidth", 60):
    display(pd.DataFrame({"question": [r["input"] for r in qa_eval], "expected": qa_refs,
                          "before": qa_before, "after": qa_after}).head(8))
print("exact match on the test questions:", qa_scores)
if margins is not None:
    assert qa_scores["fine-tuned"] - qa_scores["base"] >= margins["qa"], qa_scores
err = expect_error(OverwriteError, finetune.run, config_path, log=None)   # the finished run is never overwritten
print(f"running it again: {type(err).__name__}: {err}")

# %% [markdown]
# ## 7 · The four task types
#
# Each task gets a small generated dataset (`datasets_tasks`), a validation report, a config and a
# short run, and is scored on held-out rows with a metric that fits it:
#
# | task | input → output | metric |
# |---|---|---|
# | classification | sentence → tone label | accuracy (first word of the answer) |
# | generation | "write a *sad* sentence about the park" → a sentence | on-tone rate (uses a feeling word of that tone) |
# | extraction | sentence → `{"place": …, "tone": …}` | exact field match |
# | summarisation | three sentences → one | ROUGE-L (and exact match, to keep it honest) |

# %%
TASK_FIELDS = {"classification": ("text", "label"), "generation": ("input", "output"),
               "extraction": ("input", "output"), "summarization": ("input", "output")}
TASK_TEMPLATES = {task: templates.chat_text_template(tokenizer, *f) for task, f in TASK_FIELDS.items()}

def score(task, preds, rows):
    if task == "classification":
        return classification_scores([r["label"] for r in rows], [parse_label(p, TONES) for p in preds],
                                     TONES)["accuracy"]
    if task == "generation":
        return sum(task_data.on_tone(p, r["tone"]) for p, r in zip(preds, rows)) / len(rows)
    if task == "extraction":
        return textmetrics.field_match(preds, [r["output"] for r in rows])["field_accuracy"]
    return textmetrics.rouge(preds, [r["output"] for r in rows])["rougeL"]

def task_run(task, n_train=300):
    paths = task_data.write_task(task, run_dir / task, {"train": n_train, "test": n_eval}, seed=cfg.seed)
    train, test = records.read_records(paths["train"]), records.read_records(paths["test"])
    label = "label" if task == "classification" else None
    rep = validation.validate(train, required=templates.template_fields(TASK_TEMPLATES[task]), label_field=label,
                        template=TASK_TEMPLATES[task], tokenizer=tokenizer, max_seq_len=160, others={"test": test})
    rep.raise_for_errors()
    config = json.loads(json.dumps(qa_config))
    config["data_configs"][0]["load_dataset_config"]["data_files"] = str(paths["train"])
    prompt_field, answer_field = TASK_FIELDS[task]
    config["data_configs"][0]["pre_process_data_config"] = {
        "chat_template": {"prompt": prompt_field, "answer": answer_field}, "max_seq_len": 160}
    config["passes"]["lora"]["training_args"].update(max_steps=task_steps, save_steps=task_steps)
    config["output_dir"] = str(run_dir / f"{task}_run")
    config["lab"].update(label_field=label, max_new_tokens=4 if label else 16)
    before = answers(base_model, TASK_TEMPLATES[task], test.rows, 4 if label else 20)
    result = finetune.run(runconfig.dump_config(config, run_dir / f"{task}.yaml"), log=None)
    after = answers(result.model, TASK_TEMPLATES[task], test.rows, 4 if label else 20)
    out = {"task": task, "base": score(task, before, test.rows), "fine-tuned": score(task, after, test.rows),
           "train_s": result.metrics["train_seconds"], "warnings": len(rep.warnings)}
    if task == "summarization":
        out["exact_match"] = textmetrics.exact_match(after, [r["output"] for r in test.rows])
    example = {"input": test.rows[0].get("input", test.rows[0].get("text")), "base": before[0], "fine-tuned": after[0],
               "distinct_answers": len(set(after))}
    return out, example


# %%
task_scores, examples = [], {}
for task in ("classification", "generation", "extraction", "summarization"):
    scores, examples[task] = task_run(task)
    task_scores.append(scores)
    print(f"{task:<15} base {scores['base']:.3f} -> fine-tuned {scores['fine-tuned']:.3f}  ({scores['train_s']:.0f} s)")
task_table = pd.DataFrame(task_scores).set_index("task").round(3)
display(task_table)
with pd.option_context("display.max_colwidth", 70):
    display(pd.DataFrame(examples).T)
if margins is not None:
    for row in task_scores:
        assert row["fine-tuned"] - row["base"] >= margins[row["task"]], f"{row['task']}: {row}"
for task, example in examples.items():
    assert example["distinct_answers"] > 1, f"{task}: the fine-tuned model gives one answer to every input"

# %% [markdown]
# Read the table with the metric in mind. Every answer is built from what the base model learned in
# pretraining: which tone a feeling word has (classification, extraction's `tone`), a feeling word for
# a tone (generation), repeating a name or place from the context (extraction's `place`, the
# summary's who and where) and the shape of a JSON record. The fine-tune teaches only the task and
# its format. Extraction's field accuracy counts each field separately, so a wrong tone with the right
# place scores half. ROUGE-L rewards a summary's shape even when a word is wrong, which is why exact
# match sits next to it. A metric only tells you what it measures.
#
# ## 8 · Why the base model matters: one run config, two base models
#
# Every task above uses words both base models met in pretraining (the tiny Llama's corpus was written so that
# they are learnable). A user's own task rarely is. Here is one whose words the tiny corpus never holds: sort a word
# into *country*, *sport* or *body* (part) (`labhelpers.data.world_data`; the 30 test words never occur in
# training, and none of the task's words in the tiny corpus). The **same run config** trains the tiny
# Llama and SmolLM2-135M-Instruct (`make real-model`): only `input_model.model_path` differs, and the
# `chat_template` fields let each model write the rows in its own chat format. Fine-tuning can teach both
# the answer's format; only a model that learned what *Kenya* or *badminton* is can answer a held-out word.

# %%
world_paths = world_data.write(run_dir / "world", seed=cfg.seed)
world_test = records.read_records(world_paths["test"])
world_labels = [r["label"] for r in world_test.rows]

def world_config(model_path, name):
    config = json.loads(json.dumps(qa_config))
    config["input_model"]["model_path"] = model_path
    config["data_configs"][0]["load_dataset_config"]["data_files"] = str(world_paths["train"])
    config["data_configs"][0]["pre_process_data_config"] = {"chat_template": {"prompt": "text", "answer": "label"},
                                                            "max_seq_len": 96}
    config["passes"]["lora"].update(r=8, alpha=16)
    config["passes"]["lora"]["training_args"].update(max_steps=world_steps, save_steps=world_steps,
                                                     learning_rate=world_lr)
    config["output_dir"] = str(run_dir / f"world_{name}")
    config["lab"].update(label_field="label", max_new_tokens=4)
    return runconfig.dump_config(config, run_dir / f"world_{name}.yaml")

def world_accuracy(model, tok):
    preds = finetune.answers(model, tok, templates.chat_text_template(tok, "text", "label"), world_test.rows, 4)
    return classification_scores(world_labels, [parse_label(p, world_data.LABELS) for p in preds],
                                 world_data.LABELS)["accuracy"], preds

world = {}
for name, path in (("tiny", resolve_model("tiny")), (world_model, resolve_model(world_model))):
    tok = AutoTokenizer.from_pretrained(path)
    base_acc, base_preds = world_accuracy(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tok)
    result = finetune.run(world_config(path, name), log=None)
    ft_acc, ft_preds = world_accuracy(result.model, tok)
    world[name] = {"base": base_acc, "fine-tuned": ft_acc, "final train loss": result.metrics["final_train_loss"],
                   "train_s": result.metrics["train_seconds"],
                   "example": f"{world_test.rows[0]['text']} -> {ft_preds[0]!r}"}
    print(f"{name:<14} base {base_acc:.3f} -> fine-tuned {ft_acc:.3f} ({result.metrics['train_seconds']:.0f} s)")
world_table = pd.DataFrame(world).T
display(world_table)
plots.bar_compare({f"{n} fine-tuned": r["fine-tuned"] for n, r in world.items()}, "held-out accuracy",
                  title=f"{len(world_test)} held-out words; chance {1 / len(world_data.LABELS):.2f}")
if world_bars is not None:
    assert world["tiny"]["fine-tuned"] <= world_bars["tiny_max"], world["tiny"]
    assert world[world_model]["fine-tuned"] >= world_bars["real_min"], world[world_model]
    assert world[world_model]["fine-tuned"] - world["tiny"]["fine-tuned"] >= world_bars["min_gap"], world

# %% [markdown]
# The tiny model's training loss stays high: every word of this task, the three labels included, is new to
# it, so 20 steps teach it neither the words nor the format, and it answers nothing parseable (below
# chance). SmolLM2 brings the words and the knowledge, and the same 20 steps teach it to put them in the
# answer's format: held-out words it never saw in this data are sorted right. Before you fine-tune a small
# model for your own task, check that the base model knows the task's world: ask it a few held-out
# questions in plain words first, and look at its loss on your data.
#
# ## 9 · Self-check exercise
#
# Look at the broken copy's report (section 3). **Which line numbers hold errors** (the ones that stop
# a run)? Put them in `answer` as a list and run the cell. (Solutions: `solutions/04_custom_data.md`.)

# %%
answer = None   # e.g. [1, 2]
print(exercises.check_error_lines(answer, broken_report))

# %% [markdown]
# ## Summary
#
# - Two records load and validate, but cannot be split or learned from: a dataset needs hundreds of
#   varied rows and a held-out part.
# - Validate first: errors (missing fields, wrong types, empty values, control characters, leakage)
#   stop with file, line and field; warnings (duplicates, rare labels, long rows) go in a report.
# - The last template field is the answer; EOS once; the prompt masked.
# - A YAML config with Olive's names (`alpha`, `training_args`, `input_model: {type: HfModel}`) runs the
#   whole path from a notebook or a shell, into a run folder it never overwrites.
# - Each task type needs its own metric; all four beat the base model after 10 LoRA steps each.
# - Fine-tuning teaches a task and its format; the knowledge comes from the base model. On a task whose
#   words it never saw, the tiny Llama learns nothing in 20 steps while SmolLM2 sorts held-out words right.

# %%
total_seconds = time.perf_counter() - t_start
summary = {"qa_exact_match_base": qa_scores["base"], "qa_exact_match": qa_scores["fine-tuned"],
           "broken_errors": len(broken_report.errors), "broken_warnings": len(broken_report.warnings),
           "seconds": round(total_seconds, 1)}
for row in task_scores:
    summary[f"{row['task']}_base"] = row["base"]
    summary[f"{row['task']}_finetuned"] = row["fine-tuned"]
for name, row in world.items():
    key = "world_" + name.replace("-", "_").replace(".", "_")
    summary[f"{key}_base"], summary[f"{key}_finetuned"] = row["base"], row["fine-tuned"]
params = {**cfg.to_dict(), "qa_steps": qa_steps, "task_steps": task_steps, "n_eval": n_eval,
          "validation_fraction": validation_fraction, "world_model": world_model, "world_steps": world_steps,
          "world_lr": world_lr}
print(runs.write_metrics(run_dir, summary, params=params, notebook="04_custom_data"))
