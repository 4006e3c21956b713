# %% [markdown]
# # 05 · Evaluation and monitoring: real metrics, live curves, early stopping, checkpoints and resume
#
# The chapter's evaluation section names accuracy, F1, perplexity, BLEU and ROUGE, and its evaluation
# script is an empty stub. Here every metric is computed for real with a well-kept library
# (scikit-learn, sacrebleu, rouge-score), the base and fine-tuned models are compared on the **same**
# held-out rows, and training is watched while it runs: live loss curves, throughput and memory,
# TensorBoard logs, early stopping, checkpoints, and a run interrupted on purpose and resumed.
#
# **Goals**
# - validate during training, stop early and keep the best checkpoint (`EarlyStoppingCallback`,
#   `load_best_model_at_end`);
# - watch train/validation loss, samples/s, tokens/s and memory live, and find them in TensorBoard;
# - score classification with accuracy, macro and per-class F1 and a confusion matrix, counting
#   unparseable answers instead of hiding them;
# - score generation with perplexity (over exactly the answer tokens), BLEU, chrF and ROUGE;
# - resume an interrupted run from its checkpoint and get the same result;
# - turn human judgement into numbers with a rubric and check two raters agree.
#
# **Model:** SmolLM2-135M-Instruct by default: metrics are only worth reading on a model whose answers can be
# wrong in interesting ways, and a pretrained model's base-vs-tuned gap is the real one. `-p model_name tiny`
# runs the same cells on the course's tiny Llama.
#
# **Time on 2 CPU cores:** about 2 minutes on an Intel CPU with AMX bf16, 6 on a CPU without bf16, where training runs
# in fp32 (three short trainings); under 1 minute with `model_name tiny`.
#
# **Chapter:** Evaluation and monitoring (metrics, monitoring, human evaluation); Best practices → training.

# %% tags=["parameters"]
# Parameters: papermill sets these (-p name value). The defaults are the fast workshop setting.
# model_name: a preset (smollm2-135m, the converted real model; tiny, the course's tiny Llama), a hub id or a
# local folder written by save_pretrained.
# output_dir: empty means a new folder under runs/; an existing non-empty folder is refused.
# Step counts and min_accuracy: "auto" takes the schedule and the bar measured for this model
# (labhelpers/train/workshop.py; smollm2-135m: up to 40/12/4 steps, bar 0.85; tiny: 300/120/40, bar 0.90);
# a number sets it; None only reports.
model_name = "smollm2-135m"
max_steps = "auto"         # upper bound: early stopping may end the run sooner
eval_steps = "auto"        # validate (and checkpoint) every this many steps (tiny: 25)
early_stopping_patience = "auto"  # validations without improvement before stopping (SmolLM2 2, tiny 3)
learning_rate = 1e-3
lora_r = 8
lora_alpha = 16
lora_dropout = 0.0         # 0: its random masks took a third of each CPU step (notebook 02, section 4)
batch_size = 8
qa_steps = "auto"          # LoRA steps for the Q&A (generation) run
resume_steps = "auto"      # length of the interrupt-and-resume demonstration
n_test = 100               # held-out phrases to score: 100 keeps each scoring pass under 20 s on SmolLM2
n_validation = 48          # validation rows scored every eval_steps: 48 keeps a pass near 5 s on SmolLM2
n_qa_test = 30             # held-out questions scored in section 3 (of the 60 in data/qa/test.jsonl)
seed = 0
output_dir = ""
min_accuracy = "auto"

# %%
# Check the parameters first: a wrong one stops here, named.
from labhelpers.checks import check_fraction, check_int
from labhelpers.models.presets import resolve_model
from labhelpers.train import workshop
from labhelpers.train.config import TrainConfig, accuracy_bar

schedule = workshop.steps("05", resolve_model(model_name), max_steps=max_steps, qa_steps=qa_steps,
                          resume_steps=resume_steps, eval_steps=eval_steps,
                          early_stopping_patience=early_stopping_patience)
max_steps, qa_steps, resume_steps, eval_steps, early_stopping_patience = (
    schedule[k] for k in ("max_steps", "qa_steps", "resume_steps", "eval_steps", "early_stopping_patience"))
