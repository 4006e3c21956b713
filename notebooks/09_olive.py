# %% [markdown]
# # 09 · The Olive workflow, executed: `olive finetune`, `auto-opt`, `generate-adapter`
#
# The chapter teaches fine-tuning through Microsoft Olive's command line. This notebook runs those
# commands for real, on a real pretrained SLM and the phrase → tone data, on a CPU, and checks what each
# one produced. Where the chapter's command would not run, the table in section 1 gives the command that
# does and the reason. Olive lives in its own environment (`.venv-olive`, made by `make olive-env`),
# because olive-ai 0.13 needs transformers 5 while the course runs on 4.57. This notebook calls Olive's
# `olive` program from there, as a subprocess, with the arguments a learner would type in a terminal.
# Everything Olive writes is then loaded back here, in the course's environment, and scored with the
# course's evaluation helpers.
#
# **Goals**
# - run `olive finetune` with LoRA and with QLoRA on local JSON data with a text template, and read
#   what Olive really trained on (packing, all tokens, its hidden `--max_samples 256`);
# - score Olive's adapters with `peft` in the course's environment, against the base model and against
#   the course's own LoRA path (notebook 02's `Trainer`, loss on the answer only);
# - turn the fine-tune into an int4 ONNX Runtime GenAI model with `olive auto-opt` and score it there;
# - serve two adapters from one base: `olive generate-adapter` makes the base with LoRA inputs, and
#   onnxruntime-genai switches between Olive's adapter and the course's, checked token by token against
#   PyTorch;
# - see how `labhelpers.deploy.olive.run_olive` turns Olive's failures, loud or quiet (exit code 0, no output),
#   into one clear error.
#
# **Model:** SmolLM2-135M-Instruct by default, the nearest the course gets offline to the chapter's
# Llama-3.2-1B-Instruct: Olive's steps, the int4 model's size and speed and what int4 costs in accuracy are only
# worth reading on real weights. `-p model_name tiny` runs the same commands on the tiny Llama in about 2 minutes
# (it needs 400 Olive steps where SmolLM2 needs 40, because it knows far less to start from).
#
# **Time on 2 CPU cores:** about 4 minutes on an Intel CPU with AMX bf16, 8 on a CPU without bf16; 2 with `model_name
# tiny`. Each Olive command spends about 20 s starting up; one Olive LoRA step on SmolLM2 takes 1.8-3 s at 4 pieces of
# 64 tokens, so the chapter's 100 steps alone would take 3-5 minutes, and 40 already score 0.7-0.99 (section 2).
#
# **Chapter:** Microsoft Olive; Example 1 (LoRA, then `auto-opt`), Example 3 (QLoRA), multi-adapter
# deployment; Best practices → memory (`--per_device_train_batch_size 1 --gradient_accumulation_steps`).

# %% tags=["parameters"]
# Parameters: papermill sets these (-p name value). The defaults are the fast workshop setting.
# model_name: a preset (smollm2-135m, the converted real model; tiny, the course's tiny Llama), a hub id or a
# local folder (Llama-style).
# output_dir: empty means a new folder under runs/; an existing non-empty folder is refused.
# Step counts, min_accuracy and check_effects: "auto" takes the schedule and bars measured for this model
# (labhelpers/train/workshop.py). On the tiny Llama: 400/60/150 steps, Olive's LoRA adapter at least 0.9 (base
# 0.0, chance 0.25); on SmolLM2 40/5/20 steps and 0.6; a number sets the bar; None only reports.
# check_effects: True always asserts the measured effects; False only reports.
model_name = "smollm2-135m"
max_steps = "auto"         # olive finetune --max_steps (LoRA); see section 2 for why not the chapter's 100
qlora_steps = "auto"       # olive finetune --method qlora --max_steps
course_steps = "auto"      # the course's own LoRA path (section 2b)
learning_rate = 3e-3
lora_r = 16
lora_alpha = 32
max_seq_len = 64           # Olive packs rows into pieces of this many tokens
batch_size = 4             # pieces per step (per_device_train_batch_size)
n_test = 100               # held-out phrases every model is scored on
threads = 0                # ONNX Runtime threads; 0: as many as torch uses
seed = 0
output_dir = ""
min_accuracy = "auto"
check_effects = "auto"

# %%
# Check every parameter before any work: a wrong one stops here with a message that names it.
from labhelpers.checks import check_int
from labhelpers.models.presets import resolve_model
from labhelpers.train import workshop
from labhelpers.train.config import TrainConfig, accuracy_bar, effects_checked

