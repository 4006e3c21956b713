# %% [markdown]
# # 08 · Advanced: several adapters on one base, hyperparameter search, custom losses, batch runs, scale-out
#
# The chapter's "advanced techniques" section, made to run: adapters for two tasks trained on one base
# and switched or combined at run time; the chapter's hyperparameter search space run with optuna; the
# chapter's contrastive loss used for a real similarity task, and a class-weighted loss for imbalanced
# data; then the two ways people go beyond one notebook: parameter grids run by papermill, and training
# spread over several processes with `accelerate`.
#
# **Goals**
# - train two LoRA adapters on one base, switch between them (`set_adapter`), combine them
#   (`add_weighted_adapter`), and measure what each costs on disk and in memory against a full copy;
# - express the chapter's search space (learning rate 1e-6…1e-3 log, r 8…64, batch 8/16/32, random) in
#   the course's YAML, run it with optuna (random or TPE sampler, pruning), and read the results;
# - override `Trainer.compute_loss`: a contrastive loss that pulls same-tone phrases together, and a
#   class-weighted cross-entropy that rescues a rare class;
# - run notebooks over a parameter grid (`python -m labhelpers batch`) and training on several
#   processes (`accelerate launch`).
#
# **Model:** the tiny Llama by default: a search and a grid are many runs, which fit the budget only on the
# tiny model; `-p model_name smollm2-135m` runs the same search on real weights (its best trial scores 0.85).
#
# **Time on 2 CPU cores:** about 2 minutes (4 on a CPU without bf16); about 13 minutes with
# `model_name smollm2-135m`.
#
# **Chapter:** Advanced techniques (multi-adapter training, hyperparameter optimisation, custom loss
# functions); Best practices → resources.

# %% tags=["parameters"]
# Parameters: papermill sets these (-p name value). The defaults are the fast workshop setting.
# model_name: empty means the embedded tiny Llama; a preset, hub id or local folder also works.
# output_dir: empty means a new folder under runs/; an existing non-empty folder is refused.
# Step counts and check_effects: "auto" takes the schedule measured for this model and asserts the effects
# measured to hold there (labhelpers/train/workshop.py; tiny: 100 / 6 trials of 150 steps / 80 / 40); True always
# asserts; False reports.
model_name = ""
adapter_steps = "auto"     # LoRA steps per task adapter (section 1)
n_trials = "auto"          # search trials (section 2); the chapter runs 20
search_steps = "auto"      # training steps per trial
search_sampler = "random"  # random (the chapter's strategy) or tpe
contrastive_steps = "auto" # section 3
weighted_steps = "auto"    # short on purpose: see the note after section 3b
minority_share = 0.05      # the rare class's share of the imbalanced train set
n_test = 60
seed = 0
output_dir = ""
check_effects = "auto"

# %%
# Check the parameters first: a wrong one stops here, named.
from labhelpers.checks import check_int
from labhelpers.errors import ConfigError
from labhelpers.models.presets import resolve_model
from labhelpers.train import workshop
from labhelpers.train.config import TrainConfig, effects_checked

schedule = workshop.steps("08", resolve_model(model_name), adapter_steps=adapter_steps, n_trials=n_trials,
                          search_steps=search_steps, contrastive_steps=contrastive_steps,
                          weighted_steps=weighted_steps)
adapter_steps, n_trials, search_steps, contrastive_steps, weighted_steps = (
    schedule[k] for k in ("adapter_steps", "n_trials", "search_steps", "contrastive_steps", "weighted_steps"))
for name, value, low in (("adapter_steps", adapter_steps, 1), ("n_trials", n_trials, 1),
                         ("search_steps", search_steps, 1), ("contrastive_steps", contrastive_steps, 1),
                         ("weighted_steps", weighted_steps, 1), ("n_test", n_test, 10)):
    check_int(name, value, low=low)
cfg = TrainConfig(model_name=model_name, max_steps=adapter_steps, seed=seed, output_dir=output_dir)
if search_sampler not in ("random", "tpe"):
    raise ConfigError(f"search_sampler={search_sampler!r} must be 'random' or 'tpe'")
