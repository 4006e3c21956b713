# %% [markdown]
# # 01 · What fine-tuning changes: full fine-tuning vs LoRA vs QLoRA vs adapters
#
# The chapter lists the kinds of fine-tuning and what each costs. Here we **measure** them instead, on
# this machine, for one task and one dataset (the course's *phrase → tone* task, on the embedded tiny
# Llama): what each method trains, how much memory and time it takes, how large the result is on disk,
# and how well it does on phrases it never saw.
#
# **Goals**
# - see transfer learning at work: the same fine-tune from a pretrained model and from a random one;
# - know why teams fine-tune (domain, task, enterprise);
# - run full fine-tuning, LoRA, QLoRA and an adapter-style method (IA3) with `Trainer`, and compare
#   trainable parameters, weight memory, peak training memory, seconds per step, size on disk, accuracy;
# - see LoRA's idea in numbers: how much of a real weight update a rank-r matrix keeps, and what
#   `alpha / r` does;
# - template rows for the task-specific kinds (classification, generation, extraction, summarisation);
# - estimate memory for real model sizes with a calculator, and check what fits this machine.
#
# **Model:** the tiny Llama by default: the lesson is four methods side by side, five training runs, which
# fit the 5-minute budget only on the tiny model; `-p model_name smollm2-135m` repeats them on real weights.
#
# **Time on 2 CPU cores:** about 2 minutes (five short training runs of 150 steps; 3.6 on a CPU without bf16,
# where training runs in fp32); 11-19 minutes with `model_name smollm2-135m` (30 steps each).
#
# **Chapter:** Introduction (transfer learning); Why fine-tuning matters; Types of fine-tuning.

# %% tags=["parameters"]
# Parameters: papermill sets these (-p name value). The defaults are the tested workshop setting.
# model_name: empty means the embedded tiny Llama; or a preset, a hub id or a local folder.
# max_steps: optimizer steps for every training run (the same for all methods, a fair comparison); "auto"
# takes the schedule measured for this model (labhelpers/train/workshop.py: 150 on tiny, 30 on smollm2-135m).
# lr_*: learning rate per method; small adapters need larger steps (IA3 scales activations directly).
# assert_relations: "auto" checks the lesson's relations where they were measured to hold for this model at
# this schedule; True always; False never.
# output_dir: empty means a new folder under runs/; an existing non-empty folder is refused.
model_name = ""
methods = ["full", "lora", "qlora", "ia3"]
max_steps = "auto"
lr_full = 2e-4
lr_lora = 1e-3
lr_qlora = 1e-3
lr_ia3 = 1e-1
lora_r = 8
lora_alpha = 16
batch_size = 8
seed = 0
n_test = 200               # held-out phrases to score
max_accuracy_gap = 0.05    # LoRA and QLoRA must come this close to full fine-tuning
assert_relations = "auto"
output_dir = ""

# %%
# Check every parameter before any work: a wrong one stops here with a message that names it.
from labhelpers.checks import check_fraction, check_int
from labhelpers.models.presets import resolve_model
from labhelpers.train import workshop
from labhelpers.train.config import TrainConfig, effects_checked
from labhelpers.train.methods import check_methods

schedule = workshop.steps("01", resolve_model(model_name), max_steps=max_steps)
learning_rates = {"full": lr_full, "lora": lr_lora, "qlora": lr_qlora, "ia3": lr_ia3}
methods = check_methods(methods, learning_rates)   # before TrainConfig, so a bad lr_* is named as such
cfg = TrainConfig(model_name=model_name, method="lora", max_steps=schedule["max_steps"], learning_rate=lr_lora,
                  lora_r=lora_r, lora_alpha=lora_alpha, batch_size=batch_size, seed=seed, output_dir=output_dir)
check_int("n_test", n_test, low=1)
check_fraction("max_accuracy_gap", max_accuracy_gap, hint="e.g. 0.05")
strict = effects_checked(assert_relations, cfg, "01", name="assert_relations")
print(workshop.describe("01", cfg.model_path))
print(f"model {cfg.model_path}\nmethods {methods}, {cfg.max_steps} steps each, batch {cfg.batch_size}\n"
      f"learning rates { {m: learning_rates[m] for m in methods} }\nasserting the lesson's relations: {strict}")

# %%
import copy

import matplotlib.pyplot as plt
import pandas as pd
import torch
from peft import IA3Config, LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    DataCollatorForSeq2Seq,
    PrinterCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from labhelpers import runs