schedule = workshop.steps("09", resolve_model(model_name), max_steps=max_steps, qlora_steps=qlora_steps,
                          course_steps=course_steps)
max_steps, qlora_steps, course_steps = schedule["max_steps"], schedule["qlora_steps"], schedule["course_steps"]
cfg = TrainConfig(model_name=model_name, max_steps=max_steps, learning_rate=learning_rate, lora_r=lora_r,
                  lora_alpha=lora_alpha, batch_size=batch_size, seed=seed, output_dir=output_dir)
for name, value, low in (("qlora_steps", qlora_steps, 1), ("course_steps", course_steps, 1),
                         ("max_seq_len", max_seq_len, 16), ("n_test", n_test, 10), ("threads", threads, 0)):
    check_int(name, value, low=low)
# The table's bars were measured at seed 0. Olive's start changes with the seed (section 2), so another seed
# keeps only the floor under every start seen, where the table has one.
bar = accuracy_bar(min_accuracy, cfg, "09", schedule, name="min_accuracy" if cfg.seed == 0 else "any_seed_min_accuracy")
qlora_bar = accuracy_bar("auto", cfg, "09", schedule, name="qlora_accuracy") if cfg.seed == 0 else None
course_bar = accuracy_bar("auto", cfg, "09", schedule, name="course_accuracy")
strict = effects_checked(check_effects, cfg, "09", schedule)
int4_drop = accuracy_bar("auto", cfg, "09", schedule, name="max_int4_drop")
print(workshop.describe("09", cfg.model_path))
print(f"model {cfg.model_path}; Olive LoRA {cfg.max_steps} steps, QLoRA {qlora_steps} steps; "
      f"accuracy bar {bar}; asserting measured effects: {strict}")

# %%
import json
import time
import warnings
from pathlib import Path

import datasets
import matplotlib.pyplot as plt
import pandas as pd
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainingArguments,
    set_seed,
)

from labhelpers import runs
from labhelpers.course import exercises
from labhelpers.data.templates import chat_text_template
from labhelpers.deploy import export, olive
from labhelpers.deploy.onnx_infer import GenAIModel, greedy_tokens
from labhelpers.errors import OliveError
from labhelpers.evaluate.metrics import classification_scores, parse_label
from labhelpers.memory.hardware import pick_attention
from labhelpers.paths import TONE_DATA_DIR
from labhelpers.train import quantization
from labhelpers.train.tonetask import ToneTask

warnings.filterwarnings("ignore", module="(torch|transformers|peft|onnx).*")
set_seed(cfg.seed)
datasets.disable_progress_bars()
t_start = time.perf_counter()
olive_exe = olive.olive_executable()      # stops here, saying to run `make olive-env`, if Olive is missing
run_dir = runs.prepare_output_dir(cfg.output_dir, "09_olive")
work = run_dir / "olive"                  # Olive's cwd: its cache (.olive-cache/) goes here, not into the repo
work.mkdir()
n_threads = threads or torch.get_num_threads()
tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
task = ToneTask(tokenizer, n_test=n_test)
train_file = TONE_DATA_DIR / "train.jsonl"

versions = olive.environment_versions()
here = {"transformers": __import__("transformers").__version__, "torch": torch.__version__,
        "peft": __import__("peft").__version__, "onnxruntime-genai": __import__("onnxruntime_genai").__version__}
display(pd.DataFrame({"course (.venv)": here, "Olive (.venv-olive)": versions}).fillna("-"))
print(f"olive program: {olive_exe}\noutputs in {run_dir}")