if isinstance(minority_share, bool) or not isinstance(minority_share, (int, float)) or not 0 < minority_share < 0.25:
    raise ConfigError(f"minority_share={minority_share!r} must be a number in (0, 0.25), e.g. 0.05")
strict = effects_checked(check_effects, cfg, "08", schedule)
search_bar = workshop.bar("08", cfg.model_path, "search_min_accuracy", "auto", schedule) if strict else None
# The class-weight gain was measured at seed 0 and the short schedule; other seeds and longer runs lose it
# (section 3b says why), so "auto" asserts it only there. True asserts it anyway.
weighted_gain_checked = strict and (check_effects is True or (
    cfg.seed == 0 and weighted_steps == (workshop.entry("08", cfg.model_path) or {"steps": {}})["steps"].get(
        "weighted_steps")))
print(f"model {cfg.model_path}; asserting measured effects: {strict}\n{workshop.describe('08', cfg.model_path)}")

# %%
import subprocess
import sys
import time
from pathlib import Path

import datasets
import matplotlib.pyplot as plt
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
from transformers.trainer_callback import PrinterCallback

from labhelpers import runs
from labhelpers.course import exercises
from labhelpers.data import task_data, templates
from labhelpers.evaluate import textmetrics
from labhelpers.evaluate.metrics import parse_label
from labhelpers.memory import estimate
from labhelpers.models import shapes
from labhelpers.paths import REPO_ROOT
from labhelpers.train import finetune, losses, search
from labhelpers.train.tonetask import ToneTask

set_seed(cfg.seed)
datasets.disable_progress_bars()
run_dir = runs.prepare_output_dir(cfg.output_dir, "08_advanced")
tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
tone = ToneTask(tokenizer, n_test=n_test)
collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
t_start = time.perf_counter()
print("outputs in", run_dir)

# %% [markdown]
# ## 1 · Several adapters on one base
#
# One base model, one small adapter per task. peft keeps several adapters in one `PeftModel` under
# names: `add_adapter` creates one, `set_adapter` chooses which one is active (and trained), and
# `disable_adapter()` gives the base back. We train a **tone** adapter (phrase → tone, notebook 02) and an
# **extract** adapter (sentence → `{"place", "tone"}` JSON, notebook 04) on the same base.

# %%
EXTRACT_TEMPLATE = templates.chat_text_template(tokenizer, "input", "output")   # the model's own chat format
extract = task_data.generate_splits("extraction", {"train": 300, "test": n_test}, seed=cfg.seed)
extract_train = datasets.Dataset.from_list([templates.encode(EXTRACT_TEMPLATE, tokenizer, r, 160)
                                            for r in extract["train"]])

lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
set_seed(cfg.seed)
base = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=torch.float32)
model = get_peft_model(base, lora, adapter_name="tone")
model.add_adapter("extract", lora)


def train_adapter(name, train_data):
    model.set_adapter(name)   # the active adapter is the one that trains; the other stays frozen
    args = TrainingArguments(output_dir=str(run_dir / f"train_{name}"), max_steps=adapter_steps,
                             per_device_train_batch_size=8, learning_rate=3e-3, lr_scheduler_type="cosine",
                             warmup_ratio=0.05, seed=cfg.seed, data_seed=cfg.seed, save_strategy="no",
                             logging_steps=adapter_steps, report_to="none", use_cpu=not torch.cuda.is_available(),
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train_data, data_collator=collator)
    trainer.remove_callback(PrinterCallback)
    trainer.train()


for name, data in (("tone", tone.train), ("extract", extract_train)):
    t0 = time.perf_counter()
    train_adapter(name, data)
    print(f"adapter {name!r} trained in {time.perf_counter() - t0:.0f} s")


