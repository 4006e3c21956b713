# %% [markdown]
# # 02 · LoRA fine-tuning: teach a base model to name the tone of a phrase
#
# The chapter's first example fine-tunes Llama-3.2-1B-Instruct with `olive finetune --method lora` on
# *phrase → tone* pairs. Here we do the same job with the libraries Olive drives underneath
# (**transformers**, **peft**, **datasets**), in the open, on a real pretrained instruct model small enough
# for a laptop CPU, SmolLM2-135M-Instruct. Notebook 09 runs the Olive command itself.
#
# **Model:** SmolLM2-135M-Instruct by default, because the lesson is transfer learning: the test phrases use
# feeling words the fine-tuning data never shows, which only a model that learned English in pretraining
# can get right. `-p model_name tiny` runs the same cells on the course's 3.7 M tiny Llama in about a minute.
#
# **Goals**
# - render training text from a template, and see exactly which tokens the loss trains;
# - measure what the base model can do before fine-tuning;
# - add LoRA adapters (`LoraConfig`, `get_peft_model`) and count what is trainable;
# - train with `Trainer`, watch the loss, and measure held-out accuracy again;
# - run the same training with TRL's `SFTTrainer` on chat-format conversations, and check that it trains exactly
#   the tokens `Trainer` trained;
# - save the adapter, reload it with `PeftModel.from_pretrained`, merge it, and check nothing changed.
#
# **Time on 2 CPU cores:** about 2 minutes on an Intel CPU with AMX bf16, 5 on a CPU without bf16, where training runs
# in fp32 (30 LoRA steps, eight more with SFTTrainer, five scoring passes); under 1 minute with `model_name tiny`.
#
# **Chapter:** Types of fine-tuning → LoRA; Example 1 (Olive CLI basic fine-tuning).

# %% tags=["parameters"]
# Parameters: papermill sets these (-p name value). The defaults are the fast workshop setting.
# model_name: a preset (smollm2-135m, the converted real model; tiny, the course's tiny Llama; qwen2.5-0.5b,
# llama-3.2-1b, phi-3.5-mini), a hub id (org/name) or a local folder written by save_pretrained.
# output_dir: empty means a new folder under runs/; an existing non-empty folder is refused.
# max_steps, min_accuracy: "auto" takes the schedule and the bar measured for this model (30 steps and 0.80 on
# smollm2-135m, 300 steps and 0.90 on the tiny Llama: labhelpers/train/workshop.py); a number sets it; a
# min_accuracy of None only reports.
model_name = "smollm2-135m"
method = "lora"            # lora, or qlora (4-bit base; notebook 03 explains it)
max_steps = "auto"
learning_rate = 1e-3
lora_r = 8
lora_alpha = 16
lora_dropout = 0.0         # 0.05-0.1 regularises long runs; on a CPU its random masks cost a third of each step
target_modules = "all-linear"  # or a list such as ["q_proj", "v_proj"]
batch_size = 8
seed = 0
output_dir = ""
sft_steps = 8              # SFTTrainer's steps on Trainer's schedule, compared loss by loss (max_steps: the whole run)
n_test = 100               # held-out phrases to score: 100 keeps each scoring pass under 20 s on SmolLM2
min_accuracy = "auto"
trust_remote_code = False  # only for models whose code you have read

# %%
# Check every parameter before any work: a wrong one stops here with a message that names it.
from labhelpers.checks import check_int
from labhelpers.models.presets import resolve_model
from labhelpers.train import workshop
from labhelpers.train.config import TrainConfig, accuracy_bar

schedule = workshop.steps("02", resolve_model(model_name), max_steps=max_steps)
cfg = TrainConfig(model_name=model_name, method=method, max_steps=schedule["max_steps"], learning_rate=learning_rate,
                  lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                  target_modules=target_modules, batch_size=batch_size, seed=seed, output_dir=output_dir,
                  trust_remote_code=trust_remote_code)