# %% [markdown]
# ## 1 · The chapter's commands, and what runs
#
# The chapter's commands were checked against olive-ai 0.13.0 on a CPU: run where they can run, and the
# failing forms (`--task_name`, `generate-adapter --base_model_path`) are run by section 6 and
# `tests/deploy/test_olive.py`. The middle column is what this notebook runs, below. The **why** column says what
# fails, or what costs too much, in the chapter's form.
#
# | chapter | runs here | why |
# |---|---|---|
# | `pip install olive-ai[auto-opt] transformers onnxruntime-genai` | `make olive-env` (`.venv-olive`: `olive-ai==0.13.0 requests onnxruntime-genai==0.14.1 peft datasets bitsandbytes`) | olive-ai 0.13 needs transformers 5 (the course: 4.57), so it gets its own environment. It imports `requests` without declaring it. `auto-opt --use_model_builder` fails with onnxruntime-genai 0.15.2 and 0.18 |
# | `olive finetune --model_name_or_path meta-llama/Llama-3.2-1B-Instruct --trust_remote_code --data_name xxyyzzz/phrase_classification --text_template "<\|start_header_id\|>user…{phrase}<\|eot_id\|>…{tone}" --method lora --max_steps 100` | `olive finetune -m MODEL -d json --data_files data/tone/train.jsonl --text_template TEMPLATE --method lora --torch_dtype float32 --max_seq_len 64 --lora_r 16 --lora_alpha 32 --target_modules … --max_steps 40 --learning_rate 0.003 --per_device_train_batch_size 4 -o …` (section 2) | the dataset id is a placeholder (and no hub is reachable here): local JSON Lines go through `-d json --data_files`. `--trust_remote_code` runs code from the model repository, and a Llama model needs none, so it stays off. The hand-written template has no end-of-turn token after `{tone}`, so the model never learns to stop; here the template is written by the model's own chat template. Olive's defaults `bfloat16`, `--max_seq_len 1024`, `--lora_r 64 --lora_alpha 16` and learning rate 2e-4 make CPU steps slow and learning slow. SmolLM2 scores about 0.7 after 40 steps, while on the tiny Llama 100 learn nothing (section 2) |
# | `olive finetune --method qlora … --per_device_train_batch_size 16 --max_steps 150 --logging_steps 50` (8B model, hub data) | `olive finetune --method qlora … --per_device_train_batch_size 1 --gradient_accumulation_steps 4 --max_steps 10 --logging_steps 2` (section 3) | the same command on the local model and data. bitsandbytes 4-bit runs on a CPU. The batch is 1 × 4 accumulation steps, the chapter's memory advice (`--gradient_checkpointing true --per_device_train_batch_size 1 --gradient_accumulation_steps 16`) at a smaller count |
# | `olive auto-opt --model_name_or_path ft/model --adapter_path ft/adapter --device cpu --provider CPUExecutionProvider --use_ort_genai --output_path onnx` | the same, plus `--use_model_builder --precision int4` (section 4) | without `--use_model_builder`, Olive's default exporters fail with transformers 5. With it, the ONNX Runtime GenAI model builder writes the model |
# | `olive finetune --method lora --task_name "classification" --output_path adapters/classifier` | `olive finetune … -o adapters/tone` as in section 2 | there is no `--task_name`. `-m` and `-d` are required, and Olive stops with a usage error |
# | `olive generate-adapter --base_model_path models/base --adapter_paths a,b --output_path models/multi-adapter` | `olive generate-adapter -m ONNX_WITH_LORA -o OUT`, then `export.write_onnx_adapter` for each further adapter (section 5) | `generate-adapter` has no `--base_model_path`/`--adapter_paths` (section 6 runs the chapter's form). It takes **one** ONNX model with LoRA weights inside and turns those weights into inputs plus an adapter file. Olive's `convert-adapters` would convert the next adapter, but it names the tensors for Olive's own exporter (`…self_attn.q_proj.lora_A.weight`), and a model-builder graph names its inputs `…attn.q_proj.lora_A.MatMul.weight`, so its file does not load there (`tests/deploy/test_olive.py` checks this) |
# | `olive run --config olive-config.yaml --setup` | not run with Olive here: notebook 04 runs the corrected YAML with the course's runner | `--setup` is gone (0.13 has `--list_required_packages`). The chapter's YAML uses names Olive's LoRA pass does not have (`lora_alpha`, a pass-level `weight_decay`) |
# | `olive finetune --logging_steps 10 --eval_steps 50 --save_steps 100 --logging_dir ./logs --report_to tensorboard` | `--logging_steps` runs here. Olive passes unknown options on to `TrainingArguments` | without an `--eval_split` Olive turns evaluation off, so `--eval_steps` does nothing. `--report_to tensorboard` needs tensorboard in `.venv-olive`, which is not installed: notebook 05 does the monitoring |
#
# Olive also has silent failures: several problems end with exit code 0 and only the line "No output model
# produced". So every command here goes through `olive.run_olive(args, expect=[...])`. It streams Olive's log
# into a file, checks that each promised output exists and is not empty, and raises `OliveError` with the
# command and the end of the log when one is missing or Olive fails (section 6 shows one).

# %% [markdown]
# ## 2 · `olive finetune` with LoRA (the chapter's Example 1)
#
# The text template decides what the model learns. We do not write it by hand: `chat_text_template`
# renders a conversation with the model's own chat template and puts `{phrase}` and `{tone}` where the
# texts go. Then training sees exactly the format that inference prompts with, including the
# end-of-sequence token after the answer. Olive fills the template with each row's columns
# (`str.format`), joins the rows, cuts the result into `max_seq_len`-token pieces, and trains on
# **every** token of a piece, prompt included. The course's own path (section 2b) trains on the answer
# only.