from labhelpers.constants import GIB
from labhelpers.course import exercises, widgets
from labhelpers.data import templates
from labhelpers.memory import hardware, measure
from labhelpers.train import quantization
from labhelpers.train.tonetask import ToneTask

device = hardware.pick_device()
dtype = hardware.pick_dtype(device)   # fp32 on CPUs without bf16 hardware (emulated bf16 is ~10x slower)
run_dir = runs.prepare_output_dir(cfg.output_dir, "01_concepts")
measure.fix_malloc_thresholds()       # so peak RSS follows live memory (see labhelpers/memory/measure.py)
tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
task = ToneTask(tokenizer, n_test=n_test)   # the data, chat template and scoring of notebook 02, packaged
print(f"device {device}, dtype {dtype}; {len(task.train)} training rows, {len(task.test)} held-out; "
      f"outputs in {run_dir}")

# %% [markdown]
# Every run below uses the same `Trainer` setup, data, seed and number of steps; only the model and
# the learning rate change. While `trainer.train()` runs we record the peak growth of the process's
# memory (RSS) above what it held before, and the wall time. RSS is what the operating system sees; it
# includes allocator overhead, so differences of a few MB are noise. After training, each model is
# saved (`save_pretrained`) and scored on the held-out phrases.

# %%
collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
results = {}

def train(model, learning_rate, name):
    """Train ``model`` for max_steps with Trainer; measure time and peak memory; save and score it."""
    set_seed(cfg.seed)
    args = TrainingArguments(
        output_dir=str(run_dir / "trainer" / name), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_ratio=0.05, logging_steps=10,
        save_strategy="no", report_to="none", seed=cfg.seed, data_seed=cfg.seed, disable_tqdm=True,
        bf16=(dtype == torch.bfloat16), use_cpu=(device == "cpu"), dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=task.train, data_collator=collator)
    trainer.remove_callback(PrinterCallback)   # keep the notebook short: we print one line per run instead
    _, peak = measure.measure_peak(trainer.train)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if hasattr(model, "get_nb_trainable_parameters"):          # peft counts 4-bit weights unpacked
        trainable, total = model.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    model.save_pretrained(run_dir / name)     # full: the whole model; PEFT: only the adapter
    answers, scores = task.evaluate(model)
    results[name] = {
        "trainable_params": trainable, "trainable_pct": 100 * trainable / total,
        "weight_mb": model.get_memory_footprint() / 1e6, "peak_train_mb": peak.growth_mb,
        "sec_per_step": peak.seconds / cfg.max_steps, "disk_mb": runs.folder_mb(run_dir / name),
        "accuracy": scores["accuracy"], "first_loss": losses[0], "final_loss": losses[-1],
    }
    print(f"{name}: accuracy {scores['accuracy']:.3f}, loss {losses[0]:.2f} -> {losses[-1]:.3f}, "
          f"{peak.seconds:.0f} s; {peak}")
    return model


# %% [markdown]
# ## 1 · Fine-tuning is transfer learning
#
# A pretrained model has already learned a language from a large corpus; fine-tuning **adapts** it to
# your data and keeps that general knowledge. That is why a small dataset and a short run suffice: less
# data, time and cost than training from scratch, and better results.
#
# We can measure it. The held-out phrases use feeling words (*petrified*, *elated*, ...) that never
# occur in the fine-tuning data; the tiny base met them in pretraining. We run the **same** short LoRA
# fine-tune twice: from the pretrained base, and from a model with the same architecture and random
# weights (`AutoModelForCausalLM.from_config`). The pretrained run is also the LoRA row of the method
# table in section 3.

# %%
def lora_config():
    # r: rank of the update; lora_alpha / r scales it; all-linear: every linear layer but the output head.
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.05, target_modules="all-linear",
                      task_type="CAUSAL_LM")

torch.manual_seed(cfg.seed)
random_model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(cfg.model_path), dtype=dtype).to(device)
set_seed(cfg.seed)    # the same adapter initialisation in every run
random_model = train(get_peft_model(random_model, lora_config()), learning_rates["lora"], "random_init_lora")

base_model = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=dtype).to(device)
_, base_scores = task.evaluate(base_model)   # before any fine-tuning: it knows neither format nor task
set_seed(cfg.seed)
lora_model = train(get_peft_model(base_model, lora_config()), learning_rates["lora"], "lora")