check_int("n_test", n_test, low=1)
check_int("sft_steps", sft_steps, low=2)
bar = accuracy_bar(min_accuracy, cfg, "02")
print(workshop.describe("02", cfg.model_path))
print(f"model: {cfg.model_path}\nmethod: {cfg.method}, {cfg.max_steps} steps, lr {cfg.learning_rate}, "
      f"r {cfg.lora_r}, alpha {cfg.lora_alpha}\naccuracy bar: {bar}")

# %%
import time
from pathlib import Path

import datasets
import pandas as pd
import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
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
from labhelpers.data import templates
from labhelpers.data.tone_data import TONES
from labhelpers.evaluate import generation, metrics, plots
from labhelpers.memory import hardware
from labhelpers.paths import TONE_DATA_DIR
from labhelpers.train import monitoring, quantization

set_seed(cfg.seed)
datasets.disable_progress_bars()      # the cells print what they did instead
device = hardware.pick_device()
dtype = hardware.pick_dtype(device)   # fp32 on CPUs without bf16 hardware (bf16 there is ~10x slower)
attention = hardware.pick_attention(device)   # "eager" on a CPU, "sdpa" on a GPU
run_dir = runs.prepare_output_dir(cfg.output_dir, "02_lora")
print(f"device {device}, dtype {dtype}, outputs in {run_dir}")

# %% [markdown]
# ## 1 · The task and the data
#
# The course generates its own *phrase → tone* data (`labhelpers.data.tone_data`): four tones, balanced.
# The validation and test phrases use feeling words **and** sentence frames that never occur in the
# training split, so test accuracy measures generalisation, not memory. We load the JSONL files the
# same way Olive's `--data_name json --data_files ...` does: with `datasets.load_dataset("json", ...)`.

# %%
data = datasets.load_dataset("json", data_files={s: str(TONE_DATA_DIR / f"{s}.jsonl")
                                                  for s in ("train", "validation", "test")})
print(data)
display(pd.DataFrame(data["train"][:6]))
print("train label counts:", pd.Series(data["train"]["tone"]).value_counts().to_dict())
train_words = set(" ".join(data["train"]["phrase"]).lower().split())
test_words = set(" ".join(data["test"]["phrase"]).lower().split())
print("test words never seen in training:", sorted(test_words - train_words)[:12], "...")

# %% [markdown]
# ## 2 · The prompt format, and what the loss trains
#
# The chapter writes Llama-3's chat format by hand in `--text_template`. A hand-written template must
# match, character for character, the format used at inference, or results are poor. The safer way is
# to let the tokenizer's own **chat template** write both: `apply_chat_template` for the prompt, and the
# same call with the assistant's answer for training. The answer must end with the EOS token exactly
# once, or the model never learns to stop.
#
# We train on the **response only**: prompt tokens get the label -100, which the loss skips.

# %%
tokenizer = AutoTokenizer.from_pretrained(cfg.model_path, trust_remote_code=cfg.trust_remote_code)
if tokenizer.pad_token is None:           # some real models ship without one
    tokenizer.pad_token = tokenizer.eos_token

row = data["train"][0]
prompt_text, full_text = templates.chat_texts(tokenizer, row["phrase"], row["tone"])
print("prompt (what inference sends):", repr(prompt_text))
print("full   (what training sees):  ", repr(full_text))

# The chapter's Olive --text_template, derived from this chat template: the same text for every row.
olive_style = templates.chat_text_template(tokenizer, "phrase", "tone")
assert olive_style.format(**row) == full_text, (olive_style, full_text)
print("Olive-style --text_template:   ", repr(olive_style))