# %%
template = chat_text_template(tokenizer, "phrase", "tone")
print("text template:", repr(template))
print("first row    :", repr(template.format(**json.loads(train_file.read_text().splitlines()[0]))))

lora_out = work / "ft-lora"
lora_args = olive.finetune_args(
    cfg.model_path, train_file, template, method="lora", max_steps=cfg.max_steps, out=lora_out,
    learning_rate=cfg.learning_rate, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, max_seq_len=max_seq_len,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    # About eight loss records whatever the length (the loss curve below reads them from Olive's log).
    extra=["--per_device_train_batch_size", str(cfg.batch_size), "--logging_steps", str(max(1, cfg.max_steps // 8)),
           "--gradient_checkpointing", "False", "--seed", str(cfg.seed)])
print("$", olive.command_text(lora_args))
# torch_seed: Olive's process seeds torch before Olive starts (why: the end of this section).
lora_run = olive.run_olive(lora_args, olive.finetune_outputs(lora_out), log_path=work / "ft-lora.log", cwd=work,
                           stream=False, torch_seed=cfg.seed)
lora_log = olive.training_log(lora_run.log_path.read_text())
print(f"done in {lora_run.seconds:.0f} s (training {lora_log[-1]['train_runtime']:.0f} s); Olive wrote:")
for p in sorted(lora_out.rglob("*")):
    if p.is_file():
        print(f"  {p.relative_to(work)}  {p.stat().st_size / 1e6:.2f} MB")

# %%
losses = [r for r in lora_log if "loss" in r]
steps_logged = [round(r["epoch"] / lora_log[-1]["epoch"] * cfg.max_steps) for r in losses]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(steps_logged, [r["loss"] for r in losses], marker="o")
ax.set(xlabel="step", ylabel="training loss (every token)", title="olive finetune, read from its log")
fig.tight_layout()
print(f"last epoch figure {lora_log[-1]['epoch']:.2f} after {cfg.max_steps} steps of {cfg.batch_size} pieces")


# %% [markdown]
# Olive's log gives the loss and the epoch count. The loss stays high because most tokens are the phrases
# themselves, which are hard to predict; the answer is a token or two in about twenty, so only a small share
# of each step's gradient teaches the task. How many steps that takes depends on what the model knows:
# SmolLM2, which already reads English, scores 0.7-0.99 after 40 steps (the CPU's kernels decide where: the
# same seed gave 0.74 on an Intel CPU with AMX and 0.99 on an AMD EPYC); the tiny Llama needs about 400
# (at the chapter's 100 it has not learned the task yet). Pick the steps from a held-out score, as here,
# not from the chapter.
#
# **From a shell, Olive's runs are not repeatable.** Olive 0.13 creates the LoRA weights before anything
# seeds torch (its `--seed` reaches the `Trainer`, which seeds only afterwards), and torch seeds its random
# generator differently in every new process. So the same `olive finetune` command, typed twice, starts from
# two different adapters and can end far apart (on the tiny Llama, anywhere from about 0.5 to 1.0 after 400
# steps). What to do about it: start Olive with `run_olive(..., torch_seed=seed)`, as this notebook does. It
# runs the same command in a Python that calls `torch.manual_seed(seed)` before handing over to Olive's own
# entry point, and two runs then give the same adapter bytes (`tests/deploy/test_olive.py` checks that, and
# that unseeded runs differ). `-p seed 1` shows another start. The assert below takes its bar from the
# workshop table, measured at seed 0; with another seed only a floor under every start measured is kept
# (where the table has one). The course's own path (section 2b) is seeded the usual way, with `set_seed`.
#
# Now load Olive's adapter **in the course's environment** with `peft`, on the same base, and score it
# on the held-out phrases. Olive's output is a standard PEFT folder.

# %%
def load_base():   # eager attention on a CPU: notebook 02, section 4
    return AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=torch.float32,
                                                attn_implementation=pick_attention())

base_answers, base_scores = task.evaluate(load_base().eval())
olive_lora = PeftModel.from_pretrained(load_base(), lora_out / "adapter").eval()
olive_answers, olive_scores = task.evaluate(olive_lora)
print(f"base model       : accuracy {base_scores['accuracy']:.3f}, e.g. {base_answers[:3]}")
print(f"Olive LoRA (peft): accuracy {olive_scores['accuracy']:.3f}, e.g. {olive_answers[:3]}")
if bar is not None:
    assert olive_scores["accuracy"] >= bar, f"Olive's adapter scored {olive_scores['accuracy']:.3f} < {bar}"
if strict:
    assert olive_scores["accuracy"] >= base_scores["accuracy"] + 0.3, "Olive's tuning should beat the base by far"

# %% [markdown]
# ### 2b · The course's own LoRA path, for comparison
#
# The same base, rank and alpha, trained in the open with `peft` and `Trainer` with notebook 02's
# schedule (learning rate 1e-3, cosine, 8 rows per step, LoRA dropout 0) for `course_steps` steps. Here one
# example is one row (a phrase and its tone), and the loss counts **only the answer tokens**
# (`DataCollatorForSeq2Seq` with the prompt's labels at -100).

# %%
course_model = get_peft_model(load_base(), LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                      target_modules="all-linear", task_type="CAUSAL_LM"))
course_args = TrainingArguments(
    output_dir=str(run_dir / "trainer"), max_steps=course_steps, per_device_train_batch_size=8,
    learning_rate=1e-3, lr_scheduler_type="cosine", warmup_ratio=0.05, logging_steps=course_steps, save_strategy="no",
    report_to="none", seed=cfg.seed, data_seed=cfg.seed, use_cpu=True, disable_tqdm=True)