# %%
def score_tasks():
    tone_acc = tone.evaluate(model)[1]["accuracy"]
    preds = finetune.answers(model, tokenizer, EXTRACT_TEMPLATE, extract["test"], max_new_tokens=16)
    fields = textmetrics.field_match(preds, [r["output"] for r in extract["test"]])["field_accuracy"]
    return {"tone accuracy": tone_acc, "extract field accuracy": fields}


adapter_rows = {}
with model.disable_adapter():
    adapter_rows["base (no adapter)"] = score_tasks()
for name in ("tone", "extract"):
    model.set_adapter(name)
    adapter_rows[f"adapter {name}"] = score_tasks()
adapter_table = pd.DataFrame(adapter_rows).T
display(adapter_table.round(3))
if strict:
    assert (adapter_table.loc["adapter tone", "tone accuracy"]
            > adapter_table.loc["base (no adapter)", "tone accuracy"] + 0.5)
    assert (adapter_table.loc["adapter extract", "extract field accuracy"]
            > adapter_table.loc["base (no adapter)", "extract field accuracy"] + 0.3)

# %% [markdown]
# Each adapter is good at its own task and no help at the other: switching is a dictionary lookup, no
# reload. Can two adapters be **combined** into one that does both? `add_weighted_adapter` builds a new
# adapter from existing ones: `"cat"` stacks their low-rank factors (rank adds up; exact sum of the two
# updates), `"linear"` averages factors of equal rank. Measure before you trust it:

# %%
for combination in ("cat", "linear"):
    model.add_weighted_adapter(["tone", "extract"], [1.0, 1.0], f"both_{combination}", combination_type=combination)
    model.set_adapter(f"both_{combination}")
    adapter_rows[f"combined ({combination})"] = score_tasks()
adapter_table = pd.DataFrame(adapter_rows).T
display(adapter_table.round(3))

# %% [markdown]
# Here neither combination keeps both skills: the sum of two updates that were each trained alone is not
# a model trained on both. Combining works best for adapters trained on related data or trained to be
# merged; for different tasks, **switch** adapters per request (as the ONNX Runtime GenAI model in
# notebook 06 does), or train one adapter on the mixed data.
#
# What does an adapter cost? On disk, its own weights only; in memory, one base shared by all adapters:

# %%
adapter_dir = run_dir / "adapters"
model.save_pretrained(adapter_dir, selected_adapters=["tone", "extract"])   # one subfolder per adapter
base_mb = sum(f.stat().st_size for f in Path(cfg.model_path).glob("*.safetensors")) / 1e6
adapter_params = {name: sum(p.numel() for n, p in model.named_parameters() if f".{name}." in n)
                  for name in ("tone", "extract")}
cost = pd.DataFrame({
    "disk MB": {"full fine-tuned copy": base_mb,
                **{f"adapter {n}": runs.folder_mb(adapter_dir / n) for n in adapter_params}},
    "parameters": {"full fine-tuned copy": sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n),
                   **{f"adapter {n}": v for n, v in adapter_params.items()}},
})
display(cost.round(2))
shape = shapes.shape_of("llama-3.2-1b")
real_adapter = estimate.lora_trainable_params(shape, 8)
print(f"At real scale (Llama-3.2-1B, r 8, all linear layers): a full copy per task is "
      f"{shape['n_params'] * 2 / 1e9:.1f} GB in bf16, an adapter {real_adapter * 2 / 1e6:.0f} MB. "
      f"Ten tasks: {10 * shape['n_params'] * 2 / 1e9:.0f} GB of copies, "
      f"or one base + ten adapters = {(shape['n_params'] + 10 * real_adapter) * 2 / 1e9:.1f} GB.")
assert cost.loc["adapter tone", "disk MB"] < 0.2 * cost.loc["full fine-tuned copy", "disk MB"]

reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(cfg.model_path), adapter_dir / "tone",
                                     adapter_name="tone")
reloaded.load_adapter(adapter_dir / "extract", adapter_name="extract")
print("reloaded adapters:", sorted(reloaded.peft_config))