cfg = TrainConfig(model_name=model_name, max_steps=max_steps, learning_rate=learning_rate, lora_r=lora_r,
                  lora_alpha=lora_alpha, batch_size=batch_size, seed=seed, output_dir=output_dir)
for name, value, low in (("eval_steps", eval_steps, 1), ("early_stopping_patience", early_stopping_patience, 1),
                         ("qa_steps", qa_steps, 1), ("resume_steps", resume_steps, 2), ("n_test", n_test, 1),
                         ("n_validation", n_validation, 1), ("n_qa_test", n_qa_test, 1)):
    check_int(name, value, low=low)
check_fraction("lora_dropout", lora_dropout, 0.0, 0.9, "0.05-0.1 is usual")
bar = accuracy_bar(min_accuracy, cfg, "05", {k: schedule[k] for k in ("max_steps", "qa_steps")})
print(workshop.describe("05", cfg.model_path))
print(f"model {cfg.model_path}; up to {cfg.max_steps} steps, validation every {eval_steps}; accuracy bar {bar}")

# %%
import json
import time

import datasets
import matplotlib.pyplot as plt
import pandas as pd
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint

from labhelpers import runs
from labhelpers.course import exercises
from labhelpers.data import runconfig, templates
from labhelpers.data.tone_data import TONES
from labhelpers.evaluate import compare, textmetrics
from labhelpers.evaluate.metrics import UNPARSEABLE, confusion_table, find_label, parse_label
from labhelpers.evaluate.perplexity import perplexity
from labhelpers.memory import hardware
from labhelpers.paths import REPO_ROOT
from labhelpers.train import finetune, monitoring
from labhelpers.train.tonetask import ToneTask

set_seed(cfg.seed)
dtype = hardware.pick_dtype()   # bf16 where the CPU runs it in hardware (faster there), else fp32
datasets.disable_progress_bars()
run_dir = runs.prepare_output_dir(cfg.output_dir, "05_evaluation")
tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
task = ToneTask(tokenizer, n_test=n_test)   # the phrase -> tone data of notebook 02, packaged
t_start = time.perf_counter()
print("outputs in", run_dir)


# %% [markdown]
# ## 1 · Train with validation, early stopping and live monitoring
#
# Three things change from notebook 02's `Trainer` call:
#
# - `eval_strategy="steps"` scores the **validation** split every `eval_steps`; checkpoints are saved on
#   the same steps, so each evaluation has a checkpoint to return to;
# - `EarlyStoppingCallback` stops when validation loss has not improved for `patience` evaluations, and
#   `load_best_model_at_end` puts the best checkpoint's weights back (the last step is not always the best);
# - `report_to="tensorboard"` writes event files, and `labhelpers.train.monitoring.LiveMonitor` redraws the
#   curves in the notebook while training runs (in a shell it prints a line per log instead). It also
#   records samples/s, tokens/s (from `include_num_input_tokens_seen`) and memory: process RSS on a CPU,
#   peak CUDA memory on a GPU.

# %%
def lora_model():
    # eager attention on a CPU: sdpa's backward is slow there for short sequences (notebook 02, section 4)
    base = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=dtype,
                                                attn_implementation=hardware.pick_attention())
    return get_peft_model(base, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=lora_dropout,
                                           target_modules="all-linear", task_type="CAUSAL_LM"))

collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
tb_dir = run_dir / "tensorboard"
args = TrainingArguments(
    output_dir=str(run_dir / "checkpoints"), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
    learning_rate=cfg.learning_rate, lr_scheduler_type="cosine", warmup_ratio=0.05, seed=cfg.seed, data_seed=cfg.seed,
    logging_steps=10, eval_strategy="steps", eval_steps=eval_steps, save_strategy="steps", save_steps=eval_steps,
    save_total_limit=2,                      # keeps the best checkpoint and the latest
    load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
    report_to="tensorboard", logging_dir=str(tb_dir), include_num_input_tokens_seen=True,
    use_cpu=not torch.cuda.is_available(), bf16=(dtype == torch.bfloat16), disable_tqdm=True,
    dataloader_num_workers=0,
)
validation = task.tokenized("validation")
validation = validation.select(range(min(n_validation, len(validation))))
monitor = monitoring.LiveMonitor(redraw_every=2)
model = lora_model()
trainer = Trainer(model=model, args=args, train_dataset=task.train, eval_dataset=validation,
                  data_collator=collator,
                  callbacks=[monitor, EarlyStoppingCallback(early_stopping_patience=early_stopping_patience)])
