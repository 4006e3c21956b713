# %% [markdown]
# # 06 · Deployment with ONNX Runtime: merge, export, quantise, check, serve adapters
#
# The chapter's Example 1 ends with an "optimize for deployment" step (第三步：優化部署): `olive auto-opt
# --model_name_or_path .../ft/model --adapter_path .../ft/adapter --device cpu --provider
# CPUExecutionProvider --use_ort_genai`, with no precision given, and its multi-adapter section serves
# several LoRA adapters on one ONNX base. Here we take each of those steps in the open, with the
# libraries Olive drives underneath (**optimum**, the **onnxruntime-genai model builder**,
# **onnxruntime**), and check every claim with a measurement: the exported model says the same thing as
# PyTorch, token for token; int4 is smaller and about as accurate; adapters switch without a reload.
# Notebook 09 runs the Olive command itself.
#
# **Goals**
# - merge a LoRA adapter into its base and export the result **two ways**: optimum (plain ONNX, with an
#   int8 variant) and the ORT GenAI model builder (fp32 and int4);
# - prove **parity**: the greedy tokens of each export against PyTorch's, token by token;
# - compare file size, load time, first-token latency, tokens/s and task accuracy in one table;
# - build **one** base model with LoRA inputs, load two adapters as `.onnx_adapter` files and switch
#   between them in one process, matching PyTorch `PeftModel` every time;
# - run the course's small app (`python -m labhelpers serve`) the way you would from a shell;
# - say what `olive auto-opt` does, in these terms.
#
# **Model:** SmolLM2-135M-Instruct by default, because sizes, tokens/s and what int4 costs in accuracy are
# only worth reading on real weights (on the 3.7 M-parameter tiny Llama, fixed costs hide them all);
# `-p model_name tiny` runs the same steps in about 1 minute.
#
# **Time on 2 CPU cores:** about 3 minutes on an Intel CPU with AMX bf16, 8 on a CPU without bf16 (two short
# trainings, five exports of a 135 M model, 500 answers); under 1 minute with `model_name tiny`.
#
# **Chapter:** Example 1's last step (`olive auto-opt` to ONNX Runtime GenAI for a CPU), the multi-adapter
# section (several LoRA adapters on one base) and the conclusion's "plan deployment from the start". The
# chapter has no deployment section of its own and names no precision: merging, int8 and int4 are the
# course's additions, each measured here.

# %% tags=["parameters"]
# Parameters: papermill sets these (-p name value). The defaults are the fast workshop setting.
# model_name: a preset (smollm2-135m, the converted real model; tiny, the course's tiny Llama; qwen2.5-0.5b,
# llama-3.2-1b, phi-3.5-mini), a hub id (org/name) or a local folder written by save_pretrained (Llama-style).
# output_dir: empty means a new folder under runs/; an existing non-empty folder is refused.
# max_steps, qa_steps: "auto" takes the schedule measured for this model (labhelpers/train/workshop.py;
# smollm2-135m: 30, 10; tiny: 300, 120).
# min_accuracy: "auto" asserts that model's bar for the tone adapter (SmolLM2 0.80, tiny 0.85); a number sets it;
# None reports.
# max_int4_drop: "auto" asserts int4 accuracy at most that model's drop below PyTorch (SmolLM2 0.08, tiny 0.05).
# threads: ONNX Runtime threads; 0 means as many as torch uses (it follows OMP_NUM_THREADS).
model_name = "smollm2-135m"
max_steps = "auto"         # LoRA steps for adapter A (phrase -> tone)
learning_rate = 1e-3
lora_r = 8
lora_alpha = 16
batch_size = 8
qa_steps = "auto"          # LoRA steps for adapter B (Q&A, from configs/qa_lora.yaml)
n_test = 100               # held-out tone phrases scored on every runtime (5 runtimes x 100 answers)
n_parity = 6               # held-out prompts compared token by token (half tone phrases, half questions)
parity_tokens = 16         # tokens generated per prompt for the comparison
threads = 0
seed = 0
output_dir = ""
min_accuracy = "auto"
max_int4_drop = "auto"

# %%
# Check every parameter before any work: a wrong one stops here with a message that names it.
from labhelpers.checks import check_int
from labhelpers.models.presets import resolve_model
from labhelpers.train import workshop
from labhelpers.train.config import TrainConfig, accuracy_bar

schedule = workshop.steps("06", resolve_model(model_name), max_steps=max_steps, qa_steps=qa_steps)
max_steps, qa_steps = schedule["max_steps"], schedule["qa_steps"]
cfg = TrainConfig(model_name=model_name, max_steps=max_steps, learning_rate=learning_rate, lora_r=lora_r,
                  lora_alpha=lora_alpha, batch_size=batch_size, seed=seed, output_dir=output_dir)