# %% [markdown]
# ## 2 · Hyperparameter search
#
# The chapter searches learning rate (1e-6…1e-3, log scale), LoRA rank (8…64) and batch size (8/16/32)
# with a random strategy over 20 trials. That YAML is **not an Olive format** (Olive has no search in
# `olive finetune`); `configs/search_lora.yaml` writes the same space in the course's own format, and
# `labhelpers.train.search` runs it with **optuna**: a random or TPE sampler (TPE learns from earlier trials
# which regions score well) and a median pruner that stops a trial whose validation loss lags the
# median of earlier trials at the same step. Each trial is a real, short LoRA run on the tone task,
# scored on **validation** rows (the test split stays for the final check).

# %%
space = search.load_space(REPO_ROOT / "configs" / "search_lora.yaml")
space.sampler, space.seed = search_sampler, cfg.seed
space.fixed = {**space.fixed, "max_steps": search_steps}   # the YAML's 150 is the tiny model's budget
print(f"{space.sampler} sampler, {n_trials} trials, metric {space.metric} ({space.direction}); fixed {space.fixed}")
print(open(REPO_ROOT / "configs" / "search_lora.yaml").read().split("parameters:")[1].split("fixed:")[0])
objective = search.lora_tone_objective(cfg.model_path, tokenizer=tokenizer, seed=cfg.seed, **space.fixed)
t0 = time.perf_counter()
result = search.run_search(space, objective, n_trials=n_trials)
search_seconds = time.perf_counter() - t0
display(result.table.round(5))
default_params = {"learning_rate": 1e-3, "lora_r": 8, "batch_size": 8}
default_value = objective(default_params)   # the course's default config, same steps and rows
print(f"best {result.best_params} -> {space.metric} {result.best_value:.3f}; default {default_params} -> "
      f"{default_value:.3f}; search took {search_seconds:.0f} s")
search.plot_search(result)
plt.show()
chance = 1 / len(tone.labels)
print(f"best validation accuracy {result.best_value:.2f} against chance {chance:.2f}")
if strict:
    assert result.best_value >= default_value, "the search should find a config at least as good as the default"
if search_bar is not None:
    assert result.best_value >= search_bar, (result.best_value, search_bar)

# %% [markdown]
# Read the plot against the range: with only `search_steps` steps, learning rates far below 1e-4 cannot move
# the adapter, so the chapter's range spends many trials where nothing can happen (and the pruner stops
# them early). A search range should fit the training budget. The budget and the base model set the ceiling:
# on the tiny model the best trial reaches 1.00 validation accuracy in 150 steps (0.35 in 40; chance 0.25), on
# SmolLM2 0.85 in 15 steps (measured). The trial count is a parameter (`-p n_trials 20` for the chapter's setting); try
# `-p search_sampler tpe` and compare.
#
# ## 3 · Custom losses
#
# `Trainer` computes the loss in `compute_loss(model, inputs, return_outputs=False, num_items_in_batch=None)`.
# Override it, and the optimizer, schedule, logging and checkpoints stay the Trainer's.
#
# ### 3a · A contrastive loss: similar phrases close, different ones apart
#
# A sentence-similarity task: pairs of phrases with the same tone are *similar*, with different tones
# *dissimilar*. The model embeds each phrase (mean of its last hidden states); a contrastive loss pulls
# similar pairs together and pushes dissimilar pairs beyond a margin. We measure how well similar and
# dissimilar held-out pairs are separated, before and after.
#
# The chapter's `CustomContrastiveLoss` uses the **Euclidean** distance with margin 1.0 and **label 0 for
# similar** pairs (Hadsell et al.'s convention). The course keeps its form but changes two things, the
# same two that sentence-transformers' `ContrastiveLoss` makes: label **1 = similar** (what
# `losses.make_pairs` writes), and the **cosine** distance with margin 0.5. Why not Euclidean? Measure the
# distances the chapter's margin would act on:

# %%
import inspect
import statistics

