# %% [markdown]
# # 00 · Setup check
#
# Before fine-tuning anything, make sure the tools are installed, know what this machine can do, and
# see which models it can fine-tune with which method. The last point is the chapter's main argument
# for parameter-efficient fine-tuning: **memory**, not compute, decides what you can train.
#
# **Goals**
# - check the versions of the libraries the course uses (torch, transformers, peft, datasets,
#   bitsandbytes, ONNX Runtime, ONNX Runtime GenAI, optimum);
# - read the hardware: device, memory, bf16 support, and the dtype training will use (and why);
# - load the embedded tiny Llama with `from_pretrained` and let it generate a few tokens;
# - estimate memory for inference, LoRA, QLoRA and full fine-tuning, and see which models fit here;
# - see how long each notebook takes on a CPU.
#
# **Model:** the tiny Llama by default (the setup checks take seconds); `-p model_name smollm2-135m` checks
# that the real model loads and fits.
#
# **Time on 2 CPU cores:** under 1 minute (also with `model_name smollm2-135m`).
#
# **Chapter:** Hardware and memory requirements; Types of fine-tuning.

# %% tags=["parameters"]
# Parameters: papermill sets these (-p name value).
# (no "=" in these comments: papermill reads each line as one assignment)
model_name = ""    # empty: the embedded tiny Llama; or a preset ("smollm2-135m", ...), a hub id or a folder
output_dir = ""    # empty: a new folder under runs/; an existing non-empty folder is refused

# %%
import shutil
import time

import pandas as pd

from labhelpers import runs
from labhelpers.catalog import NOTEBOOKS
from labhelpers.constants import GIB, MEMORY_METHODS
from labhelpers.course import exercises, preflight
from labhelpers.memory import estimate, hardware
from labhelpers.models import shapes
from labhelpers.models.presets import PRESETS, resolve_model
from labhelpers.paths import REPO_ROOT

model_path = resolve_model(model_name)   # checks the parameter first: a bad name stops here, named
run_dir = runs.prepare_output_dir(output_dir, "00_setup")
print(f"model: {model_path}\noutputs in {run_dir}")

# %% [markdown]
# ## 1 · Library versions
#
# The course pins a tested set (`constraints.txt`). The **core** libraries are needed everywhere; the
# others only in some notebooks: bitsandbytes for QLoRA (03), ONNX Runtime / ORT GenAI / optimum for
# export and serving (06–07). A missing optional library is reported, not fatal.

# %%
# labhelpers.course.preflight.LIBRARIES: (distribution, import name, needed for); `make preflight` checks the same list.
rows = preflight.library_versions(preflight.LIBRARIES)   # imports each one: a broken install shows up here
display(pd.DataFrame(rows, columns=["library", "version", "needed for"]))
missing = [r["library"] for r in rows if r["missing"]]
core_missing = [r["library"] for r in rows if r["missing"] and r["needed for"] == "core"]
assert not core_missing, f"core libraries missing: {core_missing}; reinstall with `make course` (see README)"
if missing:
    print("optional libraries missing (only their notebooks are affected):", missing)

# %% [markdown]
# ## 2 · Hardware: device, memory, and the training dtype
#
# `labhelpers.memory.hardware` asks PyTorch for a GPU (CUDA, or Apple's MPS) and falls back to the CPU. The dtype
# matters more than it looks: **bf16** halves memory and is fast on GPUs and on CPUs with bf16 hardware
# (AVX512-BF16 or AMX). Without that hardware PyTorch *emulates* bf16, and training runs about 10× slower
# than fp32, so on such a CPU the course trains in fp32.

# %%
report = hardware.hardware_report()
print(hardware.format_report(report))
device = hardware.pick_device()
dtype = hardware.pick_dtype(device)
if device == "cpu" and not report["bf16_supported"]:
    why = "no AVX512-BF16/AMX on this CPU: bf16 would be emulated (~10x slower), so fp32"
elif device == "cpu":
    why = "this CPU has bf16 hardware: bf16 halves memory at full speed"
elif device == "cuda":
    why = "bf16 if the GPU supports it (Ampere or newer), else fp16 (needs loss scaling)"
else:
    why = "MPS: fp32, half-precision training there is unreliable"
print(f"\ntraining dtype: {dtype} ({why})")
assert device in ("cpu", "cuda", "mps") and str(dtype) == f"torch.{report['dtype']}"

# %% [markdown]
# ## 3 · Disk space
#
# Each run writes a folder under `runs/` (adapters are small; merged models and ONNX exports are the size
# of the model). The tiny model needs a few MB per run; a real 1B model needs gigabytes.