# %%
transfer = pd.Series({"pretrained base, no fine-tuning": base_scores["accuracy"],
                      "random weights + LoRA": results["random_init_lora"]["accuracy"],
                      "pretrained base + LoRA": results["lora"]["accuracy"]}, name="held-out accuracy")
display(transfer.to_frame().round(3))
transfer_gain = results["lora"]["accuracy"] - results["random_init_lora"]["accuracy"]
print(f"pretraining adds {100 * transfer_gain:.0f} points; final training loss: random "
      f"{results['random_init_lora']['final_loss']:.2f} vs pretrained {results['lora']['final_loss']:.3f}")
if strict:
    assert transfer_gain >= 0.3, f"the pretrained start should win by a wide margin, got {transfer_gain:.3f}"
del random_model

# %% [markdown]
# The random model cannot even learn the answer format in 150 steps (its loss stays high), and whatever
# it learns about tones cannot reach words it never saw. The pretrained model needed only to learn the
# format and to connect words it already knew to the four labels.
#
# ## 2 · Why fine-tune
#
# A general model is rarely the best at *your* job. Teams fine-tune for three kinds of reasons:
#
# - **Domain adaptation:** medicine, law, finance: vocabulary, conventions and facts a general model
#   handles poorly (clinical abbreviations, contract clauses, accounting terms).
# - **Task specialisation:** one job done well and consistently: a writing style or brand voice, code in
#   the house framework, translation in a domain, a fixed output format.
# - **Enterprise use:** support bots that answer from your product knowledge, assistants over internal
#   documents, the terms of your industry; often on hardware you control, for privacy and cost.
#
# A small fine-tuned model can beat a much larger general one on such a narrow task, and costs far less
# to run. Which *way* to fine-tune is decided mostly by memory, which is what the rest of this notebook
# measures.
#
# ## 3 · The methods, side by side
#
# - **Full-parameter fine-tuning** updates every weight: the most flexible, and the most memory (weights,
#   gradients *and* optimizer state for every parameter) and disk (a whole model per task).
# - **LoRA** freezes the weights and trains two thin matrices per linear layer, `W + (alpha/r)·B·A`:
#   about 4 % of this model's parameters (far less on real models), and an adapter of a few hundred KB.
# - **QLoRA** is LoRA on a base quantized to 4-bit **NF4** (with *double quantization* of the scales):
#   the frozen linear weights shrink about 7.5× (4.2 bits per weight instead of 32), so much larger
#   models fit on consumer hardware. On a CPU without bf16 hardware, the compute dtype is fp32
#   (`hardware.pick_dtype`).
# - **Adapters**, as the chapter means them (Houlsby et al., 2019), are small **bottleneck networks
#   inserted between layers**: down-project, a non-linearity, up-project, added to the layer's output.
#   peft does not implement them; the maintained library that does, AdapterHub's `adapters`, is built for
#   one specific transformers release and installs it over yours (its documentation says so), so it
#   cannot sit beside the course's pinned transformers, and it is not in the course's offline package set.
#   What the course runs instead is peft's **IA3** ((IA)³: "Infused Adapter by Inhibiting and Amplifying
#   Inner Activations"), which is *not* a bottleneck: it learns one scaling vector per adapted activation
#   (keys, values, the MLP's inner activation), the fewest parameters of all. Being so small, it needs a
#   much larger learning rate.
#
# LoRA is already trained (section 1). Now the others, with the same data, steps and seed.

# %%
full_model = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=dtype).to(device)
full_model = train(full_model, learning_rates["full"], "full")     # every parameter trains

# %%
if "qlora" in methods:
    quant_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=dtype)   # fp32 here: no bf16 hardware on this CPU
    qbase = AutoModelForCausalLM.from_pretrained(cfg.model_path, quantization_config=quant_config, dtype=dtype)
    quantization.keep_4bit_unpacked_on_cpu(qbase)  # odd-sized layers on AVX-512 BF16 CPUs
    # Casts the non-quantized parts (norms) to fp32 and lets gradients flow through the frozen 4-bit base.
    qbase = prepare_model_for_kbit_training(qbase, use_gradient_checkpointing=False)
    print(type(qbase.model.layers[0].self_attn.q_proj).__name__, "replaces nn.Linear in every decoder layer")
    set_seed(cfg.seed)
    qlora_model = train(get_peft_model(qbase, lora_config()), learning_rates["qlora"], "qlora")