pair_train = losses.make_pairs(losses.read_tone_rows("train"), 16 * contrastive_steps, seed=cfg.seed)
pair_test = losses.make_pairs(losses.read_tone_rows("test"), 200, seed=cfg.seed + 1)
print("a pair:", pair_train[0])
encoder, enc_tokenizer = losses.load_encoder(cfg.model_path, seed=cfg.seed)   # AutoModel (no LM head) + LoRA
if enc_tokenizer.pad_token is None:
    enc_tokenizer.pad_token = enc_tokenizer.eos_token
distances = losses.pair_distances(encoder, enc_tokenizer, pair_test)
for metric, margin in (("euclidean", 1.0), ("cosine", losses.DEFAULT_MARGIN)):
    far = distances[metric]["dissimilar"]
    print(f"{metric:9s} median distance: similar {statistics.median(distances[metric]['similar']):.3f}, "
          f"dissimilar {statistics.median(far):.3f}; dissimilar pairs already past margin {margin}: "
          f"{sum(d >= margin for d in far) / len(far):.0%}")
push_free = sum(d >= 1.0 for d in distances["euclidean"]["dissimilar"]) / len(distances["euclidean"]["dissimilar"])
# Measured: 100 % on both shipped models (median Euclidean distance 4.3 on the tiny model, 11.5 on SmolLM2).
assert push_free >= 0.95, "the chapter's margin should be below these Euclidean distances"

# %% [markdown]
# Mean-pooled hidden states of a language model are long vectors (norms of several units), so every
# dissimilar pair already sits beyond the chapter's margin of 1.0: its push term is zero, and the loss only
# pulls similar pairs together, which shrinking *all* embeddings also achieves. A Euclidean margin has to
# be chosen for each model's scale; the cosine distance lies in [0, 2] whatever the scale, so one margin
# works for both models here. Both losses are in `labhelpers.train.losses`
# (`chapter_contrastive_loss`, `contrastive_loss`); the trainer below uses the second:

# %%
separation_before = losses.pair_separation(encoder, enc_tokenizer, pair_test)
print(inspect.getsource(losses.ContrastiveTrainer.compute_loss))
print(inspect.getsource(losses.contrastive_loss).split('"""')[0] + "...")
contrastive_trainer = losses.ContrastiveTrainer(
    model=encoder, margin=losses.DEFAULT_MARGIN, train_dataset=datasets.Dataset.from_list(pair_train),
    data_collator=losses.PairCollator(enc_tokenizer),
    args=TrainingArguments(output_dir=str(run_dir / "contrastive"), max_steps=contrastive_steps,
                           per_device_train_batch_size=16, learning_rate=3e-3, lr_scheduler_type="constant",
                           seed=cfg.seed, data_seed=cfg.seed, save_strategy="no",
                           logging_steps=max(1, contrastive_steps // 4),
                           report_to="none", use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
                           remove_unused_columns=False))   # keep the pair columns: they are not forward() arguments
contrastive_trainer.remove_callback(PrinterCallback)
contrastive_trainer.train()
separation_after = losses.pair_separation(encoder, enc_tokenizer, pair_test)
separation = pd.DataFrame({"base": separation_before, "contrastive LoRA": separation_after}).T
display(separation.round(3))
if strict:
    assert separation_after["gap"] > separation_before["gap"] + 0.05, separation
    assert separation_after["auc"] > separation_before["auc"] + 0.05, separation
contrastive_summary = {f"contrastive_{k}_{m}": float(v)
                       for m, row in (("base", separation_before), ("trained", separation_after))
                       for k, v in row.items()}

# %% [markdown]
# ### 3b · A class-weighted loss for an imbalanced set
#
# Keep one tone at `minority_share` of the training rows (notebook 07's imbalance) and train twice with
# the same seed and steps: once with the plain loss, once with each example's answer tokens weighted by
# its class's inverse frequency (`losses.class_weights`, normalised to mean 1). The minority class's
# recall on the test split is the number to watch.

# %%
train_all = losses.read_tone_rows("train")
minority = "surprise"
skewed = losses.imbalanced_subset(train_all, minority, minority_share, seed=cfg.seed)
weights = losses.class_weights([r["tone"] for r in skewed], tone.labels)
print({t: sum(r["tone"] == t for r in skewed) for t in tone.labels}, "-> class weights",
      {t: round(w, 2) for t, w in weights.items()})
print(inspect.getsource(losses.WeightedLossTrainer.compute_loss))
skewed_ds = losses.tokenize_with_class(tone, skewed)


def tone_lora():
    set_seed(cfg.seed)
    m = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=torch.float32)
    return get_peft_model(m, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))