# %%
disk = shutil.disk_usage(REPO_ROOT)
disk_free_gib = disk.free / GIB
print(f"{REPO_ROOT}: {disk_free_gib:.1f} GiB free of {disk.total / GIB:.1f} GiB")
assert disk_free_gib > 0.5, "less than 0.5 GiB free: the course cannot write its runs; free some space"

# %% [markdown]
# ## 4 · Load the model and let it generate
#
# Every notebook loads models the same way: `AutoTokenizer` and `AutoModelForCausalLM` with
# `from_pretrained`, given a local folder or a hub id (`resolve_model` only maps `""` to the embedded
# model's folder). We ask for a few tokens with **greedy** decoding (`do_sample=False`: always the most
# likely next token), so the output is the same on every run. The embedded model is a *base* model:
# it continues text in the style of its small corpus.

# %%
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

t0 = time.perf_counter()
tokenizer = AutoTokenizer.from_pretrained(model_path)
model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device)
load_seconds = time.perf_counter() - t0

prompt = "She felt happy because"
inputs = tokenizer(prompt, return_tensors="pt").to(device)
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
new_tokens = out[0, inputs["input_ids"].shape[1]:]
completion = tokenizer.decode(new_tokens, skip_special_tokens=True)
print(f"loaded in {load_seconds:.1f} s\nprompt:     {prompt!r}\ncompletion: {completion!r}")
assert len(new_tokens) > 0 and completion.strip(), "generate() returned no text: the model or tokenizer is broken"

n_params = sum(p.numel() for p in model.parameters())
print(f"{n_params:,} parameters ({n_params / 1e6:.2f} M)")
if model_path == PRESETS["tiny"].path:
    # The memory estimator's shape for the tiny model comes from config.json: it must count the same.
    assert n_params == shapes.shape_of("tiny")["n_params"], (n_params, shapes.shape_of("tiny"))

# %% [markdown]
# ## 5 · Which models fit this machine, and with which method?
#
# `labhelpers.memory.estimate.estimate_memory` adds up what training keeps in memory (its docstring has the
# formulas; `tests/memory/test_estimate.py` checks them against PyTorch's tensors and the LoRA and QLoRA papers):
#
# | part | full fine-tune | LoRA | QLoRA |
# |---|---|---|---|
# | weights | params × 4 B (fp32) | params × 4 B + adapters | ≈ params × 0.52 B (4-bit NF4) + adapters |
# | gradients | every parameter | adapters only | adapters only |
# | optimizer (AdamW) | 8 B per parameter | 8 B per adapter parameter | 8 B per adapter parameter |
# | activations | batch × seq × layers × hidden × k | same | same (computed in the compute dtype) |
#
# In fp32 full fine-tuning with AdamW costs **16 bytes per parameter** before activations; LoRA pays
# for the frozen weights once and almost nothing else. We assume batch 4 × 256 tokens, adapters of 1 %
# of the parameters, fp32 on this CPU, and keep 20 % of the available memory for everything else
# (`fits(..., headroom=0.8)`).

# %%
SEQ_LEN, BATCH = 256, 4
precision = "bf16" if dtype == torch.bfloat16 else "fp16" if dtype == torch.float16 else "fp32"
if device == "cuda" and report["gpu_memory_free_gib"]:
    available_gib = report["gpu_memory_free_gib"]
else:
    available_gib = report["available_memory_gib"]   # CPU and MPS train in system RAM

rows, fit_table = [], {}
for name in PRESETS:
    n = shapes.shape_of(name)["n_params"]
    row = {"model": name, "params (M)": round(n / 1e6, 1)}
    fit_table[name] = {}
    for method in MEMORY_METHODS:
        est = estimate.estimate_for_preset(name, method, precision, seq_len=SEQ_LEN, batch_size=BATCH)
        ok = estimate.fits(est, available_gib)
        fit_table[name][method] = ok
        row[f"{method} GiB"] = round(est["total_gib"], 2)
        row[f"{method} fits"] = "yes" if ok else "no"
    rows.append(row)
fit_df = pd.DataFrame(rows).set_index("model")
print(f"available memory: {available_gib:.1f} GiB (usable with 20 % headroom: {0.8 * available_gib:.1f} GiB), "
      f"{precision}, batch {BATCH} x {SEQ_LEN} tokens")
display(fit_df)
assert all(fit_table["tiny"].values()), f"the tiny model should fit every method here: {fit_table['tiny']}"
presets_fit = {m: sum(fit_table[p][m] for p in PRESETS) for m in MEMORY_METHODS}
print("presets that fit, per method:", presets_fit)