# %%
example = templates.tokenize_example(tokenizer, prompt_text, full_text)
shown = templates.show_trained_tokens(tokenizer, example)
display(pd.DataFrame(shown, columns=["token", "trained"]).T)
trained = [t for t, on in shown if on]
# The answer is trained to end with EOS, once. A chat template may close the turn with whitespace after it
# (ChatML writes "<|im_end|>\n"); anything else after EOS would teach the model to go on talking.
eos_at = [i for i, t in enumerate(trained) if t == tokenizer.eos_token]
after_eos = tokenizer.convert_tokens_to_string(trained[eos_at[-1] + 1:]) if eos_at else ""
assert len(eos_at) == 1 and not after_eos.strip(), f"the answer must end with EOS once: {trained}"
print("tokens the loss sees:", trained)


# %%
def encode(row):
    prompt_text, full_text = templates.chat_texts(tokenizer, row["phrase"], row["tone"])
    return templates.tokenize_example(tokenizer, prompt_text, full_text, max_length=64)

train_ds = data["train"].map(encode, remove_columns=data["train"].column_names)
lengths = [len(x) for x in train_ds["input_ids"]]
print(f"{len(train_ds)} training examples, {min(lengths)}-{max(lengths)} tokens each")


# %% [markdown]
# ## 3 · The base model before fine-tuning
#
# The model before fine-tuning has never been trained on this task (and the tiny Llama has never seen a chat
# at all). We send it exactly what the fine-tuned model will get, the phrase alone in the chat format, with
# greedy decoding, and read the first word of its answer as the tone. Answers that name no tone count as
# wrong (and are counted separately as *unparseable*).

# %%
def load_base(method, dtype=dtype):
    """The base model, full precision for LoRA, 4-bit NF4 for QLoRA."""
    if method == "qlora":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(cfg.model_path, quantization_config=quant, dtype=dtype,
                                                     trust_remote_code=cfg.trust_remote_code)
        quantization.keep_4bit_unpacked_on_cpu(model)  # odd-sized layers on AVX-512 BF16 CPUs
        return model
    # eager attention on a CPU: sdpa's backward is slow there for short sequences (hardware.pick_attention)
    return AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=dtype, attn_implementation=attention,
                                                trust_remote_code=cfg.trust_remote_code).to(device)

test = data["test"].select(range(min(n_test, len(data["test"]))))
test_prompts = [templates.chat_texts(tokenizer, p)[0] for p in test["phrase"]]

def evaluate(model):
    answers = generation.generate_answers(model, tokenizer, test_prompts, max_new_tokens=4)
    preds = [metrics.parse_label(a, TONES) for a in answers]
    return answers, metrics.classification_scores(test["tone"], preds, TONES)

base_model = load_base(cfg.method)
base_answers, base_scores = evaluate(base_model)
print({k: round(v, 3) for k, v in base_scores.items()})
display(pd.DataFrame({"phrase": test["phrase"][:5], "expected": test["tone"][:5], "base answer": base_answers[:5]}))

# %% [markdown]
# ### Could we just ask?
#
# An instruct model follows instructions, so the fair baseline for fine-tuning is a prompt that asks for the
# tone and names the four choices. We read its answer leniently: the first tone word anywhere in it
# (`metrics.find_label`), so "The tone of this sentence is fear." counts as *fear*. A model that knows
# English but was never trained on this task answers in its own words, and often not with the tone at all.

# %%
ask = "{phrase}\n\nIs the tone of this sentence joy, sad, fear or surprise? Answer with one of those four words."
asked_prompts = [templates.chat_texts(tokenizer, ask.format(phrase=p))[0] for p in test["phrase"]]
asked_answers = generation.generate_answers(base_model, tokenizer, asked_prompts, max_new_tokens=16)
asked_scores = metrics.classification_scores(test["tone"], [metrics.find_label(a, TONES) for a in asked_answers],
                                             TONES)
print("asked, accuracy", round(asked_scores["accuracy"], 3), "| answers:",
      pd.Series([a.strip()[:40] for a in asked_answers]).value_counts().head(4).to_dict())