def weighted_args(name):
    return TrainingArguments(output_dir=str(run_dir / name), max_steps=weighted_steps, per_device_train_batch_size=8,
                             learning_rate=2e-3, seed=cfg.seed, data_seed=cfg.seed, save_strategy="no",
                             logging_steps=weighted_steps, report_to="none", use_cpu=not torch.cuda.is_available(),
                             disable_tqdm=True, remove_unused_columns=False)


plain = Trainer(model=tone_lora(), args=weighted_args("plain_loss"),
                train_dataset=skewed_ds.remove_columns("class_index"), data_collator=collator)
weighted = losses.WeightedLossTrainer(model=tone_lora(), args=weighted_args("weighted_loss"), train_dataset=skewed_ds,
                                      data_collator=losses.ClassIndexCollator(tokenizer),
                                      class_weights=[weights[t] for t in tone.labels])
reports = {}
for name, trainer in (("plain loss", plain), ("class-weighted loss", weighted)):
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    answers, _ = tone.evaluate(trainer.model)
    preds = [parse_label(a, tone.labels) for a in answers]
    reports[name] = losses.class_report(tone.test["tone"], preds, tone.labels, minority=minority)
weighted_table = pd.DataFrame(reports).T[["accuracy", "macro_f1", "minority_recall", "minority_f1"]]
display(weighted_table.round(3))
print("asserting the minority-recall gain:", weighted_gain_checked)
if weighted_gain_checked:
    assert (weighted_table.loc["class-weighted loss", "minority_recall"]
            > weighted_table.loc["plain loss", "minority_recall"] + 0.1)
weighted_summary = {f"weighted_{k}_{n.split()[0].replace('-', '')}": float(v) for n, row in weighted_table.iterrows()
                    for k, v in row.items()}

# %% [markdown]
# The class weight rescues the rare class **early**: after 40 steps (the tiny model's setting) the plain
# loss has not learned to say the rare tone at all, the weighted loss has, and it pays with some accuracy
# on the common classes (the weights push every answer towards the rare one for a while). Train long
# enough (run with `-p weighted_steps 150`) and on this data both losses reach full accuracy, the minority
# class included: the base model already knows the rare tone's words, so its 32 rows suffice. The gain
# from weighting also depends on the seed (with `-p seed 1` it vanishes at 40 steps): measure over several
# seeds before you trust a loss change. That is why the cell above asserts the gain only at seed 0 and the
# workshop steps, and reports it elsewhere. Class weights matter most where the rare class is hard and
# training budgets are short; always score them per class
# (macro F1, minority recall), never by accuracy alone.

# %% [markdown]
# ## 4 · Batch runs with papermill
#
# Every notebook has a `parameters` cell, so papermill can run it with other values. `labhelpers.course.batch`
# runs notebooks over a grid (every combination of the listed values), a few at a time, each into its
# own output notebook and run folder; it skips runs already done (rerun the same command after an
# interruption), records failures and goes on, and collects every run's `metrics.json` into one CSV and
# a chart. `configs/grid_methods.yaml` compares methods x ranks x learning rates on notebook 02:

# %%
print(open(REPO_ROOT / "configs" / "grid_methods.yaml").read())
command = [sys.executable, "-m", "labhelpers", "batch", "--grid", str(REPO_ROOT / "configs" / "grid_methods.yaml"),
           "--out", str(run_dir / "batch"), "--dry-run"]