trainer.remove_callback(PrinterCallback)   # the monitor shows the numbers; the printer would repeat them as dicts
t0 = time.perf_counter()
trainer.train()
train_seconds = time.perf_counter() - t0
best_step = int(trainer.state.best_model_checkpoint.rsplit("-", 1)[1])
print(f"{trainer.state.global_step} steps in {train_seconds:.0f} s; best validation loss "
      f"{trainer.state.best_metric:.4f} at step {best_step} (its weights are loaded now)")

# %%
history = monitor.frame()
display(history.tail(6).round(3))
evals = history.dropna(subset=["eval_loss"])
assert evals["eval_loss"].iloc[0] > trainer.state.best_metric, "validation loss should fall during training"
assert trainer.state.best_metric == evals["eval_loss"].min()
# load_best_model_at_end really put the best weights back: evaluating them now gives the best loss again.
# (Trainer.evaluate's own loop, without evaluate's logging: the record above stays the training's.)
reloaded_loss = trainer.evaluation_loop(trainer.get_eval_dataloader(), "reloaded best",
                                        prediction_loss_only=True).metrics["eval_loss"]
assert abs(reloaded_loss - trainer.state.best_metric) < 1e-3, (reloaded_loss, trainer.state.best_metric)
if trainer.state.global_step < cfg.max_steps:   # stopped early: `patience` validations without improvement
    assert trainer.state.global_step == best_step + early_stopping_patience * eval_steps, trainer.state.global_step
    print(f"stopped early at step {trainer.state.global_step}: {early_stopping_patience} validations after the best")
else:
    print(f"ran all {cfg.max_steps} steps: fewer than {early_stopping_patience} validations without improvement "
          f"came after the best (step {best_step})")
print(f"throughput {history['samples_per_s'].iloc[-1]:.1f} samples/s, {history['tokens_per_s'].iloc[-1]:.0f} tokens/s; "
      f"memory {history['memory_mb'].max():.0f} MB")

# %% [markdown]
# Read the curve before trusting the stop. SmolLM2's validation loss is lowest around step 25 and then rises
# for a while (its training loss is near zero by then: it starts to memorise), so with patience 2 the run stops
# two validations later, at step 35 of 40, and keeps step 25's weights. Patience trades steps for certainty:
# with `-p early_stopping_patience 4 -p max_steps 60` it runs on, and the loss may come part of the way back.
# The tiny Llama keeps improving almost to the end of its 300 steps.
#
# The same numbers went to TensorBoard. Start it with `tensorboard --logdir runs/` (from the project
# folder, in the course's environment) and open the address it prints. Here we read the event files
# back with TensorBoard's own reader, to show what is in them:

# %%
scalars = monitoring.read_scalars(tb_dir)
print(sorted(scalars))
print("tensorboard --logdir", tb_dir)
assert len(scalars["eval/loss"]) == len(evals) and len(scalars["train/loss"]) == history["loss"].notna().sum()

# %% [markdown]
# ## 2 · Classification: base vs fine-tuned on the same held-out rows
#
# `compare.compare` runs one evaluation function on each model and returns one table.
# The answer's first word is the predicted label; anything that is not a label is counted as
# **unparseable** (and wrong) rather than guessed. Accuracy alone hides which classes fail: macro F1
# averages the per-class F1 scores, and the confusion matrix shows which tone is mistaken for which.

# %%
base_model = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=dtype)
cls_table, cls_answers = compare.compare({"base": base_model, "fine-tuned": trainer.model}, task.evaluate)
display(cls_table.round(3))
preds = {name: [parse_label(a, task.labels) for a in answers] for name, answers in cls_answers.items()}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for ax, name in zip(axes, preds):
    cm = confusion_table(task.test["tone"], preds[name], task.labels)
    ax.imshow(cm.values, cmap="Blues")
    ax.set_xticks(range(len(cm.columns)), cm.columns, rotation=30)
    ax.set_yticks(range(len(cm.index)), cm.index)
    for (i, j), v in pd.DataFrame(cm.values).stack().items():
        ax.text(j, i, v, ha="center", va="center")
    ax.set_title(f"{name}: rows true, columns predicted")