# %%
# Where the memory goes for one real model: full fine-tuning is dominated by gradients and optimizer state.
breakdown = pd.DataFrame({
    m: estimate.estimate_for_preset("llama-3.2-1b", m, precision, seq_len=SEQ_LEN, batch_size=BATCH)
    for m in ("full", "lora", "qlora")
}).loc[["weights_gib", "gradients_gib", "optimizer_gib", "activations_gib", "total_gib"]].astype(float).round(2)
display(breakdown)
total = breakdown.loc["total_gib"]
print(f"LoRA needs {total['lora'] / total['full']:.2f} of full fine-tuning's memory, QLoRA "
      f"{total['qlora'] / total['lora']:.2f} of LoRA's: 4 bits shrink the frozen weights, not the activations")
assert breakdown.loc["total_gib", "qlora"] < breakdown.loc["total_gib", "lora"] < breakdown.loc["total_gib", "full"]

# %%
# What this machine can do with each real model: does notebook 02 fit (the calculator, at its batch 8 x 64
# tokens, or the largest smaller batch that fits), about how long its 300 steps take, and what to pass.
from labhelpers.memory import advice

advice_df = advice.advice(report)
print("Times: seconds per step measured with random-weight stand-ins of each model (same size, no download) "
      "on the course's 2-core CPU machine (bench/results/scale_cpu-2core.md records each row's load average), "
      "scaled to this machine's cores and to notebook 02's 300 steps of 8 rows of up to 64 tokens: rough figures.")
display(advice_df.drop(columns=["budget_gib", "time_basis"]))
assert len(advice_df) == 3 * (len(PRESETS) - 1) and set(advice_df["fits"]) <= {"yes", "no"} | {
    f"at batch {b}" for b in advice.BATCH_CHOICES}

# %% [markdown]
# ## 6 · How long each notebook takes on a CPU
#
# Measured on 2 CPU cores (`labhelpers.catalog`), each notebook on each model with its own workshop schedule.
# `default_model` is what a plain run uses: SmolLM2 where the lesson needs a pretrained model's knowledge, the
# tiny Llama where many runs teach mechanics. A GPU is much faster.

# %%
times = pd.DataFrame.from_dict(NOTEBOOKS, orient="index")[["title", "default_model", "tiny_minutes",
                                                           "smollm2_minutes"]]
times["default_minutes"] = [row[f"{'tiny' if row['default_model'] == 'tiny' else 'smollm2'}_minutes"]
                            for _, row in times.iterrows()]
display(times)
print(f"total with the defaults: about {times['default_minutes'].sum():g} minutes; every notebook on the tiny "
      f"Llama {times['tiny_minutes'].sum():g}, on SmolLM2-135M {times['smollm2_minutes'].sum():g}")
assert "00_setup" in NOTEBOOKS and (times[["tiny_minutes", "smollm2_minutes"]] > 0).all().all()

# %% [markdown]
# ## 7 · Self-check exercise
#
# A parameter stored in fp32 takes 4 bytes. **How many MB (10⁶ bytes) do the weights of the model you
# loaded above take in fp32?** Use `n_params` from section 4; put your number in `answer` and run the
# cell. (MiB, 2²⁰ bytes, is accepted too. Solutions: `solutions/00_setup.md`.)

# %%
answer = None   # your number of MB here
print(exercises.check_weight_memory(answer, n_params, bytes_per_param=4))

# %% [markdown]
# ## Summary
#
# - The core libraries import; the table above shows which optional ones your notebooks can use.
# - On a CPU without bf16 hardware the course trains in fp32: emulated bf16 is about 10× slower.
# - `from_pretrained` + `generate` is all it takes to run a causal LM; greedy decoding is repeatable.
# - Memory decides the method: full fine-tuning with AdamW needs ~16 bytes per parameter; LoRA needs the
#   frozen weights plus activations; QLoRA shrinks only the weights, so the breakdown above puts it at
#   0.6-0.7 of LoRA for Llama-3.2-1B at batch 4 × 256 tokens, not a quarter.
#
# Next: **02 · LoRA fine-tuning**.

# %%
summary = {
    "cpu_count": report["cpu_count"], "memory_gib": report["total_memory_gib"],
    "available_memory_gib": report["available_memory_gib"], "bf16": bool(report["bf16_supported"]),
    "device": device, "dtype": report["dtype"], "disk_free_gib": round(disk_free_gib, 1),
    "model_params": n_params, "load_seconds": round(load_seconds, 2),
    "optional_libraries_missing": len(missing),
    **{f"presets_fit_{m}": count for m, count in presets_fit.items()},
}
print(runs.write_metrics(run_dir, summary, params={"model_name": model_name, "output_dir": output_dir},
                         notebook="00_setup"))
