"""The course's training paths against a plain PyTorch loop, and TRL's CPU traps, on SmolLM2-135M.

In one run, on notebook 02's batches (phrase -> tone, batch 8, chat template, answer-only labels), LoRA r 8 on
every linear layer, dropout 0, eager attention, the same rows in the same order, seconds per optimizer step
(median after the first two) of:

- a plain loop (forward, backward, AdamW), bf16 weights where the CPU has bf16 hardware, else fp32;
- ``transformers.Trainer`` as notebook 02 runs it (bf16 where the hardware has it);
- ``trl.SFTTrainer`` as notebook 02 runs it (its default ``loss_type="chunked_nll"``: the lm_head runs only
  on the answer's tokens), and with ``loss_type="nll"`` (logits for every token, as Trainer computes);
- ``SFTTrainer`` with ``SFTConfig``'s own defaults on an fp32 model: ``bf16=True`` and gradient checkpointing on,
  against ``bf16=False`` and checkpointing off (what the course sets);

then the dtype of the trainable LoRA weights after ``SFTTrainer`` wraps a 4-bit (NF4) base: TRL casts them to
bf16 for QLoRA. Settings alternate (all once, then again) so passing load hits all alike. Writes
``bench/results/train_paths.{csv,md}``.

    .venv/bin/python bench/train_paths.py [--steps 8] [--repeats 2]   (needs `make real-model`; ~5 min)
"""

import argparse
import csv
import statistics
import time
import warnings

import datasets
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from trl import SFTConfig, SFTTrainer

from labhelpers.data import chat, templates
from labhelpers.memory.hardware import busy_processes, busy_warning, pick_dtype
from labhelpers.paths import REAL_MODEL_DIR, REPO_ROOT, TONE_DATA_DIR
from labhelpers.train import quantization

RESULTS = REPO_ROOT / "bench" / "results"
BATCH = 8


class Timer(TrainerCallback):
    def __init__(self):
        self.seconds, self._t = [], None

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.seconds.append(time.perf_counter() - self._t)


def lora(model):
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))


def load(dtype, quant=None):
    torch.manual_seed(0)
    kw = {"quantization_config": quant} if quant else {"attn_implementation": "eager"}
    return AutoModelForCausalLM.from_pretrained(REAL_MODEL_DIR, dtype=dtype, **kw)


def data(tokenizer, n_rows):
    raw = datasets.load_dataset("json", data_files=str(TONE_DATA_DIR / "train.jsonl"), split="train")
    raw = raw.select(range(n_rows))

    def encode(row):
        return templates.tokenize_example(tokenizer, *templates.chat_texts(tokenizer, row["phrase"], row["tone"]), 64)

    def to_messages(row):
        return {"messages": [{"role": "user", "content": row["phrase"]}, {"role": "assistant", "content": row["tone"]}]}

    return (raw.map(encode, remove_columns=raw.column_names), raw.map(to_messages, remove_columns=raw.column_names))


def plain_loop(tokenized, tokenizer, dtype, steps):
    model = lora(load(dtype))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    times = []
    for i in range(steps):
        batch = collate([tokenized[i * BATCH + j] for j in range(BATCH)])
        t0 = time.perf_counter()
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return times


def common(steps, bf16):
    # no shuffling, no saving, no logging beyond one line: the step as it is
    return dict(output_dir="/tmp/bench-train-paths", max_steps=steps, per_device_train_batch_size=BATCH,
                learning_rate=1e-3, lr_scheduler_type="cosine", warmup_ratio=0.05, logging_steps=steps,
                save_strategy="no", report_to="none", seed=0, use_cpu=True, disable_tqdm=True,
                dataloader_num_workers=0, bf16=bf16)


def trainer_path(tokenized, tokenizer, dtype, steps):
    timer = Timer()
    Trainer(model=lora(load(dtype)), args=TrainingArguments(**common(steps, dtype == torch.bfloat16)),
            train_dataset=tokenized, callbacks=[timer],
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)).train()
    return timer.seconds