# %%
if "ia3" in methods:
    # IA3 scales the outputs of k_proj and v_proj, and the input of down_proj (a "feed-forward" module).
    ia3_config = IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"],
                           task_type="CAUSAL_LM")
    ia3_base = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=dtype).to(device)
    set_seed(cfg.seed)
    ia3_model = train(get_peft_model(ia3_base, ia3_config), learning_rates["ia3"], "ia3")

# %%
names = {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA (NF4)", "ia3": "IA3 (adapter)"}
table = pd.DataFrame({names[m]: results[m] for m in methods}).T
table = table[["trainable_params", "trainable_pct", "weight_mb", "peak_train_mb", "sec_per_step", "disk_mb",
               "accuracy", "final_loss"]]
table["trainable_params"] = table["trainable_params"].astype(int)
display(table.style.format({"trainable_params": "{:,}", "trainable_pct": "{:.2f} %", "weight_mb": "{:.2f}",
                            "peak_train_mb": "{:.1f}", "sec_per_step": "{:.3f}", "disk_mb": "{:.3f}",
                            "accuracy": "{:.3f}", "final_loss": "{:.4f}"}))

columns = [("trainable_pct", "trainable parameters (%)"), ("weight_mb", "weight memory (MB)"),
           ("peak_train_mb", "peak training memory growth (MB)"), ("sec_per_step", "seconds per step"),
           ("disk_mb", "saved size on disk (MB)"), ("accuracy", "held-out accuracy")]
fig, axes = plt.subplots(2, 3, figsize=(13, 6))
for ax, (col, label) in zip(axes.flat, columns):
    bars = ax.bar(table.index, table[col], color=["#c44e52", "#4c72b0", "#55a868", "#8172b2"][:len(table)])
    ax.bar_label(bars, fmt="%.3g")
    ax.set_title(label)
    ax.tick_params(axis="x", rotation=20)
fig.suptitle(f"Same task, data and {cfg.max_steps} steps: what each method costs and gets")
fig.tight_layout()

# %% [markdown]
# How to read it:
# - **Trainable parameters** decide the gradients and optimizer state. Full fine-tuning trains 100 %;
#   LoRA and QLoRA ~4 % here (on a 7 B model, r = 16 on all linear layers is ~0.6 %); IA3 ~0.1 %.
# - **Weight memory** is what `get_memory_footprint()` counts: QLoRA's 4-bit base is the smallest. The
#   embedding and norms stay in full precision, which on this tiny model is a large share; on real models
#   the linear layers dominate and the saving approaches 7.5×.
# - **Peak training memory** (the RSS growth during `trainer.train()`) holds gradients, AdamW's two
#   moments, activations and temporary buffers. Full fine-tuning adds gradients and two AdamW moments for
#   every parameter: 3 × 14.75 MB ≈ 44 MB here. The PEFT methods' growth is almost all activations: about
#   100 KB per token on this model (a third of it the 2,048-way output layer), times 8 rows of ~30 tokens.
#   At real sequence lengths and model sizes, activations grow with batch × sequence × layers × hidden
#   (the calculator in section 6 shows it). PEFT saves the *per-parameter* memory, not activations: at
#   16 × 256 tokens on this tiny model, LoRA with dropout even needs more than full fine-tuning
#   (`bench/methods.py`), because dropout keeps a copy of every adapted layer's input. On real models
#   the per-parameter part dominates; for activations the tool is gradient checkpointing.
# - **Seconds per step:** on this tiny model all methods cost about the same; QLoRA dequantizes the
#   4-bit weights in every forward and backward pass, which costs time on a CPU.
# - **Disk:** a PEFT method saves only its adapter; full fine-tuning saves a whole model per task.
#
# The relations the chapter claims, checked (a regression in the course or the libraries fails here):

# %%
checks = {}
if "qlora" in methods:
    # nn.Linear weights (no lm_head) at fp32's 4 bytes each, also where the full model trained in bf16
    fp32_linear = quantization.linear_weight_bytes(full_model) * 4 // full_model.dtype.itemsize
    nf4_linear = quantization.linear_weight_bytes(qlora_model) - sum(  # Linear4bit storage + its constants,
        p.numel() * p.element_size() for n, p in qlora_model.named_parameters() if "lora_" in n)  # minus adapters
    linear_ratio = nf4_linear / fp32_linear
    print(f"linear-layer weights: fp32 {fp32_linear / 1e6:.2f} MB, NF4 + double quant {nf4_linear / 1e6:.2f} MB "
          f"= {100 * linear_ratio:.1f} % ({8 * nf4_linear / (fp32_linear / 4):.2f} bits per weight)")
    # 4 bits + one scale per 64 weights, the scales themselves in 8 bits (double quant): measured 0.131 of fp32
    # (tiny Llama; SmolLM2 0.129 in notebook 03). int8 takes 0.25 (03's table): the bar 0.16 fails it.
    checks["4-bit linear weights <= 16 % of fp32"] = linear_ratio <= 0.16
for m in ("lora", "qlora"):
    if m in results:
        checks[f"{names[m]} trains <= 5 % of the parameters"] = results[m]["trainable_pct"] <= 5
        gap = results["full"]["accuracy"] - results[m]["accuracy"]
        checks[f"{names[m]} at most {100 * max_accuracy_gap:.0f} points below full fine-tuning ({100 * -gap:+.1f})"] = (
            gap <= max_accuracy_gap)
checks["PEFT adapters are < 10 % of the full model on disk"] = all(
    results[m]["disk_mb"] < 0.1 * results["full"]["disk_mb"] for m in methods if m != "full")
display(pd.Series(checks, name="holds").to_frame())
if strict:
    assert all(checks.values()), [k for k, ok in checks.items() if not ok]

# %% [markdown]
# ## 4 · LoRA's idea: weight updates are nearly low-rank
#
# LoRA bets that the *change* a fine-tune makes to a weight matrix, `ΔW = W_tuned − W_base`, can be
# written with far fewer numbers than `W` itself: `ΔW ≈ B·A` with rank `r`. We have a real `ΔW`: the
# full fine-tune above minus the base. Its singular values tell how much of it (share of the squared
# Frobenius norm, `‖ΔW‖²`) the best rank-r matrix keeps, for r = 1…64. For comparison: a random matrix of
# the same shape, which has no low-rank structure.

# %%
base_state = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=torch.float32).state_dict()
tuned_state = full_model.state_dict()
ranks = list(range(1, 65))