# %% [markdown]
# ## 4 · Add LoRA adapters
#
# LoRA freezes every weight `W` of the base and learns a low-rank update beside it:
# `W x + (alpha / r) · B A x`, with `A` of shape *r × in* and `B` of shape *out × r* (B starts at zero,
# so training starts from the base model exactly). Only `A` and `B` train. `target_modules="all-linear"`
# adapts every linear layer except the output head. `lora_dropout` drops a random share of each adapter's
# input while training; recipes use 0.05-0.1 against overfitting on long runs (notebook 07 measures it as a
# remedy). Here it is 0: drawing those random masks took a third of each SmolLM2 step on a CPU
# (`bench/train_efficiency.py`), and 30 steps on 800 phrases do not overfit.

# %%
if cfg.method == "qlora":
    # Casts norms to fp32 and enables input gradients, so a frozen 4-bit base can pass gradients to LoRA.
    base_model = prepare_model_for_kbit_training(base_model, use_gradient_checkpointing=False)

lora_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                         target_modules=cfg.target_modules, task_type="CAUSAL_LM")
set_seed(cfg.seed)   # A's random start comes from this draw; SFTTrainer below starts from the same one
model = get_peft_model(base_model, lora_config)
trainable, total = model.get_nb_trainable_parameters()
print(f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f} %)")
print("adapted modules:", sorted(model.peft_config["default"].target_modules))
assert 0 < trainable < 0.2 * total

# %% [markdown]
# ## 5 · Train with `Trainer`
#
# `Trainer` runs the loop: batches (the collator pads inputs, and pads labels with -100), the
# optimizer and schedule, and logging. `max_steps` counts optimizer steps, as in `olive finetune`. We log the
# loss at every step (`logging_steps=1`) so that the next section can compare another trainer with it, step by step.