for name, value, low in (("qa_steps", qa_steps, 1), ("n_test", n_test, 1), ("n_parity", n_parity, 2),
                         ("parity_tokens", parity_tokens, 2), ("threads", threads, 0)):
    check_int(name, value, low=low)
bar = accuracy_bar(min_accuracy, cfg, "06", schedule)
int4_bar = accuracy_bar(max_int4_drop, cfg, "06", schedule, name="max_int4_drop")
int8_bar = accuracy_bar("auto", cfg, "06", schedule, name="max_int8_drop")   # the table's, for optimum's int8
print(workshop.describe("06", cfg.model_path))
print(f"model {cfg.model_path}; tone adapter {cfg.max_steps} steps, Q&A adapter {qa_steps} steps; "
      f"accuracy bar {bar}, int4 may lose at most {int4_bar}")

# %%
import json
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import datasets
import matplotlib.pyplot as plt
import onnx
import pandas as pd
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainingArguments,
    set_seed,
)

from labhelpers import runs
from labhelpers.course import exercises
from labhelpers.data import runconfig, templates
from labhelpers.data.templates import chat_texts
from labhelpers.deploy import export
from labhelpers.deploy.onnx_infer import GenAIModel, greedy_tokens, load_optimum, optimum_generate, parity
from labhelpers.evaluate import plots
from labhelpers.evaluate.generation import generate_answers
from labhelpers.evaluate.metrics import classification_scores, parse_label
from labhelpers.memory import hardware
from labhelpers.paths import REPO_ROOT
from labhelpers.train import finetune
from labhelpers.train.tonetask import ToneTask

warnings.filterwarnings("ignore", module="(torch|optimum|transformers|onnx).*")  # exporter chatter
set_seed(cfg.seed)
datasets.disable_progress_bars()
n_threads = threads or torch.get_num_threads()   # the same thread count for PyTorch and ONNX Runtime
run_dir = runs.prepare_output_dir(cfg.output_dir, "06_onnx_deployment")
tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
task = ToneTask(tokenizer, n_test=n_test)   # notebook 02's phrase -> tone data, packaged
t_start = time.perf_counter()
print(f"outputs in {run_dir}; {n_threads} thread(s) for every runtime")


# %% [markdown]
# ## 1 · Two adapters, trained in the open
#
# We need fine-tuned models to deploy, so we make two LoRA adapters on the same base, quickly:
#
# - **A · tone**: phrase → tone, exactly as in notebook 02 (`peft` + `Trainer`), all linear layers, r 8;
# - **B · Q&A**: notebook 04's question → short answer data, run from `configs/qa_lora.yaml` with
#   `finetune.run` (r 16 on the same seven projections).
#
# Adapter A is the one we merge and export in sections 2-5; both serve side by side in section 6.

# %%
def load_base(dtype=torch.float32, attention="sdpa"):
    return AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=dtype, attn_implementation=attention)

# Training runs as fast as this machine allows (bench/train_efficiency.py measured each choice): bf16 where the
# CPU has bf16 hardware (peft keeps the LoRA weights in fp32 either way, and everything we export starts from
# the fp32 base), eager attention on a CPU (sdpa's backward is slow there for short sequences), and
# lora_dropout 0 (its random masks took a third of each step; 30 steps on 800 phrases do not overfit).
device = "cuda" if torch.cuda.is_available() else "cpu"
train_dtype = hardware.pick_dtype(device)
tone_model = get_peft_model(load_base(train_dtype, hardware.pick_attention(device)),
                            LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                       target_modules="all-linear", task_type="CAUSAL_LM"))