fig.tight_layout()
display(compare.largest_differences(task.test["phrase"], task.test["tone"], preds["base"], preds["fine-tuned"],
                                       lambda p, r: float(p == r), names=("base", "fine-tuned"), n=4))
for metric in ("accuracy", "macro_f1"):
    assert cls_table.loc["fine-tuned", metric] > cls_table.loc["base", metric] + 0.3, metric
if bar is not None:
    assert cls_table.loc["fine-tuned", "accuracy"] >= bar, cls_table

# %% [markdown]
# ## 3 · Generation: perplexity, BLEU, chrF, ROUGE
#
# For free text there is no single right label. We fine-tune on notebook 04's Q&A data
# (`data/qa`, `input`/`output` rows, run from `configs/qa_lora.yaml`) and score the held-out questions:
#
# - **perplexity**: `exp` of the mean negative log-likelihood of the reference answers, over exactly the
#   answer tokens (prompt tokens masked) and weighted by token, not by batch. Lower is better; it needs
#   no generation, only the model's probabilities;
# - **BLEU** (n-gram precision with a brevity penalty) and **chrF** (character n-gram F-score), both
#   from sacrebleu, 0-100;
# - **ROUGE-1/2/L** (rouge-score): word overlap and longest common subsequence, the summarisation
#   staple; **exact match** next to them keeps everyone honest.

# %%
qa_cfg = runconfig.load_config(REPO_ROOT / "configs" / "qa_lora.yaml").for_tokenizer(tokenizer)  # its chat template
qa_raw = json.loads(json.dumps(qa_cfg.raw))
qa_raw["input_model"]["model_path"] = cfg.model_path
qa_raw["passes"]["lora"]["training_args"].update(max_steps=qa_steps, save_steps=qa_steps, seed=cfg.seed)
qa_raw["passes"]["lora"]["lora_dropout"] = lora_dropout  # as for the tone run
qa_raw["lab"].update(eval_samples=8, max_new_tokens=8)  # the run's own check; this section scores n_qa_test below
qa_raw["data_configs"][0]["load_dataset_config"]["data_files"] = qa_cfg.train_files
qa_raw["output_dir"] = str(run_dir / "qa_run")
qa_result = finetune.run(runconfig.from_dict(qa_raw, source="qa run"), log=None)
template = qa_cfg.text_template
qa_test = datasets.load_dataset("json", data_files=str(REPO_ROOT / "data" / "qa" / "test.jsonl"))["train"]
qa_test = qa_test.select(range(min(n_qa_test, len(qa_test)))).to_list()
qa_refs = [r["output"] for r in qa_test]
qa_encoded = [templates.encode(template, tokenizer, r, qa_cfg.max_seq_len) for r in qa_test]

def evaluate_generation(model):
    answers = finetune.answers(model, tokenizer, template, qa_test, max_new_tokens=12)
    return answers, {"perplexity": perplexity(model, qa_encoded, tokenizer)["perplexity"],
                     "bleu": textmetrics.bleu(answers, qa_refs), "chrf": textmetrics.chrf(answers, qa_refs),
                     **textmetrics.rouge(answers, qa_refs), "exact_match": textmetrics.exact_match(answers, qa_refs)}

gen_table, gen_answers = compare.compare({"base": base_model, "fine-tuned": qa_result.model}, evaluate_generation)
display(gen_table.round(3))
with pd.option_context("display.max_colwidth", 60):
    display(compare.largest_differences([r["input"] for r in qa_test], qa_refs, gen_answers["base"],
                                        gen_answers["fine-tuned"], lambda p, r: textmetrics.rouge([p], [r])["rougeL"],
                                        names=("base", "fine-tuned"), n=4))
better = {m: (gen_table.loc["fine-tuned", m] < gen_table.loc["base", m]) if m == "perplexity"
          else (gen_table.loc["fine-tuned", m] > gen_table.loc["base", m]) for m in gen_table.columns}
print("fine-tuned better on:", better)
assert all(better.values()), better