def captured(delta):
    """Share of ||delta||^2 the best rank-r approximation keeps, for each r in ranks (Eckart-Young)."""
    s2 = torch.linalg.svdvals(delta.float()) ** 2
    return (s2.cumsum(0) / s2.sum())[[r - 1 for r in ranks]].numpy()

curves = {}
for proj in ("q_proj", "v_proj", "down_proj"):
    keys = [k for k in base_state if k.endswith(f"{proj}.weight")]
    curves[proj] = sum(captured(tuned_state[k].float() - base_state[k]) for k in keys) / len(keys)
shape = base_state[keys[0]].shape
curves["random matrix"] = captured(torch.randn(shape, generator=torch.Generator().manual_seed(0)))

fig, ax = plt.subplots(figsize=(6.5, 3.6))
for name, c in curves.items():
    ax.plot(ranks, c, ls="--" if name == "random matrix" else "-", label=name)
ax.axvline(cfg.lora_r, color="gray", lw=0.8)
ax.set_xlabel("rank r")
ax.set_ylabel("share of ||ΔW||² kept")
ax.set_ylim(0, 1.02)
ax.legend()
ax.set_title("Full fine-tune's ΔW (mean over layers) vs a random matrix")
at_r = {name: float(c[cfg.lora_r - 1]) for name, c in curves.items()}
print(f"share kept at r = {cfg.lora_r}:", {k: round(v, 3) for k, v in at_r.items()})
if strict:
    assert min(at_r[p] for p in ("q_proj", "v_proj", "down_proj")) > 1.5 * at_r["random matrix"], at_r

# %% [markdown]
# The fine-tune's updates concentrate in a few directions: a low rank keeps a much larger share of them
# than of a random matrix. Not all of it: LoRA does not copy the full fine-tune's update, it learns its
# own low-rank one, and the table shows that it is enough for this task.
#
# ### What `alpha / r` does
#
# peft computes a LoRA layer as `W x + (alpha / r) · B (A x)`. The factor `scaling = lora_alpha / r` is a
# volume knob on the learned update: it lets you change `r` without retuning the learning rate (keep
# `alpha` proportional to `r`, as the common `alpha = 2r` does). Merging folds exactly this product into
# `W`. We check that on a trained layer, then turn the knob on every LoRA layer and watch the accuracy.

