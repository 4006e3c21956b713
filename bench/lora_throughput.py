"""LoRA training throughput: notebook 02's path (Trainer) against a plain PyTorch loop, side by side.

Both train the same LoRA config on the same tokenized batches of the tone data, from the same
start. Runs alternate (A, B, A, B, ...) so machine noise hits both alike; the script prints
samples/s of every run and the ratio within each back-to-back pair.

    .venv/bin/python bench/lora_throughput.py [--steps 60] [--repeats 3] [--batch-size 8]
"""

import argparse
import statistics
import time

import datasets
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainingArguments,
    set_seed,
)

from labhelpers.data import templates
from labhelpers.paths import BASE_MODEL_DIR, TONE_DATA_DIR


def load(tokenizer):
    data = datasets.load_dataset("json", data_files=str(TONE_DATA_DIR / "train.jsonl"))["train"]

    def encode(row):
        prompt, full = templates.chat_texts(tokenizer, row["phrase"], row["tone"])
        return templates.tokenize_example(tokenizer, prompt, full, max_length=64)

    return data.map(encode, remove_columns=data.column_names)


def lora_model():
    set_seed(0)
    base = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR, dtype=torch.float32)
    return get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                           task_type="CAUSAL_LM"))


def run_trainer(ds, collator, steps, batch_size, tmp):
    model = lora_model()
    args = TrainingArguments(output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch_size,
                             learning_rate=1e-3, lr_scheduler_type="cosine", warmup_ratio=0.05,
                             logging_steps=10, save_strategy="no", report_to="none", seed=0, use_cpu=True,
                             disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator)
    t0 = time.perf_counter()
    trainer.train()
    return steps * batch_size / (time.perf_counter() - t0)


def run_plain(ds, collator, steps, batch_size):
    model = lora_model()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(0)
    rows = ds.to_list()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(rows), (batch_size,), generator=g).tolist()
        batch = collator([rows[i] for i in idx])
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch_size / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL_DIR)
    ds = load(tokenizer)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")
    import tempfile

    results = {"notebook path (Trainer)": [], "plain PyTorch loop": []}
    with tempfile.TemporaryDirectory() as tmp:
        run_plain(ds, collator, 5, args.batch_size)  # warm-up: first-call allocations and kernels
        for r in range(args.repeats):
            results["notebook path (Trainer)"].append(run_trainer(ds, collator, args.steps, args.batch_size, tmp))
            results["plain PyTorch loop"].append(run_plain(ds, collator, args.steps, args.batch_size))
    print(f"LoRA r=8 all-linear, batch {args.batch_size}, {args.steps} steps x {args.repeats} alternating runs, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for name, vals in results.items():
        print(f"{name:<26} samples/s: " + ", ".join(f"{v:6.1f}" for v in vals)
              + f"   median {statistics.median(vals):6.1f}")
    # Each pair ran back to back, so its ratio is the least disturbed by load that comes and goes.
    pairs = [a / b for a, b in zip(*results.values())]
    print("ratio Trainer / plain loop per pair: " + ", ".join(f"{r:.2f}" for r in pairs)
          + f"   median {statistics.median(pairs):.2f}")


if __name__ == "__main__":
    main()