# %% [markdown]
# Perplexity dropped by a factor of `base / fine-tuned`: the fine-tuned model puts far more probability
# on the reference answers. BLEU punishes short answers harshly (few 4-grams), which is why chrF and
# ROUGE sit beside it; none of them knows whether an answer is *true*.
#
# ## 4 · Interrupt a run, then resume it
#
# Long runs get interrupted (a closed laptop, a preempted GPU). With checkpoints, nothing is lost:
# `trainer.train(resume_from_checkpoint=...)` restores the weights, optimizer, scheduler, RNG state
# and data position. We stop a run on purpose after half its steps (`monitoring.StopAtStep`, which saves
# a checkpoint first, as a crash right after a save would leave it), resume it in a **new** `Trainer`,
# and compare with the same run done in one go. From a shell, `python -m labhelpers finetune --config
# run.yaml --resume` does the same for a config run.

# %%
def short_trainer(out, callbacks=()):
    set_seed(cfg.seed)
    short_args = TrainingArguments(
        output_dir=str(out), max_steps=resume_steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, seed=cfg.seed, data_seed=cfg.seed, logging_steps=resume_steps // 2,
        save_strategy="steps", save_steps=resume_steps // 2, report_to="none",
        use_cpu=not torch.cuda.is_available(), bf16=(dtype == torch.bfloat16), disable_tqdm=True,
        dataloader_num_workers=0)
    t = Trainer(model=lora_model(), args=short_args, train_dataset=task.train, data_collator=collator,
                callbacks=list(callbacks))
    t.remove_callback(PrinterCallback)
    return t