def sft_path(messages, tokenizer, dtype, steps, loss_type="chunked_nll", trl_defaults=False):
    timer = Timer()
    kw = common(steps, dtype == torch.bfloat16)
    if trl_defaults:   # SFTConfig as it comes: bf16 and gradient checkpointing on
        del kw["bf16"]
    else:
        kw["gradient_checkpointing"] = False
    args = SFTConfig(**kw, assistant_only_loss=True, max_length=64, packing=False, loss_type=loss_type)
    SFTTrainer(model=lora(load(dtype)), args=args, train_dataset=messages, processing_class=tokenizer,
               callbacks=[timer]).train()
    return timer.seconds


def qlora_lora_dtype(messages, tokenizer):
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    base = load(torch.float32, quant=nf4)
    quantization.keep_4bit_unpacked_on_cpu(base)
    args = SFTConfig(**common(1, False), assistant_only_loss=True, max_length=64, gradient_checkpointing=False)
    trainer = SFTTrainer(model=base, args=args, train_dataset=messages.select(range(BATCH)),
                         processing_class=tokenizer, peft_config=LoraConfig(r=8, lora_alpha=16,
                                                                            target_modules="all-linear",
                                                                            task_type="CAUSAL_LM"))
    return sorted({str(p.dtype).replace("torch.", "") for p in trainer.model.parameters() if p.requires_grad})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per setting and repeat (2 are warm-up)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if args.steps < 3 or args.repeats < 1:
        ap.error("--steps must be at least 3 (the first two are not counted) and --repeats at least 1")
    warning = busy_warning(busy_processes())
    if warning:
        print(warning)
    warnings.filterwarnings("ignore")
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(REAL_MODEL_DIR)
    tokenizer.chat_template = chat.training_chat_template(tokenizer)
    tokenized, messages = data(tokenizer, BATCH * args.steps)
    fast = pick_dtype("cpu")
    paths = {
        f"plain loop ({str(fast)[6:]})": lambda: plain_loop(tokenized, tokenizer, fast, args.steps),
        f"Trainer, notebook 02 ({str(fast)[6:]})": lambda: trainer_path(tokenized, tokenizer, fast, args.steps),
        f"SFTTrainer, notebook 02 ({str(fast)[6:]}, chunked_nll)": lambda: sft_path(messages, tokenizer, fast,
                                                                                    args.steps),
        f"SFTTrainer, loss_type nll ({str(fast)[6:]})": lambda: sft_path(messages, tokenizer, fast, args.steps, "nll"),
        "SFTTrainer, fp32 model, bf16 off, checkpointing off": lambda: sft_path(messages, tokenizer, torch.float32,
                                                                                args.steps),
        "SFTTrainer, fp32 model, SFTConfig defaults (bf16, checkpointing)": lambda: sft_path(
            messages, tokenizer, torch.float32, args.steps, trl_defaults=True),
    }
    seconds = {}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            seconds.setdefault(name, []).extend(fn()[2:])
    plain = statistics.median(next(iter(seconds.values())))
    rows = [{"path": name, "s_per_step": round(statistics.median(s), 3),
             "vs_plain_loop": round(statistics.median(s) / plain, 2)} for name, s in seconds.items()]
    dtypes = qlora_lora_dtype(messages, tokenizer)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "train_paths.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [f"SmolLM2-135M, LoRA r 8, batch {BATCH}, {torch.get_num_threads()} threads; median of {args.repeats} x "
             f"{args.steps - 2} steps", "", "| path | s/step | vs the plain loop |", "|---|---|---|"]
    lines += [f"| {r['path']} | {r['s_per_step']} | {r['vs_plain_loop']} |" for r in rows]
    lines += ["", f"trainable LoRA weights after SFTTrainer wraps a 4-bit NF4 base: {', '.join(dtypes)}"]
    (RESULTS / "train_paths.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