# %%
layer = lora_model.base_model.model.model.layers[0].self_attn.q_proj    # a peft lora.Linear
A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight  # r x in, out x r
print(f"A {tuple(A.shape)}, B {tuple(B.shape)}, scaling {layer.scaling['default']} = lora_alpha / r "
      f"= {cfg.lora_alpha} / {cfg.lora_r}")
delta = (B @ A) * (cfg.lora_alpha / cfg.lora_r)
merged = copy.deepcopy(lora_model).merge_and_unload()                  # W + scaling * B A, a plain model
merged_minus_base = merged.model.layers[0].self_attn.q_proj.weight - layer.base_layer.weight
lora_delta_err = (merged_minus_base - delta).abs().max().item()
print(f"max |(merged - base) - B A alpha/r| = {lora_delta_err:.2e};  rank of the update: "
      f"{torch.linalg.matrix_rank(delta.detach()).item()} (of {min(delta.shape)} possible)")
assert layer.scaling["default"] == cfg.lora_alpha / cfg.lora_r
# The merge adds in the model's dtype: allow one rounding step at the largest weight (fp32: ~3e-8; bf16 on a
# CPU with bf16 hardware: ~2e-3, measured 5e-4). A wrong merge (scaling off by 2, say) misses by half of B A: ~1e-2.
merge_tol = torch.finfo(layer.base_layer.weight.dtype).eps * layer.base_layer.weight.abs().max().item()
assert lora_delta_err < merge_tol, (lora_delta_err, merge_tol)
del merged

# %%
from peft.tuners.lora import LoraLayer

lora_layers = [m for m in lora_model.modules() if isinstance(m, LoraLayer)]
knob = {}
for factor in (0.0, 0.5, 1.0, 2.0):
    for m in lora_layers:
        m.scaling["default"] = factor * cfg.lora_alpha / cfg.lora_r
    knob[f"{factor} x alpha/r"] = task.evaluate(lora_model)[1]["accuracy"]
for m in lora_layers:
    m.scaling["default"] = cfg.lora_alpha / cfg.lora_r                    # back to the trained setting
display(pd.Series(knob, name="held-out accuracy").to_frame())
if strict:
    assert knob["0.0 x alpha/r"] == base_scores["accuracy"], "scaling 0 must give back the base model"
    assert knob["1.0 x alpha/r"] > knob["0.0 x alpha/r"] + 0.5

# %% [markdown]
# At 0 the adapter is switched off and the base model answers; at the trained setting it works. Raising
# `alpha` later scales an update that was trained for another setting; that is why `alpha` is chosen
# before training and the learning rate is tuned with it.
#
# ## 5 · Task-specific fine-tuning: the same recipe, different rows
#
# The chapter also names fine-tuning by **task**. The training loop stays the same; what changes is how a
# row of data becomes training text (and how you score the answers). Each one-liner below renders one
# row with `templates.render_template`, the same `{field}` syntax as Olive's `--text_template`:

# %%
examples = {
    "classification": ("Phrase: {phrase}\nTone: {tone}",
                       {"phrase": "I was thrilled to see them again.", "tone": "joy"}),
    "generation": ("Write a product description for: {product}\nDescription: {description}",
                   {"product": "a solar lantern", "description": "Bright for 12 hours on one sunny day."}),
    "extraction / NER": ("Extract the people and places as JSON.\nText: {text}\nEntities: {entities}",
                         {"text": "Ada met Tim in Lisbon.",
                          "entities": '{"person": ["Ada", "Tim"], "place": ["Lisbon"]}'}),
    "summarisation": ("Summarise in one sentence.\n{article}\nSummary: {summary}",
                      {"article": "The council met on Monday. It voted 7-2 to extend the bike lane on Main Street.",
                       "summary": "The council voted to extend the Main Street bike lane."}),
}
scored_by = {"classification": "accuracy / F1", "generation": "human or model rating, perplexity",
             "extraction / NER": "entity F1", "summarisation": "ROUGE"}
for kind, (template, row) in examples.items():
    text = templates.render_template(template, row)
    print(f"--- {kind}  (fields {templates.template_fields(template)}; scored by "
          f"{scored_by[kind]})\n{text}")
    assert all(str(v) in text for v in row.values())