whole = short_trainer(run_dir / "resume_whole")
whole_loss = whole.train().training_loss
cut = short_trainer(run_dir / "resume_cut", [monitoring.StopAtStep(resume_steps // 2)])
cut.train()
print(f"interrupted at step {cut.state.global_step}; checkpoints: "
      f"{sorted(p.name for p in (run_dir / 'resume_cut').glob('checkpoint-*'))}")
resumed = short_trainer(run_dir / "resume_cut")
resumed.train(resume_from_checkpoint=get_last_checkpoint(str(run_dir / "resume_cut")))
last = {name: [h["loss"] for h in t.state.log_history if "loss" in h][-1] for name, t in
        (("uninterrupted", whole), ("interrupted + resumed", resumed))}
print(last)
assert resumed.state.global_step == resume_steps
assert abs(last["uninterrupted"] - last["interrupted + resumed"]) < 1e-4, last

# %% [markdown]
# ## 5 · Human evaluation and business metrics
#
# Automatic metrics are proxies. Before a model ships, people read its answers and score them against
# a **rubric**: a few named criteria on a fixed scale, weighted by what matters for the product. Two
# raters scoring the same answers should agree; Cohen's kappa measures how much better than chance they
# do (quadratic weights, since 4 vs 5 is a smaller disagreement than 1 vs 5).
#
# The answers rated here are this run's own: the base model's and the fine-tuned model's answers to the first
# four held-out questions of section 3. A notebook that runs unattended has no person to rate them, so **two
# raters written as rules stand in**, and each function below is the instruction sheet a human rater would get.
# They read answers differently, as two people do: rater A is strict (the reference's tone word, in one short
# "It means ..." sentence), rater B lenient (credit for the words shared with the reference, ROUGE-L, and for
# any short answer). Then rate the same eight answers yourself (`my_ratings`, below) and see how far you agree
# with rater A.
#
# Business metrics sit on top: cost per thousand answers, latency a user waits, the share of answers a
# human must correct. The last of these is what the rubric's threshold estimates.

# %%
def rater_a(answer, reference):
    """Strict: the reference's tone word, in one short sentence of the reference's form."""
    tone, words = find_label(answer, TONES), answer.split()
    return {"correct": 5 if tone == find_label(reference, TONES) else (2 if tone == UNPARSEABLE else 1),
            "clear": 5 if answer.startswith("It means") and answer.endswith(".") else 2,
            "concise": 5 if len(words) <= 4 else (3 if len(words) <= 10 else 1)}

def rater_b(answer, reference):
    """Lenient: credit for the words shared with the reference, and for anything short."""
    return {"correct": 1 + round(4 * textmetrics.rouge([answer], [reference])["rougeL"]),
            "clear": 4 if answer[:1].isupper() else 3, "concise": 5 if len(answer.split()) <= 12 else 2}

picked = [(m, i) for m in ("base", "fine-tuned") for i in range(4)]
rated = [gen_answers[m][i].strip() for m, i in picked]
references = [qa_refs[i] for _, i in picked]
ratings_a = [rater_a(a, r) for a, r in zip(rated, references)]
ratings_b = [rater_b(a, r) for a, r in zip(rated, references)]
weights = {"correct": 3, "clear": 1, "concise": 1}   # a wrong answer costs more than a long one
scored = compare.rubric_scores(ratings_a, weights)
scored.insert(0, "model", [m for m, _ in picked])
scored.insert(1, "answer", rated)
scored["score, rater B"] = compare.rubric_scores(ratings_b, weights)["score"]
with pd.option_context("display.max_colwidth", 50):
    display(scored.round(2))
kappa = compare.rater_agreement([r["correct"] for r in ratings_a], [r["correct"] for r in ratings_b])
by_model = scored.groupby("model")[["score", "score, rater B"]].mean()
display(by_model.round(2))
needs_fix = (scored.loc[scored["model"] == "fine-tuned", "score"] < 0.6).mean()
print(f"agreement on 'correct' (weighted kappa): {kappa:.2f}; "
      f"fine-tuned answers below 0.6 (rater A) that a person must fix: {needs_fix:.0%}")
# Both raters must prefer the fine-tuned answers by a clear margin (the effect the section rates).
assert (by_model.loc["fine-tuned"] - by_model.loc["base"] >= 0.3).all(), by_model

# %% [markdown]
# Where the two raters disagree, read the answer. A wrong tone word in the reference's own form (*"It means
# joy."* for a sad word) shares most of its words with the reference, so rater B's overlap rule credits it while
# rater A gives it the lowest score: the gap between a text metric and a reader's judgement, and the reason a
# rubric names *correct* apart from *clear*.

# %%
my_ratings = None   # your "correct" score, 1-5, for each of the eight answers above, in order
if my_ratings is not None:
    mine = compare.rater_agreement(list(my_ratings), [r["correct"] for r in ratings_a])
    print(f"you vs rater A on 'correct' (weighted kappa): {mine:.2f}")

# %% [markdown]
# ## 6 · Self-check exercise
#
# Look at the validation losses in section 1 (`history`, or the curve). **At which step was the
# validation loss lowest**, that is, which checkpoint did `load_best_model_at_end` load? Put the step in
# `answer` and run the cell. (Solutions: `solutions/05_evaluation.md`.)

# %%
answer = None   # a step number
print(exercises.check_best_step(answer, trainer.state.log_history))

# %% [markdown]
# ## Summary
#
# - Validate while training; save checkpoints on the same steps; stop early and load the best.
# - Watch loss, throughput and memory live, and keep them (TensorBoard) to compare runs later.
# - Classification: accuracy, macro F1, per-class F1 and the confusion matrix; unparseable answers
#   counted, never guessed. Generation: perplexity over the answer tokens, BLEU, chrF, ROUGE, exact match.
# - An interrupted run resumed from its checkpoint ends where the uninterrupted one does.
# - Human rubrics with a measured inter-rater agreement, and business metrics, decide what ships. Here two
#   raters written as rules rated the model's own answers; with people, each rater reads the same sheet.

# %%
summary = {"steps_run": trainer.state.global_step, "best_step": best_step, "best_eval_loss": trainer.state.best_metric,
           "train_seconds": round(train_seconds, 1), "samples_per_s": float(history["samples_per_s"].iloc[-1]),
           "peak_memory_mb": float(history["memory_mb"].max()), "rater_kappa": kappa,
           "resume_loss_difference": abs(last["uninterrupted"] - last["interrupted + resumed"]),
           "seconds": round(time.perf_counter() - t_start, 1)}
for name, table in (("cls", cls_table[["accuracy", "macro_f1", "unparseable"]]), ("gen", gen_table)):
    for model_name, row in table.iterrows():
        for metric, value in row.items():
            summary[f"{name}_{metric}_{model_name.replace('-', '')}"] = float(value)
params = {**cfg.to_dict(), "eval_steps": eval_steps, "early_stopping_patience": early_stopping_patience,
          "qa_steps": qa_steps, "resume_steps": resume_steps, "n_test": n_test,
          "n_validation": n_validation, "n_qa_test": n_qa_test}
print(runs.write_metrics(run_dir, summary, params=params, notebook="05_evaluation"))