t0 = time.perf_counter()
Trainer(model=course_model, args=course_args, train_dataset=task.train,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)).train()
course_seconds = time.perf_counter() - t0
course_adapter = run_dir / "adapter-course"
course_model.save_pretrained(course_adapter)
course_answers, course_scores = task.evaluate(course_model.eval())
compare = pd.DataFrame({
    "base": {"accuracy": base_scores["accuracy"], "macro F1": base_scores["macro_f1"], "train s": 0.0},
    "olive finetune (all tokens, packed)": {"accuracy": olive_scores["accuracy"], "macro F1": olive_scores["macro_f1"],
                                            "train s": lora_log[-1]["train_runtime"]},
    "course Trainer (answer only)": {"accuracy": course_scores["accuracy"], "macro F1": course_scores["macro_f1"],
                                     "train s": course_seconds},
}).T
display(compare.round(3))
if course_bar is not None:
    assert course_scores["accuracy"] >= course_bar, f"the course's adapter scored {course_scores['accuracy']:.3f}"

# %% [markdown]
# The two paths differ in what the loss counts. Olive spends most of its gradient on the prompt's tokens;
# the course's masking makes each step count for the answer, so with the same number of steps it usually
# scores higher (compare the rows above). Olive's command line is short and reproducible (seeded) and writes
# a standard adapter, but its defaults are built for GPUs. The course's `Trainer` path shows every choice.
# Both adapters are plain PEFT folders, so the rest of the pipeline treats them the same.
#
# ## 3 · `olive finetune` with QLoRA (the chapter's Example 3)
#
# `--method qlora` loads the base in 4-bit NF4 with bitsandbytes and trains a LoRA adapter on top.
# Olive then adapts every linear layer and ignores `--target_modules`. On a CPU, 4-bit saves memory,
# not time. We use the chapter's memory recipe, batch 1 with gradient accumulation: each optimizer step
# adds up four pieces, so it sees as many tokens as a batch of 4. To score the adapter we load the base
# in 4 bits again, as it was trained. The default run is short on purpose: a QLoRA step here costs about
# three LoRA steps (the printout says how much), so it shows the command working and the loss falling, and
# its accuracy is asserted only to the workshop table's bar, well under LoRA's. `-p qlora_steps 40` (SmolLM2)
# or `-p qlora_steps 400` (tiny) is the experiment to try, and it costs several minutes.