# %%
args = TrainingArguments(
    output_dir=str(run_dir / "trainer"), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
    learning_rate=cfg.learning_rate, lr_scheduler_type="cosine", warmup_ratio=0.05, logging_steps=1,
    save_strategy="no", report_to="none", seed=cfg.seed, data_seed=cfg.seed,
    bf16=(dtype == torch.bfloat16), use_cpu=(device == "cpu"), dataloader_num_workers=0,
)
trainer = Trainer(model=model, args=args, train_dataset=train_ds,
                  data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
t0 = time.perf_counter()
train_result = trainer.train()
train_seconds = time.perf_counter() - t0
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
print(f"{train_seconds:.0f} s, {cfg.max_steps / train_seconds:.1f} steps/s, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
plots.loss_curve(trainer.state.log_history)
assert losses[-1] < losses[0], "the training loss should fall"

# %% [markdown]
# ## 6 · Held-out accuracy after fine-tuning
#
# Same prompts, same greedy decoding, same parsing. The test phrases use feeling words the fine-tune
# never showed: the model can only get them right with what the base model learned in pretraining.
# That is transfer learning.

# %%
ft_answers, ft_scores = evaluate(model)
table = pd.DataFrame({"base": base_scores, "base, asked": asked_scores, "fine-tuned": ft_scores}).round(3)
display(table)
plots.bar_compare({"base": base_scores["accuracy"], "base, asked": asked_scores["accuracy"],
                   "LoRA": ft_scores["accuracy"]}, "held-out accuracy", title=f"{len(test)} held-out phrases")
wrong = [(p, t, a) for p, t, a in zip(test["phrase"], test["tone"], ft_answers) if metrics.parse_label(a, TONES) != t]
display(pd.DataFrame(wrong[:8], columns=["phrase", "expected", "answer"]))
if bar is not None:
    assert ft_scores["accuracy"] >= bar, f"fine-tuned accuracy {ft_scores['accuracy']:.3f} < {bar}"
    assert ft_scores["accuracy"] - base_scores["accuracy"] >= 0.5, "fine-tuning should beat the base by a wide margin"
    # SmolLM2, asked, scored 0.20 on these 100 phrases (it answers "joy" for almost every one; chance is 0.25)
    assert ft_scores["accuracy"] - asked_scores["accuracy"] >= 0.5, "fine-tuning should beat asking by a wide margin"

# %% [markdown]
# ### The same run with TRL's `SFTTrainer`
#
# Most fine-tuning code today uses TRL: `SFTTrainer` with an `SFTConfig` and a `peft_config`, on a dataset of
# **conversations**, each a `messages` list of system, user and assistant turns. It does what sections 2-5 did by
# hand: it writes each conversation with the chat template, tokenizes it, masks what the loss skips, wraps the
# model with LoRA and runs `Trainer`. Five settings decide whether it trains what we trained, and fast:
# - `assistant_only_loss=True` trains only the assistant's turns, as our labels did. TRL finds them through
#   `{% generation %}` markers in the chat template. SmolLM2's and the tiny Llama's templates have none and TRL
#   adds them only to templates it knows, so SFTTrainer stops (shown below); `chat.training_chat_template` adds
#   them around each answer and its end-of-turn token, and checks that the text it renders is unchanged;
# - `SFTConfig` turns `bf16` and gradient checkpointing **on** by default: set both from the machine (bf16 only
#   where the CPU has bf16 arithmetic, checkpointing only where activations do not fit);
# - `packing` stays off: these rows are short and alike, so padding to the batch's longest wastes little. TRL's
#   packing joins conversations into one row and keeps them apart by their `position_ids`, which TRL trusts
#   only with FlashAttention. With transformers 4.57 on a CPU they do stay apart inside `SFTTrainer` (it turns
#   the cache off), but the same row fed to the model with its cache on leaks one conversation into the next
#   (`tests/train/test_trl_packing.py`; notebook 07 shows the leak);
# - on a 4-bit base (QLoRA) SFTTrainer casts the LoRA weights to bf16; on a CPU without bf16 we cast them back.
# - `loss_type`: TRL's default, `"chunked_nll"`, runs the output layer only on the trained tokens (less memory and
#   time when most tokens are prompt), in bf16 where training is bf16. Its loss equals Trainer's in fp32, but in
#   bf16 it rounds differently: measured on SmolLM2, a relative gap of 1.3e-2 by step 8 from the same start.
#   `"nll"` is the model's own loss, as `Trainer` computes it, so the step-by-step comparison below holds on both.
#
# The data is the same 800 phrases as conversations. We check that both paths train exactly the same tokens,
# example by example; then that they *are* the same training: from the same LoRA start (the same seed before the
# adapter is made), on the same batches and schedule, SFTTrainer's loss must equal Trainer's at every step. Running
# its first `sft_steps` steps shows that (a callback stops it early without changing the schedule) for a fraction
# of a second training run; `-p sft_steps <max_steps>` runs it to the end.

# %%
from trl import SFTConfig, SFTTrainer

from labhelpers.data import chat
from labhelpers.errors import expect_error


def to_messages(row):
    return {"messages": [{"role": "user", "content": row["phrase"]}, {"role": "assistant", "content": row["tone"]}]}

chat_train = data["train"].map(to_messages, remove_columns=data["train"].column_names)
print(chat_train[0]["messages"])
sft_args = SFTConfig(
    output_dir=str(run_dir / "sft"), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
    learning_rate=cfg.learning_rate, lr_scheduler_type="cosine", warmup_ratio=0.05, logging_steps=1,
    save_strategy="no", report_to="none", seed=cfg.seed, data_seed=cfg.seed, use_cpu=(device == "cpu"),
    dataloader_num_workers=0,
    assistant_only_loss=True, max_length=64, packing=False,          # what sections 2-5 trained
    bf16=(dtype == torch.bfloat16), gradient_checkpointing=False,    # SFTConfig's defaults are True and True
    loss_type="nll",                # Trainer's loss: TRL's default "chunked_nll" rounds otherwise in bf16
)
sft_tokenizer = AutoTokenizer.from_pretrained(cfg.model_path, trust_remote_code=cfg.trust_remote_code)
sft_tokenizer.pad_token = tokenizer.pad_token
err = expect_error(ValueError, SFTTrainer, model=load_base(cfg.method), args=sft_args, processing_class=sft_tokenizer,
                   train_dataset=chat_train.select(range(8)), peft_config=lora_config)
print("without {% generation %} markers:", str(err).splitlines()[0][:150])
sft_tokenizer.chat_template = chat.training_chat_template(sft_tokenizer)

sft_base = load_base(cfg.method)
set_seed(cfg.seed)   # then SFTTrainer's get_peft_model draws the LoRA start section 4 drew
sft = SFTTrainer(model=sft_base, args=sft_args, train_dataset=chat_train, processing_class=sft_tokenizer,
                 peft_config=lora_config)
lora_dtypes = sorted({str(p.dtype) for p in sft.model.parameters() if p.requires_grad})
if dtype == torch.float32 and lora_dtypes != ["torch.float32"]:   # the 4-bit cast: back to fp32 on this CPU
    for p in sft.model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
print("LoRA weights after SFTTrainer:", lora_dtypes)

# The same tokens, and the same ones trained (labels, -100 where the loss skips), in every example:
sft_rows = sft.train_dataset
same_ids = sum(a == b for a, b in zip(sft_rows["input_ids"], train_ds["input_ids"]))
same_labels = sum(a == b for a, b in zip(sft_rows["labels"], train_ds["labels"]))
print(f"{len(sft_rows)} examples; identical token ids: {same_ids}, identical labels: {same_labels}")
assert len(sft_rows) == same_ids == same_labels == len(train_ds), "SFTTrainer must train the tokens section 2 trained"

n_compare = min(sft_steps, cfg.max_steps)
# a TrainerCallback that sets control.should_training_stop at that step (labhelpers/train/monitoring.py)
sft.add_callback(monitoring.StopAtStep(n_compare, save=False))
t0 = time.perf_counter()
sft.train()
sft_seconds = time.perf_counter() - t0
sft_losses = [h["loss"] for h in sft.state.log_history if "loss" in h]
side = pd.DataFrame({"Trainer": losses[:n_compare], "SFTTrainer": sft_losses[:n_compare]},
                    index=pd.RangeIndex(1, n_compare + 1, name="step"))
side["relative gap"] = (side["SFTTrainer"] - side["Trainer"]).abs() / side["Trainer"].clip(lower=1e-3)
display(side.round(4).T)
print(f"SFTTrainer: {len(sft_losses)} steps in {sft_seconds:.0f} s; largest relative loss gap "
      f"{side['relative gap'].max():.2e}")
# Measured: a gap of 0 (both models). Other tokens, labels or batches differ from step 1; another LoRA start (seed + 1
# here: B = 0 hides it at step 1) moved the tiny Llama's losses by up to 4.6e-4 by step 8. The bar is under that.
assert len(sft_losses) == n_compare, f"SFTTrainer ran {len(sft_losses)} steps, expected {n_compare}"
if cfg.method == "lora":   # on a 4-bit base SFTTrainer rounded the LoRA start to bf16 (above): compared, not asserted
    assert side["relative gap"].max() <= 1e-4, side

# %% [markdown]
# The few lines that differ, side by side:
#
# | | `Trainer` (sections 2-5) | `SFTTrainer` |
# |---|---|---|
# | data | `chat_texts` + `tokenize_example`: ids and labels, prompt at -100 | `messages` conversations; `assistant_only_loss=True` and a template with `{% generation %}` |
# | LoRA | `get_peft_model(base_model, lora_config)` | `peft_config=lora_config` |
# | batches | `DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)` | its own collator |
# | settings | `TrainingArguments(...)` | `SFTConfig(..., max_length=64, packing=False, bf16=..., gradient_checkpointing=False)` |
#
# A conversation can hold a system prompt and several exchanges; `assistant_only_loss` trains every assistant
# turn and nothing else. Here is one, with the tokens its loss sees:

# %%
conversation = [{"role": "system", "content": "Name the tone of each phrase."},
                {"role": "user", "content": "We finally won the cup!"}, {"role": "assistant", "content": "joy"},
                {"role": "user", "content": "The lights went out and something moved."},
                {"role": "assistant", "content": "fear"}]
ids, mask = chat.assistant_mask(sft_tokenizer, conversation, sft_tokenizer.chat_template)
display(pd.DataFrame(list(zip(sft_tokenizer.convert_ids_to_tokens(ids), mask)), columns=["token", "trained"]).T)
trained_text = sft_tokenizer.decode([i for i, m in zip(ids, mask) if m])
assert trained_text.count(tokenizer.eos_token) == 2 and "joy" in trained_text and "fear" in trained_text
assert "Name the tone" not in trained_text and "cup" not in trained_text
print("trained:", repr(trained_text))

# %% [markdown]
# ### The learning rate: the chapter's 1e-5 to 1e-4, and this notebook's 1e-3
#
# The chapter recommends learning rates from 1e-5 to 1e-4; this notebook trains LoRA at 1e-3. Both are right,
# for different methods. `bench/lr_sweep.py` trained SmolLM2 on this task for 30 steps at each rate, fully and
# with LoRA (r 8, the same data and schedule; about 9 minutes on 2 cores), and scored the same held-out
# phrases. Full fine-tuning moves all 135 M weights, so small steps suffice and 1e-3 already overshoots; LoRA's
# update starts at zero (`B = 0`) and is scaled by `alpha / r`, so it needs steps about ten times larger and
# learns nothing in 30 steps at the chapter's rates. Rates scale down as models grow: for 1-8 B models LoRA
# guides often use 1e-4 to 2e-4 (more steps, larger `r`), so re-measure on yours.

# %%
from labhelpers.paths import REPO_ROOT

sweep = pd.read_csv(REPO_ROOT / "bench" / "results" / "lr_sweep_smollm2.csv")
display(sweep.pivot(index="learning_rate", columns="method", values="accuracy"))
plots.sweep_curves(sweep, x="learning_rate", y="accuracy", by="method", band=(1e-5, 1e-4),
                   band_label="the chapter's range", title="SmolLM2-135M, 30 steps (bench/lr_sweep.py)")
best = sweep.loc[sweep.groupby("method")["accuracy"].idxmax(), ["method", "learning_rate", "accuracy"]]
print(best.to_string(index=False))

# %% [markdown]
# ## 7 · Save the adapter, reload it, merge it
#
# The adapter is all you need to keep: a few hundred kilobytes beside a base model you already have.
# `PeftModel.from_pretrained` puts it back on a fresh base; `merge_and_unload` folds `B A` into `W` to
# get a plain model with no adapter overhead at inference (what notebook 06 exports to ONNX). Merge into
# **fp32** weights: the update `B A` is small beside `W`, and bf16 keeps 8 bits of each weight, so `W + B A`
# rounded to bf16 loses part of it (merged in bf16 on a CPU with bf16, 6 of 100 answers changed on one thread,
# 1 on two); a QLoRA adapter likewise goes into the full-precision base, since 4-bit weights would round it away.
# The check compares like with like: the merged model against the adapter on the same fp32 base.

# %%
adapter_dir = run_dir / "adapter"
model.save_pretrained(adapter_dir)            # adapter_config.json + adapter_model.safetensors
tokenizer.save_pretrained(adapter_dir)
adapter_mb = runs.folder_mb(adapter_dir)
base_mb = runs.folder_mb(cfg.model_path) if Path(cfg.model_path).is_dir() else float("nan")
print(f"adapter {adapter_mb:.2f} MB on disk, base model {base_mb:.2f} MB")

reloaded = PeftModel.from_pretrained(load_base(cfg.method), adapter_dir)
reloaded_answers, _ = evaluate(reloaded)
assert reloaded_answers == ft_answers, "a reloaded adapter must give the same answers"
print("reloaded adapter: identical answers on", len(ft_answers), "prompts")

fp32_adapter = PeftModel.from_pretrained(load_base("lora", torch.float32), adapter_dir)
unmerged_answers, _ = evaluate(fp32_adapter)
merged = fp32_adapter.merge_and_unload()      # the same model, B A folded into W
merged.save_pretrained(run_dir / "merged")    # safetensors
tokenizer.save_pretrained(run_dir / "merged")
merged_answers, merged_scores = evaluate(merged)
agreement = sum(a == b for a, b in zip(merged_answers, unmerged_answers)) / len(ft_answers)
print(f"merged model (fp32): accuracy {merged_scores['accuracy']:.3f} (the trained adapter: "
      f"{ft_scores['accuracy']:.3f}); same answer as the adapter on the fp32 base on {agreement:.1%}")
# Measured 100 % (both compute the same function in fp32); merged at half the scale alpha / r they agreed on 85 %,
# at twice the scale on 1 % (SmolLM2); a merge that dropped the adapter would give the base's answers.
assert agreement >= 0.99, "merging should not change the adapter's answers"

# %% [markdown]
# ## 8 · Self-check exercise
#
# LoRA with rank `r` on a linear layer of shape *in → out* adds `r · (in + out)` parameters.
# **How many parameters would LoRA with `r = 16` on only `q_proj` and `v_proj` add to this model?**
# Work it out from `base_model.config` (or by walking `named_modules()`), then put your number in
# `answer` and run the cell. (Solutions: `solutions/02_lora.md`.)

# %%
answer = None   # your number here
print(exercises.check_lora_parameters(answer, load_base("lora"), r=16, module_names=["q_proj", "v_proj"]))

# %% [markdown]
# ## Summary
#
# - A text or chat template turns rows into training text; the prompt at inference must be the same,
#   and the answer ends with EOS once. Response-only labels train the answer alone.
# - Asking the instruct model for the tone got about 0.2 (below chance: it says "joy" for almost everything).
#   LoRA trains under 2 % of SmolLM2's parameters and lifts held-out accuracy to about 0.9 in 30 steps
#   (under two minutes on a CPU).
# - The knowledge came from pretraining: the test's feeling words were never in the fine-tuning data.
# - `SFTTrainer` does sections 2-5 in a few lines on `messages` conversations. It trained exactly the same tokens
#   here once the chat template marked the assistant's turns and `SFTConfig`'s bf16, checkpointing and packing
#   defaults were set on purpose; from the same seed its loss matched Trainer's at every step compared.
# - An adapter is small, reloads exactly, and merges into a plain model for deployment (notebook 06).
#
# Next: **03 · QLoRA** (the same on a 4-bit base) and **04 · custom data**.

# %%
summary = {
    "base_accuracy": base_scores["accuracy"], "asked_accuracy": asked_scores["accuracy"],
    "finetuned_accuracy": ft_scores["accuracy"],
    "finetuned_macro_f1": ft_scores["macro_f1"], "merged_accuracy": merged_scores["accuracy"],
    "unparseable_base": base_scores["unparseable"], "train_seconds": round(train_seconds, 1),
    "steps_per_second": round(cfg.max_steps / train_seconds, 2), "final_train_loss": losses[-1],
    "trainable_params": trainable, "trainable_pct": round(100 * trainable / total, 3),
    "adapter_mb": round(adapter_mb, 3),
    "sft_steps_compared": n_compare, "sft_max_loss_gap": float(side["relative gap"].max()),
    "sft_train_seconds": round(sft_seconds, 1),
}
print(runs.write_metrics(run_dir, summary, params=cfg.to_dict(), notebook="02_lora"))