args = TrainingArguments(
    output_dir=str(run_dir / "trainer"), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
    learning_rate=cfg.learning_rate, lr_scheduler_type="cosine", warmup_ratio=0.05,
    logging_steps=max(1, cfg.max_steps // 6),   # six points on the loss curve, whatever the run's length
    save_strategy="no", report_to="none", seed=cfg.seed, data_seed=cfg.seed, use_cpu=(device == "cpu"),
    bf16=(train_dtype == torch.bfloat16), disable_tqdm=True, dataloader_num_workers=0,
)
trainer = Trainer(model=tone_model, args=args, train_dataset=task.train,
                  data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
t0 = time.perf_counter()
trainer.train()
train_seconds = time.perf_counter() - t0
tone_adapter = run_dir / "adapter-tone"
tone_model.save_pretrained(tone_adapter)
tokenizer.save_pretrained(tone_adapter)
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
print(f"adapter A (tone): {cfg.max_steps} steps in {train_seconds:.0f} s, training loss {losses[0]:.2f} -> "
      f"{losses[-1]:.2f}; its held-out accuracy is measured on every runtime in section 5")
assert losses[-1] < losses[0], "the tone adapter did not learn"

# %%
qa_cfg = runconfig.load_config(REPO_ROOT / "configs" / "qa_lora.yaml").for_tokenizer(tokenizer)  # its chat template
qa_raw = json.loads(json.dumps(qa_cfg.raw))
qa_raw["input_model"]["model_path"] = cfg.model_path
qa_raw["passes"]["lora"]["training_args"].update(max_steps=qa_steps, save_steps=qa_steps, seed=cfg.seed)
qa_raw["passes"]["lora"]["lora_dropout"] = 0.0          # as for A, for speed
qa_raw["lab"].update(eval_samples=8, max_new_tokens=8)  # a quick validation: the answers are 3-4 tokens
qa_raw["data_configs"][0]["load_dataset_config"]["data_files"] = qa_cfg.train_files
qa_raw["output_dir"] = str(run_dir / "qa_run")
qa_result = finetune.run(runconfig.from_dict(qa_raw, source="qa run"), log=None)
qa_adapter = qa_result.run_dir / "adapter"
qa_test = datasets.load_dataset("json", data_files=str(REPO_ROOT / "data" / "qa" / "test.jsonl"))["train"].to_list()
qa_prompts = [chat_texts(tokenizer, r["input"])[0] for r in qa_test]
print(f"adapter B (Q&A): {qa_result.metrics['train_seconds']:.0f} s, validation exact match "
      f"{qa_result.metrics['exact_match']:.3f}; saved in {qa_adapter}")
# B was trained on the text its config's chat_template fields write; the app sends the tokenizer's chat template.
# The prompt is the same text, up to the whitespace that opens the answer (trained as part of the answer).
assert qa_prompts[0].startswith(templates.texts(qa_cfg.text_template, tokenizer, qa_test[0])[0])

# %% [markdown]
# ## 2 · Merge adapter A into the base
#
# `merge_and_unload` folds `(alpha / r) · B A` into each adapted weight `W`: the result is a plain
# model of the base's shape, with no adapter overhead at inference. It is what most deployments export.
# We save it with its tokenizer (and chat template), because an exported folder must run on its own.

# %%
merged_dir = run_dir / "merged-tone"
merged = PeftModel.from_pretrained(load_base(), tone_adapter).merge_and_unload().eval()
merged.save_pretrained(merged_dir)          # safetensors
tokenizer.save_pretrained(merged_dir)       # tokenizer.json, chat template
n_params = sum(p.numel() for p in merged.parameters())
print(f"merged model: {n_params:,} parameters (the base's count: nothing was added), files:",
      sorted(p.name for p in merged_dir.iterdir()))
assert n_params == sum(p.numel() for p in load_base().parameters())


# %% [markdown]
# ## 3 · Export both ways
#
# | | **optimum** (`export_optimum`, `quantize_int8`) | **ORT GenAI model builder** (`build_genai`) |
# |---|---|---|
# | how | traces the PyTorch model with the ONNX exporter | writes the graph directly from the weights, with fused operators |
# | quantisation | dynamic int8 afterwards (`MatMulInteger`, activations quantised at run time) | int4 weights while building (`MatMulNBits`, blocks of 32) |
# | runs with | `optimum.onnxruntime.ORTModelForCausalLM` (transformers' generate loop, in Python) | `onnxruntime_genai` (the whole loop in C++, KV cache managed for you) |
# | extra files | `config.json`, tokenizer | `genai_config.json` (search settings, context length), tokenizer |
# | LoRA adapters | merged only | merged, or kept as separate inputs and switched at run time (section 6) |
#
# Every export function writes a new folder and refuses one that already holds files.

# %%
def onnx_ops(folder):
    graph = onnx.load(str(next(Path(folder).glob("*.onnx"))), load_external_data=False).graph
    return Counter(n.op_type for n in graph.node)

def model_mb(folder):
    """Model files only (graph and weights), not the tokenizer."""
    return sum(p.stat().st_size for p in Path(folder).iterdir()
               if p.name.endswith((".onnx", ".onnx.data", ".onnx_data", ".safetensors"))) / 1e6

builds = {}
for name, make in (
    ("optimum fp32", lambda: export.export_optimum(merged_dir, run_dir / "onnx-fp32")),
    ("optimum int8", lambda: export.quantize_int8(run_dir / "onnx-fp32", run_dir / "onnx-int8")),
    ("GenAI fp32", lambda: export.build_genai(merged_dir, run_dir / "genai-fp32", "fp32")),
    ("GenAI int4", lambda: export.build_genai(merged_dir, run_dir / "genai-int4", "int4")),
):
    t0 = time.perf_counter()
    folder = make()
    builds[name] = {"folder": folder, "build_s": time.perf_counter() - t0, "ops": onnx_ops(folder)}
    print(f"{name:13s} {builds[name]['build_s']:5.1f} s  {model_mb(folder):6.2f} MB  {folder.name}/: "
          + ", ".join(sorted(p.name for p in folder.iterdir())))
assert {"MatMulInteger", "DynamicQuantizeLinear"} <= set(builds["optimum int8"]["ops"]), "int8 uses integer MatMuls"
assert "MatMulNBits" in builds["GenAI int4"]["ops"] and "MatMulNBits" not in builds["GenAI fp32"]["ops"]
display(pd.DataFrame({n: b["ops"] for n, b in builds.items()}).fillna(0).astype(int)
        .loc[lambda d: d.index.isin(["MatMul", "MatMulInteger", "MatMulNBits", "GroupQueryAttention",
                                     "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization",
                                     "Softmax", "RotaryEmbedding"])])

# %% [markdown]
# The operator counts show the two styles: the exporter keeps PyTorch's small operations (MatMul,
# Softmax, ...); the model builder uses ONNX Runtime's fused kernels (one `GroupQueryAttention` per
# layer, `SkipSimplifiedLayerNormalization`, and `MatMulNBits` for int4 weights).
#
# ## 4 · Parity: the same tokens, token by token
#
# An export is only correct if it computes the same function. With greedy decoding that is easy to
# test exactly: the token ids each runtime generates for the same prompt must be **identical** to
# PyTorch's (`onnx_infer.parity` compares them position by position and reports the first difference).
# We use held-out prompts of both kinds (tone phrases and Q&A questions) and generate `parity_tokens`
# tokens each, with the end-of-sequence token suppressed so that every prompt compares the full length
# instead of stopping after one word. fp32 exports must match exactly; quantised ones may drift, and
# we measure how much.

# %%
parity_prompts = [(task.prompts if i % 2 == 0 else qa_prompts)[i // 2] for i in range(n_parity)]

def torch_tokens(model, prompt, n):
    return greedy_tokens(model, tokenizer, prompt, n, min_new_tokens=n)

def genai_tokens(model, prompt, n):
    return model.generate_tokens(prompt, n, min_new_tokens=n)

loaders = {
    "PyTorch fp32": (merged_dir, lambda: AutoModelForCausalLM.from_pretrained(merged_dir).eval(), torch_tokens),
    "optimum fp32": (builds["optimum fp32"]["folder"],
                     lambda: load_optimum(builds["optimum fp32"]["folder"], n_threads), torch_tokens),
    "optimum int8": (builds["optimum int8"]["folder"],
                     lambda: load_optimum(builds["optimum int8"]["folder"], n_threads), torch_tokens),
    "GenAI fp32": (builds["GenAI fp32"]["folder"], lambda: GenAIModel(builds["GenAI fp32"]["folder"], n_threads),
                   genai_tokens),
    "GenAI int4": (builds["GenAI int4"]["folder"], lambda: GenAIModel(builds["GenAI int4"]["folder"], n_threads),
                   genai_tokens),
}
loaded, load_s, tokens = {}, {}, {}
for name, (folder, load, gen) in loaders.items():
    t0 = time.perf_counter()
    loaded[name] = load()
    load_s[name] = time.perf_counter() - t0
    tokens[name] = [gen(loaded[name], p, parity_tokens) for p in parity_prompts]

reference = tokens["PyTorch fp32"]
checks = {name: [parity(r, t) for r, t in zip(reference, got)] for name, got in tokens.items()}
parity_table = pd.DataFrame({name: {
    "identical prompts": f"{sum(c['match'] for c in cs)}/{len(cs)}",
    "token agreement": statistics.mean(c["agreement"] for c in cs),
    "first difference at": min((c["first_diff"] for c in cs if c["first_diff"] is not None), default=None),
} for name, cs in checks.items()}).T
display(parity_table)
i = 1   # a Q&A prompt, side by side
print("prompt:", repr(parity_prompts[i]))
for name in ("PyTorch fp32", "GenAI fp32", "GenAI int4"):
    print(f"  {name:13s}", repr(tokenizer.decode(tokens[name][i])))
for name in ("optimum fp32", "GenAI fp32"):
    assert all(c["match"] for c in checks[name]), f"{name} differs from PyTorch: {checks[name]}"
assert len(set(reference[0])) > 1, "the reference should say something varied, or parity proves little"


# %% [markdown]
# ## 5 · Size, speed and accuracy of every export
#
# The same five models, measured the same way, on this machine and thread count:
#
# - **MB**: the model files (graph and weights);
# - **load s**: from the folder to a model ready to generate;
# - **first token ms**: a prompt in, one token out (the *prefill*: what a user waits before text appears);
# - **tokens/s**: generation speed after the first token (`(n - 1) / (time for n - time for 1)`);
# - **accuracy**: the tone task on `n_test` held-out phrases, greedy (PyTorch and optimum in batches of 32
#   with left padding, ONNX Runtime GenAI one prompt at a time: the answers must agree all the same).
#
# int4 stores each weight in 4 bits plus one fp32 scale per block of 32 weights: 5 bits instead of 32,
# so at most 6.4× smaller (norms and the rotary tables stay fp32). What matters is that accuracy hardly
# moves.

# %%
def median_seconds(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)

def tone_answers(name, model):
    if name.startswith("GenAI"):
        return [model.generate(p, 4) for p in task.prompts]
    if name.startswith("optimum"):
        return optimum_generate(model, tokenizer, task.prompts, max_new_tokens=4, batch_size=32)
    return generate_answers(model, tokenizer, task.prompts, max_new_tokens=4, batch_size=32)

n_speed = 32
rows, answers = {}, {}
for name, (folder, _, gen) in loaders.items():
    model, prompt = loaded[name], task.prompts[0]
    gen(model, prompt, 2)                       # warm-up: first calls allocate buffers
    first = median_seconds(lambda: gen(model, prompt, 1), repeats=5)
    full = median_seconds(lambda: gen(model, prompt, n_speed))
    answers[name] = tone_answers(name, model)
    scores = classification_scores(task.test["tone"], [parse_label(a, task.labels) for a in answers[name]],
                                   task.labels)
    rows[name] = {"MB": model_mb(folder), "load s": load_s[name], "first token ms": 1000 * first,
                  "tokens/s": (n_speed - 1) / max(full - first, 1e-9),
                  "parity": parity_table.loc[name, "identical prompts"],
                  "token agreement": parity_table.loc[name, "token agreement"],
                  "accuracy": scores["accuracy"], "macro F1": scores["macro_f1"]}
table = pd.DataFrame.from_dict(rows, orient="index")
display(table.round({"MB": 2, "load s": 2, "first token ms": 1, "tokens/s": 0, "token agreement": 3,
                     "accuracy": 3, "macro F1": 3}))

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
short = {n: n.replace(" ", "\n") for n in table.index}
for ax, (col, label, ylim) in zip(axes, (("MB", "model files, MB", None), ("tokens/s", "tokens per second", None),
                                         ("accuracy", "held-out tone accuracy", (0, 1)))):
    plots.bar_compare({short[n]: float(v) for n, v in table[col].items()}, label, ax=ax, ylim=ylim)
fig.tight_layout()

acc = table["accuracy"].astype(float)
mb = table["MB"].astype(float)
int4_drop = acc["PyTorch fp32"] - acc["GenAI int4"]
tps = table["tokens/s"].astype(float)
print(f"int4: {mb['GenAI fp32'] / mb['GenAI int4']:.1f}x smaller than fp32, accuracy {acc['GenAI int4']:.3f} "
      f"vs {acc['PyTorch fp32']:.3f} in PyTorch ({-int4_drop:+.3f}), "
      f"{tps['GenAI int4'] / tps['PyTorch fp32']:.1f}x PyTorch's tokens/s (this run, this machine)")
if bar is not None:
    assert acc["PyTorch fp32"] >= bar, f"tone accuracy {acc['PyTorch fp32']:.3f} < {bar}"
for name in ("optimum fp32", "GenAI fp32"):
    same = sum(a == b for a, b in zip(answers[name], answers["PyTorch fp32"])) / len(answers[name])
    assert same >= 0.99, f"{name} should give PyTorch's answers, {same:.1%} agree"
assert mb["GenAI int4"] < 0.5 * mb["GenAI fp32"] and mb["optimum int8"] < 0.8 * mb["optimum fp32"]
if int4_bar is not None:
    assert int4_drop <= int4_bar, f"int4 lost {int4_drop:.3f} accuracy (> {int4_bar})"
int8_drop = acc["PyTorch fp32"] - acc["optimum int8"]
if int8_bar is not None:
    assert int8_drop <= int8_bar, f"optimum's int8 lost {int8_drop:.3f} accuracy (> {int8_bar})"

# %% [markdown]
# Read the table as a deployment decision. The fp32 exports are the same model (same tokens, same
# accuracy) and generate faster than PyTorch's Python loop; int4 is several times smaller for (almost)
# the same accuracy, which is why notebook 09 passes `--precision int4` to the chapter's `auto-opt`
# command. The two quantised models lose accuracy differently: optimum's dynamic int8 quantises the
# *activations* too, with one scale per tensor computed at run time, while int4 quantises only the weights,
# with a scale for every block of 32; so the larger int8 file lost more than int4 in every SmolLM2 run we
# measured (0.04 to 0.18 against -0.01 to 0.04 for int4, over three adapters). Measure it on your task before
# you ship either. On SmolLM2 each new token reads every weight once, so decoding speed follows the model's size
# in bytes: int4 reads a sixth of fp32's, and ONNX Runtime GenAI's loop runs in C++ rather than Python. On
# the tiny Llama (`-p model_name tiny`) fixed costs (Python, graph overhead) dominate every number and the
# speed columns say little.
#
# ## 6 · One base, many adapters: switching at run time
#
# Merging bakes one adapter in. To serve several fine-tunes (per task, per customer) from one copy of
# the base, the model builder can keep the LoRA matrices as **separate MatMuls** beside each adapted
# weight (`build_genai(base, adapter_dir=..., runtime_adapters=True)`). Their weights then become graph
# *inputs*: zero by default (the base model), filled by whichever `.onnx_adapter` file is active.
# `write_onnx_adapter` converts a PEFT adapter into that file: transposed to the MatMul layout, with
# `alpha / r` folded into `B`. The rank is a free dimension, so A (r 8) and B (r 16) both fit.
#
# Note the first argument: the **base** model, not the merged one (the adapter must not be counted twice).

# %%
base_dir = Path(cfg.model_path)
if not base_dir.is_dir():                      # a hub id: the builder needs a local folder
    base_dir = run_dir / "base"
    load_base().save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
runtime_dir = export.build_genai(base_dir, run_dir / "genai-adapters", "fp32", adapter_dir=tone_adapter,
                                 runtime_adapters=True)
adapter_files = {"tone": export.write_onnx_adapter(tone_adapter, runtime_dir, run_dir / "tone.onnx_adapter"),
                 "qa": export.write_onnx_adapter(qa_adapter, runtime_dir, run_dir / "qa.onnx_adapter")}
lora_graph_inputs = export.lora_inputs(runtime_dir)
print(f"{len(lora_graph_inputs)} LoRA inputs, e.g.", next(iter(lora_graph_inputs.items())))
print(f"base model {model_mb(runtime_dir):.2f} MB; adapters: "
      + ", ".join(f"{n} {p.stat().st_size / 1e6:.2f} MB" for n, p in adapter_files.items()))

served = GenAIModel(runtime_dir, threads=n_threads)
for name, path in adapter_files.items():
    served.load_adapter(path, name)

# %%
# PyTorch reference: one PeftModel holding both adapters, unmerged.
peft_model = PeftModel.from_pretrained(load_base(), tone_adapter, adapter_name="tone")
peft_model.load_adapter(qa_adapter, adapter_name="qa")
peft_model.eval()
switch_texts = [task.test["phrase"][0], task.test["phrase"][1], qa_test[0]["input"], qa_test[1]["input"]]
switch_prompts = [task.prompts[0], task.prompts[1], qa_prompts[0], qa_prompts[1]]
reference_by_adapter = {}
for name in ("tone", "qa"):
    peft_model.set_adapter(name)
    reference_by_adapter[name] = [greedy_tokens(peft_model, tokenizer, p, parity_tokens) for p in switch_prompts]
with peft_model.disable_adapter():
    reference_by_adapter[None] = [greedy_tokens(peft_model, tokenizer, p, parity_tokens) for p in switch_prompts]

model_id = id(served.model)
shown = {}
for step, name in enumerate(("tone", "qa", None, "tone")):
    t0 = time.perf_counter()
    got = [served.generate_tokens(p, parity_tokens, adapter=name) for p in switch_prompts]
    ms = 1000 * (time.perf_counter() - t0) / len(switch_prompts)
    assert got == reference_by_adapter[name], f"step {step}: adapter {name} differs from PeftModel"
    shown[f"{step + 1}. {name or 'none (base)'}"] = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in got]
    print(f"step {step + 1}: adapter {name or 'none':5s} identical to PeftModel on {len(got)} prompts "
          f"({ms:.0f} ms/prompt)")
assert id(served.model) == model_id, "switching must not reload the base"
assert len({tuple(map(tuple, v)) for v in reference_by_adapter.values()}) == 3, "each adapter must change the outputs"
with pd.option_context("display.max_colwidth", 40):
    display(pd.DataFrame(shown, index=switch_texts))


# %% [markdown]
# ### The same, without the course's helpers: what an app needs
#
# `build_genai` runs the model builder as a command (the int4 build of section 3, and the runtime-adapter
# build above):
#
# ```bash
# python -m onnxruntime_genai.models.builder -i MERGED_DIR -o OUT_DIR -p int4 -e cpu -c CACHE_DIR
# python -m onnxruntime_genai.models.builder -i BASE_DIR -o OUT_DIR -p fp32 -e cpu -c CACHE_DIR \
#     --extra_options adapter_path=PEFT_ADAPTER_DIR
# ```
#
# and `GenAIModel` wraps this loop (`og.Model`, `og.Adapters`, `og.Generator`), which an app can copy as it is.
# It must give exactly the tokens checked above.

# %%
import onnxruntime_genai as og

app_model = og.Model(str(runtime_dir))                 # genai_config.json, model.onnx, the tokenizer
app_tokenizer = og.Tokenizer(app_model)
app_adapters = og.Adapters(app_model)
app_adapters.load(str(adapter_files["tone"]), "tone")  # any number, each under a name
ids = app_tokenizer.encode(switch_prompts[0])           # the prompt already holds the chat template
params = og.GeneratorParams(app_model)
params.set_search_options(do_sample=False, max_length=len(ids) + parity_tokens)
generator = og.Generator(app_model, params)
generator.set_active_adapter(app_adapters, "tone")       # per generator, so per request
generator.append_tokens(ids)
app_tokens = []
while not generator.is_done():
    generator.generate_next_token()
    app_tokens.append(int(generator.get_next_tokens()[0]))
print(repr(app_tokenizer.decode(app_tokens)))
assert app_tokens == reference_by_adapter["tone"][0], "the plain og loop must give PeftModel's tokens"
del generator, app_adapters, app_model                   # frees this second copy of the model

# %% [markdown]
# The base stays loaded once; an adapter is a few hundred kilobytes and switching is a per-request
# choice (`generator.set_active_adapter` inside `GenAIModel`). With no adapter the graph's LoRA inputs
# are zero, and the output is the base model's, which is what step 3 checked.
#
# ## 7 · Run the app
#
# `labhelpers.deploy.serve` is a small command-line app on top of the same `GenAIModel`: it loads the base
# folder once, loads each `--adapter NAME=FILE`, and streams answers to stdout (`--use NAME` picks the
# adapter, `base` means none; with no prompt arguments it reads prompts from stdin, and a line
# `/use NAME` switches). Below we start it exactly as you would in a terminal from the project folder,
# type a phrase, switch to the Q&A adapter, ask a question, and check both answers against the ones
# computed in this notebook.

# %%
phrase, question = task.test["phrase"][0], qa_test[0]["input"]
cmd = [sys.executable, "-m", "labhelpers", "serve", "--model", str(runtime_dir),
       "--adapter", f"tone={adapter_files['tone']}", "--adapter", f"qa={adapter_files['qa']}",
       "--threads", str(n_threads), "--max-new-tokens", str(parity_tokens)]
typed = f"{phrase}\n/use qa\n{question}\n"   # what you would type: a phrase, a switch, a question
print("$ " + shlex.join(["python", *cmd[1:]]).replace(str(REPO_ROOT) + "/", ""))
print(typed)
res = subprocess.run(cmd, input=typed, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
assert res.returncode == 0, res.stderr
print(res.stdout, res.stderr, sep="")
tone_answer, qa_answer = res.stdout.strip().splitlines()   # one line per answer; "[using qa]" goes to stderr
# Before any /use line the first --adapter (tone) answers.
assert tone_answer == served.generate(served.chat_prompt(phrase), parity_tokens, adapter="tone")
assert parse_label(tone_answer, task.labels) in task.labels, tone_answer
assert qa_answer == served.generate(served.chat_prompt(question), parity_tokens, adapter="qa")
print(f"expected tone {task.test['tone'][0]!r}; reference answer {qa_test[0]['output']!r}")

# %% [markdown]
# ## 8 · What `olive auto-opt` does, in these terms
#
# A command like the chapter's
#
# ```bash
# olive auto-opt --model_name_or_path models/ft/model --adapter_path models/ft/adapter \
#     --device cpu --provider CPUExecutionProvider --use_ort_genai --use_model_builder \
#     --precision int4 --output_path models/onnx
# ```
#
# is the pipeline of sections 2-6, chosen and run for you:
#
# | `auto-opt` option | what Olive does | in this notebook |
# |---|---|---|
# | `--model_name_or_path` | the Hugging Face model to convert (a merged fine-tune, or the base when an adapter is given) | `merged_dir` / `base_dir` |
# | `--use_model_builder` | converts with the **same** ONNX Runtime GenAI model builder (`onnxruntime_genai.models.builder`) instead of the generic exporter | `export.build_genai(...)` |
# | (without it) | captures the graph with the PyTorch exporter, then optimises and quantises it in separate passes | `export.export_optimum` + `quantize_int8` |
# | `--precision int4` | block-wise int4 weights (`MatMulNBits`); `fp32`/`fp16` keep float weights | `precision="int4"` |
# | `--use_ort_genai` | writes `genai_config.json` and the tokenizer next to the model so `onnxruntime_genai` can run it | the folder `GenAIModel` loads |
# | `--adapter_path` | keeps the LoRA weights as separate graph inputs and writes them to an **`.onnx_adapter`** file | `runtime_adapters=True` + `write_onnx_adapter` |
# | `--device cpu --provider CPUExecutionProvider` | the target the graph is built and tuned for | the builder's `-e cpu` |
# | `--output_path` | one folder with the model and, with an adapter, the adapter file | `run_dir / "genai-adapters"`, `*.onnx_adapter` |
#
# What Olive adds on top is bookkeeping: it picks the passes for the target and precision, caches every
# intermediate model, and can evaluate the result against metrics you set. What it does **not** do for
# you is the check in section 4: run your own parity and accuracy tests on what it produces. Notebook 09
# runs `olive auto-opt` itself.

# %% [markdown]
# ## 9 · Self-check exercise
#
# A runtime-adapter model has one graph input for every LoRA matrix it can take. **How many LoRA inputs
# does `genai-adapters/model.onnx` have?** Work it out from the model's configuration (how many layers,
# which projections `all-linear` adapts, how many matrices per adapted projection), then put your
# number in `answer` and run the cell. You can check with `export.lora_inputs(runtime_dir)` afterwards.
# (Solutions: `solutions/06_onnx_deployment.md`.)

# %%
answer = None   # a number of graph inputs
print(exercises.check_lora_inputs(answer, lora_graph_inputs))

# %% [markdown]
# ## Summary
#
# - Merge an adapter with `merge_and_unload` and save the tokenizer next to the model: an exported
#   folder must run on its own.
# - Two export routes: optimum traces the PyTorch model (then optional dynamic int8); the ORT GenAI model
#   builder writes a fused graph directly, fp32 or int4, with `genai_config.json` for `onnxruntime_genai`.
# - Check an export by **parity**: greedy tokens identical to PyTorch's for fp32, token by token; then
#   size, load time, first-token latency, tokens/s and task accuracy on the same machine.
# - int4 cuts the model several-fold and keeps task accuracy within a few points.
# - One base with LoRA inputs serves many `.onnx_adapter` files, switched per request without a reload,
#   each matching PyTorch `PeftModel` exactly; `python -m labhelpers serve` is the app around it.
# - `olive auto-opt --use_model_builder --use_ort_genai --precision int4 --adapter_path ...` runs these
#   same steps (notebook 09).

# %%
summary = {"tone_adapter_accuracy": float(acc["PyTorch fp32"]), "train_seconds": round(train_seconds, 1),
           "qa_exact_match": qa_result.metrics["exact_match"], "int4_accuracy_drop": float(int4_drop),
           "int8_accuracy_drop": float(int8_drop),
           "lora_graph_inputs": len(lora_graph_inputs), "seconds": round(time.perf_counter() - t_start, 1)}
for name, row in table.iterrows():
    key = name.lower().replace(" ", "_")
    summary.update({f"{key}_mb": float(row["MB"]), f"{key}_accuracy": float(row["accuracy"]),
                    f"{key}_tokens_per_s": float(row["tokens/s"]),
                    f"{key}_first_token_ms": float(row["first token ms"]),
                    f"{key}_token_agreement": float(row["token agreement"])})
for name, path in adapter_files.items():
    summary[f"{name}_onnx_adapter_mb"] = path.stat().st_size / 1e6
params = {**cfg.to_dict(), "qa_steps": qa_steps, "n_test": n_test, "n_parity": n_parity,
          "parity_tokens": parity_tokens, "threads": n_threads}
print(runs.write_metrics(run_dir, summary, params=params, notebook="06_onnx_deployment"))