# %%
qlora_out = work / "ft-qlora"
# At least five loss records, so "the loss falls" below compares two different points (10 steps: every 2).
qlora_log_every = min(10, max(1, qlora_steps // 5))
qlora_args = olive.finetune_args(
    cfg.model_path, train_file, template, method="qlora", max_steps=qlora_steps, out=qlora_out,
    learning_rate=cfg.learning_rate, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, max_seq_len=max_seq_len,
    extra=["--per_device_train_batch_size", "1", "--gradient_accumulation_steps", str(cfg.batch_size),
           "--logging_steps", str(qlora_log_every), "--seed", str(cfg.seed)])
print("$", olive.command_text(qlora_args))
qlora_run = olive.run_olive(qlora_args, olive.finetune_outputs(qlora_out), log_path=work / "ft-qlora.log",
                            cwd=work, stream=False, torch_seed=cfg.seed)
qlora_log = olive.training_log(qlora_run.log_path.read_text())
qlora_config = json.loads((qlora_out / "adapter" / "adapter_config.json").read_text())
print(f"done in {qlora_run.seconds:.0f} s (training {qlora_log[-1]['train_runtime']:.0f} s, "
      f"{qlora_log[-1]['train_runtime'] / qlora_steps:.2f} s/step; LoRA: "
      f"{lora_log[-1]['train_runtime'] / cfg.max_steps:.2f} s/step); adapted modules: "
      f"{sorted(qlora_config['target_modules'])}")

nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
base_4bit = AutoModelForCausalLM.from_pretrained(cfg.model_path, quantization_config=nf4, dtype=torch.float32)
quantization.keep_4bit_unpacked_on_cpu(base_4bit)  # odd-sized layers on AVX-512 BF16 CPUs
qlora_model = PeftModel.from_pretrained(base_4bit, qlora_out / "adapter").eval()
_, qlora_scores = task.evaluate(qlora_model)
print(f"Olive QLoRA on the 4-bit base: accuracy {qlora_scores['accuracy']:.3f} after {qlora_steps} steps "
      f"(training loss {qlora_log[0]['loss']:.2f} -> {[r for r in qlora_log if 'loss' in r][-1]['loss']:.2f})")
if strict:
    assert [r for r in qlora_log if "loss" in r][-1]["loss"] < qlora_log[0]["loss"], "QLoRA's loss should fall"
if qlora_bar is not None:
    assert qlora_scores["accuracy"] >= qlora_bar, f"Olive QLoRA scored {qlora_scores['accuracy']:.3f} < {qlora_bar}"

# %% [markdown]
# ## 4 · `olive auto-opt`: the fine-tune as an int4 ONNX Runtime GenAI model
#
# `auto-opt` converts the model for a target (`--device cpu --provider CPUExecutionProvider`) through
# the ONNX Runtime GenAI model builder (`--use_model_builder`), quantizes weights to int4 and, with
# `--adapter_path`, keeps the LoRA weights as separate graph inputs. They are stored in
# `adapter_weights.onnx_adapter`, int4 like the rest. Notebook 06 took the same steps by hand and kept
# the LoRA weights float. The accuracy int4 may cost here comes from the workshop table. On SmolLM2 it
# depends on the CPU: 0.74 in PyTorch against 0.60 as int4 on an Intel CPU with AMX, 0.99 against 0.71
# on an AMD EPYC without AVX-512 (the same seed trains a different adapter on other matmul kernels):
# the bar allows 0.35.

# %%
onnx_out = work / "onnx-int4"
auto_args = olive.auto_opt_args(lora_out / "model", onnx_out, adapter=lora_out / "adapter", precision="int4",
                                extra=["--use_ort_genai"])
print("$", olive.command_text(auto_args))
auto_run = olive.run_olive(auto_args, olive.auto_opt_outputs(onnx_out, adapter=True), log_path=work / "auto-opt.log",
                           cwd=work, stream=False)
print(f"done in {auto_run.seconds:.0f} s:", ", ".join(sorted(p.name for p in onnx_out.iterdir())))

int4 = GenAIModel(onnx_out, threads=n_threads)
int4.load_adapter(onnx_out / olive.ADAPTER_FILE, "tone")

def genai_scores(model, adapter):
    answers = [model.generate(p, 4, adapter=adapter) for p in task.prompts]
    return answers, classification_scores(task.test["tone"], [parse_label(a, task.labels) for a in answers],
                                          task.labels)

int4_answers, int4_scores = genai_scores(int4, "tone")
_, int4_base_scores = genai_scores(int4, None)
agree = sum(a == b for a, b in zip(int4_answers, olive_answers)) / len(olive_answers)
print(f"int4 ONNX + adapter: accuracy {int4_scores['accuracy']:.3f} (PyTorch: {olive_scores['accuracy']:.3f}, "
      f"same answer on {agree:.0%}); int4 ONNX without adapter: {int4_base_scores['accuracy']:.3f}")
if strict and int4_drop is not None:
    assert int4_scores["accuracy"] >= olive_scores["accuracy"] - int4_drop, "int4 should keep the adapter's accuracy"
if strict:
    assert int4_scores["accuracy"] >= int4_base_scores["accuracy"] + 0.3, "the adapter must be active"

# %% [markdown]
# ## 5 · Two adapters on one base: `olive generate-adapter`
#
# The chapter's multi-adapter command does not exist in this form. The route that runs:
#
# 1. an ONNX model **with the LoRA weights inside** (constant MatMuls beside each adapted weight).
#    Here the course's `export.build_genai(base, out, adapter_dir=...)` writes one with the same
#    model builder Olive uses;
# 2. `olive generate-adapter -m THAT -o OUT` turns those constants into graph inputs. `OUT/model.onnx`
#    is now the bare base with LoRA *slots*, and `OUT/adapter_weights.onnx_adapter` holds Olive's adapter;
# 3. any other PEFT adapter on the same modules fits those slots (the rank is free). The course's
#    `export.write_onnx_adapter` converts the course's own adapter from section 2b, using the graph's
#    input names. Olive's `convert-adapters` uses other names (section 1);
# 4. onnxruntime-genai loads the base once and switches adapters per request.
#
# We use fp32 here, so every answer can be checked token by token against PyTorch `PeftModel`.

# %%
base_dir = Path(cfg.model_path)
if not base_dir.is_dir():                      # a hub id: the builder needs a local folder
    base_dir = run_dir / "base"
    load_base().save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
baked = export.build_genai(base_dir, work / "baked-fp32", "fp32", adapter_dir=lora_out / "adapter")
multi_out = work / "multi"
gen_args = olive.generate_adapter_args(baked, multi_out)
print("$", olive.command_text(gen_args))
gen_run = olive.run_olive(gen_args, olive.generate_adapter_outputs(multi_out), log_path=work / "generate-adapter.log",
                          cwd=work, stream=False)
course_file = export.write_onnx_adapter(course_adapter, multi_out, work / "course.onnx_adapter")
print(f"generate-adapter {gen_run.seconds:.0f} s; {len(export.lora_inputs(multi_out))} LoRA inputs in "
      f"{multi_out.name}/model.onnx; adapter files: "
      f"Olive's {(multi_out / olive.ADAPTER_FILE).stat().st_size / 1e6:.2f} MB, "
      f"the course's {course_file.stat().st_size / 1e6:.2f} MB")

served = GenAIModel(multi_out, threads=n_threads)
served.load_adapter(multi_out / olive.ADAPTER_FILE, "olive")
served.load_adapter(course_file, "course")

# %%
# PyTorch reference: one PeftModel holding both adapters.
reference = PeftModel.from_pretrained(load_base(), lora_out / "adapter", adapter_name="olive")
reference.load_adapter(course_adapter, adapter_name="course")
reference.eval()
prompts = task.prompts[:6]
expected = {}
for name in ("olive", "course"):
    reference.set_adapter(name)
    expected[name] = [greedy_tokens(reference, tokenizer, p, 6) for p in prompts]
with reference.disable_adapter():
    expected[None] = [greedy_tokens(reference, tokenizer, p, 6) for p in prompts]

model_id, shown = id(served.model), {}
for step, name in enumerate(("olive", "course", None, "olive")):
    got = [served.generate_tokens(p, 6, adapter=name) for p in prompts]
    assert got == expected[name], f"step {step + 1}: adapter {name} differs from PyTorch PeftModel"
    shown[f"{step + 1}. {name or 'base'}"] = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in got]
assert id(served.model) == model_id, "switching adapters must not reload the base"
print("every switch gave PyTorch's tokens exactly (6 prompts x 4 switches)")
display(pd.DataFrame(shown, index=task.test["phrase"][:6]).assign(expected=task.test["tone"][:6]))

# %% [markdown]
# The base model is loaded once. Each adapter file is about a megabyte, and the active one is chosen per
# call. With no adapter the LoRA slots are zero and the answers are the base model's (row 3). Olive's
# adapter came out of `generate-adapter`, the course's out of `write_onnx_adapter`. Both gave exactly the
# tokens `peft` gives in PyTorch.
#
# ## 6 · When Olive fails quietly, or loudly
#
# `run_olive` is the small helper every command above went through. It runs `olive` with an argument
# list (never a shell line), streams the log to a file, and afterwards checks the outputs the command
# promised. Here is the chapter's multi-adapter command, run as written. Olive stops with a usage error,
# and the helper turns that into an `OliveError` that carries the command and the end of Olive's log.

# %%
chapter_args = ["generate-adapter", "--base_model_path", str(base_dir), "--adapter_paths",
                f"{lora_out / 'adapter'},{course_adapter}", "--output_path", str(work / "multi-adapter")]
try:
    olive.run_olive(chapter_args, [work / "multi-adapter" / "model.onnx"], cwd=work, stream=False)
    raise AssertionError("the chapter's generate-adapter form was expected to fail")
except OliveError as err:
    failure = str(err)
print(failure[-700:])
assert "exit code 2" in failure and "--model_name_or_path" in failure

# %% [markdown]
# Olive's quieter failures look different: the command runs, a pass fails or is skipped inside, and
# Olive exits with code 0 after printing "No output model produced". Code that only checks the exit code
# would go on with a missing model. `run_olive` checks that the promised files exist, so it raises in that
# case too (`tests/deploy/test_olive.py` covers both kinds with a stand-in for Olive). A louder one you may meet:
# `olive generate-adapter` on `auto-opt -a`'s output stops with "Can't replace existing dynamic dim lora_r",
# because that model's adapter is already extracted. Section 5 runs `generate-adapter` on a model with
# the LoRA weights inside, which is what it expects.
#
# ## 7 · Self-check exercise
#
# Olive's log from section 2 ends with an `epoch` figure: how many passes over its training samples
# the run made. Olive builds those samples by joining the templated rows and cutting them into
# `max_seq_len`-token pieces. **How many training samples did `olive finetune` build?** Work it out
# from the number of steps, the pieces per step and the last `epoch` in `lora_log`. Put it in `answer`,
# run the cell, and compare it with the number of rows in `data/tone/train.jsonl` (800).
# (Solutions: `solutions/09_olive.md`.)

# %%
answer = None   # a number of training samples (packed pieces)
print(exercises.check_olive_samples(answer, cfg.max_steps, cfg.batch_size, lora_log[-1]["epoch"], max_seq_len))

# %% [markdown]
# ## Summary
#
# - Olive runs in its own environment (`make olive-env`), and the course calls its `olive` program with
#   argument lists. `run_olive` checks that every promised output exists, because Olive can exit 0
#   without producing anything.
# - `olive finetune` works on a CPU with local data (`-d json --data_files`), a text template written
#   by the model's chat template, `--torch_dtype float32` and explicit LoRA settings. It packs rows into
#   pieces, trains on every token, and keeps at most `--max_samples` (256) pieces.
# - Olive's adapters are plain PEFT folders: load and score them with `peft` like any other. Olive 0.13
#   does not seed the adapter's initialisation: from a shell every run starts differently;
#   `run_olive(..., torch_seed=...)` seeds torch first and makes a run repeatable.
# - `olive auto-opt --use_model_builder --precision int4 --adapter_path …` gives an int4 ONNX Runtime
#   GenAI model with the adapter as a separate file (int4 too); measure what int4 costs in accuracy, as
#   section 4 does, before shipping it.
# - Several adapters on one base: `generate-adapter` on a model with LoRA weights inside gives the base
#   with LoRA inputs, and each further PEFT adapter is converted for those inputs. onnxruntime-genai switches
#   between them, token for token the same as PyTorch.
# - The chapter's `--task_name`, `generate-adapter --base_model_path/--adapter_paths` and `run --setup`
#   do not exist. Hub datasets and `bfloat16` on a CPU are the other changes (section 1).

# %%
summary = {
    "base_accuracy": base_scores["accuracy"], "olive_lora_accuracy": olive_scores["accuracy"],
    "olive_lora_macro_f1": olive_scores["macro_f1"], "course_lora_accuracy": course_scores["accuracy"],
    "olive_qlora_accuracy": qlora_scores["accuracy"], "olive_int4_accuracy": int4_scores["accuracy"],
    "olive_int4_base_accuracy": int4_base_scores["accuracy"], "olive_int4_agreement": agree,
    "olive_lora_seconds": round(lora_run.seconds, 1), "olive_lora_train_seconds": lora_log[-1]["train_runtime"],
    "course_lora_train_seconds": round(course_seconds, 1), "olive_qlora_seconds": round(qlora_run.seconds, 1),
    "auto_opt_seconds": round(auto_run.seconds, 1), "generate_adapter_seconds": round(gen_run.seconds, 1),
        "olive_samples": olive.packed_samples(cfg.max_steps, cfg.batch_size, lora_log[-1]["epoch"]),
    "seconds": round(time.perf_counter() - t_start, 1),
}
params = {**cfg.to_dict(), "qlora_steps": qlora_steps, "course_steps": course_steps, "max_seq_len": max_seq_len,
          "n_test": n_test, "threads": n_threads, "olive": versions.get("olive-ai")}
print(runs.write_metrics(run_dir, summary, params=params, notebook="09_olive"))