# %% [markdown]
# Notebook 04 trains on your own data with such templates; notebook 05 covers the metrics.
#
# ## 6 · How much memory would a real model need?
#
# The table above is for a 3.7 M-parameter model. `labhelpers.memory.estimate` adds up the same parts for any size:
# **weights** (bytes per parameter: fp32 4, bf16 2, NF4 + double quantization ≈ 0.52), **gradients** and
# **optimizer state** (AdamW: two fp32 moments, plus an fp32 master copy in mixed precision) for the
# *trainable* parameters only, and **activations** (batch × sequence × a per-token, per-layer term).
# Its formulas are documented in the module and tested against what PyTorch allocates on the embedded
# model and against the LoRA and QLoRA papers' headline figures (`tests/test_memory*.py`).
#
# One result, printed (so it is in the saved notebook), then the interactive calculator:

# %%
available_gib, where = widgets.available_memory_gib()
for method in ("full", "lora", "qlora"):
    r = widgets.calculator_table("llama-3.2-1b", method=method, precision="bf16", seq_len=512, batch_size=4)
    print(r["text"])
display(r["table"].round(3))
big = {m: widgets.calculator_table(widgets.CUSTOM, params_b=65, method=m, precision="bf16", seq_len=512,
                                   batch_size=1, lora_r=64, gradient_checkpointing=True, available_gib=48)
       for m in ("full", "qlora")}
gb = {m: r["estimate"]["total_gib"] * GIB / 1e9 for m, r in big.items()}
print(f"65 B model, batch 1 x 512 tokens, gradient checkpointing: full bf16 mixed-precision fine-tuning "
      f"{gb['full']:,.0f} GB; QLoRA (r 64) {gb['qlora']:.0f} GB. "
      f"QLoRA paper: over 780 GB vs under 48 GB (one 48 GB GPU).")
assert gb["full"] > 780 and gb["qlora"] < 48, gb

# %%
widgets.memory_calculator()    # change any control; a bad value shows a message instead of a table

# %% [markdown]
# ## 7 · Self-check exercise
#
# Full fine-tuning in bf16 mixed precision with AdamW keeps, per parameter: bf16 weights, bf16
# gradients, an fp32 master copy of the weights, and AdamW's two fp32 moments.
# **How many GiB (2^30 bytes) does full fine-tuning of a 7 B-parameter model need before activations?**
# Put your number in `answer_gib` and run the cell; the calculator above can check your reasoning.
# (Solutions: `solutions/01_concepts.md`.)

# %%
answer_gib = None   # your number here
print(exercises.check_full_finetune_gib(answer_gib, n_params=7e9))

# %% [markdown]
# ## Summary
#
# - Fine-tuning is transfer learning: the same short run reaches high held-out accuracy from a pretrained
#   base and stays near chance from random weights.
# - Full fine-tuning trains every parameter and pays for it in gradients, optimizer state and disk. LoRA
#   and QLoRA train ~4 % here (under 1 % on real models) and match it on this task; QLoRA also shrinks the
#   frozen linear weights to ~13 % of fp32. IA3 trains the fewest parameters and needs a large learning rate.
# - A real fine-tune's weight update is concentrated in a few directions, which is why a low-rank update
#   suffices; `alpha / r` scales it, and merging folds exactly `B·A·alpha/r` into the weights.
# - Memory, not compute, decides which method fits your hardware: estimate it before you start.
#
# Next: **02 · LoRA** (every step of a LoRA fine-tune in detail) and **03 · QLoRA**.

# %%
summary = {"base_accuracy": base_scores["accuracy"], "transfer_gain": transfer_gain,
           "lora_delta_max_err": lora_delta_err}
if "qlora" in methods:
    summary["linear_4bit_ratio"] = linear_ratio
for m, row in results.items():
    for key, value in row.items():
        summary[f"{m}_{key}"] = value
summary.update({f"rank{cfg.lora_r}_share_{k.replace(' ', '_')}": v for k, v in at_r.items()})
params = dict(model_name=model_name, methods=",".join(methods), max_steps=cfg.max_steps, lr_full=lr_full,
              lr_lora=lr_lora, lr_qlora=lr_qlora, lr_ia3=lr_ia3, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
              batch_size=cfg.batch_size, seed=cfg.seed, n_test=n_test)
print(runs.write_metrics(run_dir, summary, params=params, notebook="01_concepts"))