dry = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
print(dry.stdout[-2500:])
assert dry.returncode == 0, dry.stderr
print("To run it (about 8 x 1 minute on 2 cores):\n"
      "  python -m labhelpers batch --grid configs/grid_methods.yaml --jobs 1")

# %% [markdown]
# ## 5 · Scale-out with accelerate
#
# When one device is not enough, the same training script runs as several processes, each on its own
# device and its own share of every batch (data parallel); gradients are averaged before each update.
# `accelerate launch` starts the processes and sets up their communication. The course's config-driven
# entry point runs unchanged under it; `configs/accelerate/` has a tested 2-process CPU config (gloo
# backend, what `make test` runs) and documented examples for several GPUs (DDP), sharded optimizer state
# (DeepSpeed ZeRO-2) and several machines. There is no FSDP config: `labhelpers finetune` generates with and
# saves whole weights on its main process, which FSDP would leave holding a shard, so it refuses FSDP.

# %%
for path in sorted((REPO_ROOT / "configs" / "accelerate").glob("*.yaml")):
    header = [line[2:] for line in path.read_text().splitlines() if line.startswith("# ")][:2]
    print(f"{path.name:24s} {' '.join(header)[:110]}")
print("\nOn this machine (2 CPU processes):\n  accelerate launch --config_file configs/accelerate/cpu_2proc.yaml "
      "-m labhelpers finetune --config configs/qa_lora.yaml")

# %% [markdown]
# With N processes at the same per-device batch, each optimizer step sees N times the examples: keep
# the *effective* batch (per-device batch x processes x accumulation) in mind when comparing runs; the
# entry point prints and records it. The test `tests/train/test_accelerate.py` checks that the 2-process run
# reaches the same held-out quality as the single-process one.
#
# ## 6 · Self-check exercise
#
# Section 1 measured the adapters of the tiny model. At real scale: how many rank-8, all-linear LoRA
# adapters of **Llama-3.2-1B** take as many bytes as **one** full fine-tuned copy of it (same precision)?
# Use `shapes.shape_of` and `estimate.lora_trainable_params`, put the number in `answer` and run the
# cell. (Solutions: `solutions/08_advanced.md`.)

# %%
answer = None   # a number of adapters
print(exercises.check_adapters_per_copy(answer, preset="llama-3.2-1b", r=8))

# %% [markdown]
# ## Summary
#
# - One base, many adapters: switch per request with `set_adapter`; combining with `add_weighted_adapter`
#   is not multi-task training, measure it. An adapter costs megabytes where a copy costs gigabytes.
# - Search: a space of distributions, a sampler (random, TPE) and a pruner; fit the range to the budget,
#   choose on validation, confirm on test.
# - Custom losses override `compute_loss`; a contrastive loss shapes embeddings, a class weight rescues
#   a rare class.
# - Batch runs: a grid of notebook parameters, resumable, one CSV. Scale-out: `accelerate launch`, same code.

# %%
summary = {
    **{f"{task.split()[0]}_{row.replace(' ', '_').replace('(', '').replace(')', '')}": float(v)
       for row, r in adapter_table.iterrows() for task, v in r.items()},
    "adapter_disk_mb": float(cost.loc["adapter tone", "disk MB"]),
    "full_copy_disk_mb": float(cost.loc["full fine-tuned copy", "disk MB"]),
    "search_best": float(result.best_value), "search_default": float(default_value),
    "search_seconds": round(search_seconds, 1),
    "search_pruned": int((result.table["state"] == "PRUNED").sum()),
    **contrastive_summary, **weighted_summary,
    "seconds": round(time.perf_counter() - t_start, 1),
}
params = {**cfg.to_dict(), "adapter_steps": adapter_steps, "n_trials": n_trials, "search_steps": search_steps,
          "search_sampler": search_sampler,
          "contrastive_steps": contrastive_steps, "weighted_steps": weighted_steps, "minority_share": minority_share,
          "n_test": n_test}
print(runs.write_metrics(run_dir, summary, params=params, notebook="08_advanced"))
