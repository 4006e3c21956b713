"""Slow training, measured: tokens/s for pad-to-max vs dynamic padding vs grouping by length vs packing,
and peak memory with and without gradient checkpointing, in one run on the embedded model.

Rows have varied lengths (spans of the base model's own pretraining text, 16 to `max_len` tokens,
a spread like real instruction data), so the strategies differ more than on notebook 07's short
tone rows. Every strategy trains the same rows with the same LoRA model; rounds alternate the
strategies (A, B, C, D, A, B, ...) so machine noise hits all alike, and ratios to pad-to-max are
printed per round. Peak memory is the RSS high-water mark of one step at batch x max_len.

    .venv/bin/python bench/padding_speed.py [--rows 96] [--batch-size 16] [--max-len 256] [--rounds 2]
"""

import argparse
import random
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, DataCollatorWithFlattening

from labhelpers.memory import measure
from labhelpers.models.corpus import generate_corpus
from labhelpers.paths import BASE_MODEL_DIR


def varied_rows(tokenizer, n, max_len, seed=0):
    """n training rows whose lengths spread from 16 to max_len tokens (labels on the second half)."""
    rng = random.Random(seed)
    ids = tokenizer(" ".join(generate_corpus(n_docs=400, seed=seed)), add_special_tokens=False)["input_ids"]
    rows = []
    for _ in range(n):
        length = int(16 + (max_len - 16) * rng.random() ** 2)   # many short rows, a long tail, as in chat data
        start = rng.randrange(0, len(ids) - length)
        x = ids[start:start + length]
        rows.append({"input_ids": x, "attention_mask": [1] * length,
                     "labels": [-100] * (length // 2) + x[length // 2:]})
    return rows


def lora_model(checkpointing=False):
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR, dtype=torch.float32)
    if checkpointing:
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        m.enable_input_require_grads()
    return get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                        task_type="CAUSAL_LM"))


def batches_for(strategy, rows, tokenizer, batch_size, max_len):
    pad = DataCollatorForSeq2Seq(tokenizer, padding="max_length", max_length=max_len, label_pad_token_id=-100)
    dyn = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    if strategy == "pad to max":
        order, coll = rows, pad
    elif strategy == "dynamic padding":
        order, coll = rows, dyn
    elif strategy == "grouped by length":
        order, coll = sorted(rows, key=lambda r: len(r["input_ids"])), dyn
    else:
        order, coll = rows, DataCollatorWithFlattening()
    return [coll(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]


def train_seconds(model, batches):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    t0 = time.perf_counter()
    for b in batches:
        model(**b, use_cache=False).loss.backward()   # use_cache=False: packed rows must not see each other
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL_DIR)
    rows = varied_rows(tokenizer, args.rows, args.max_len)
    real = sum(len(r["input_ids"]) for r in rows)
    lengths = sorted(len(r["input_ids"]) for r in rows)
    print(f"torch threads {torch.get_num_threads()}; {len(rows)} rows, {real} tokens, lengths min "
          f"{lengths[0]} median {lengths[len(lengths) // 2]} max {lengths[-1]}; batch {args.batch_size}")
    strategies = ["pad to max", "dynamic padding", "grouped by length", "packing"]
    batches = {s: batches_for(s, rows, tokenizer, args.batch_size, args.max_len) for s in strategies}
    model = lora_model()
    train_seconds(model, batches["dynamic padding"][:1])   # warm-up
    speeds = {s: [] for s in strategies}
    for k in range(args.rounds):
        line = []
        for s in strategies:
            speeds[s].append(real / train_seconds(model, batches[s]))
        for s in strategies:
            line.append(f"{s} {speeds[s][-1]:.0f} tok/s ({speeds[s][-1] / speeds['pad to max'][-1]:.1f}x)")
        print(f"round {k + 1}: " + "; ".join(line))
    print("\nmedian real tokens/s and ratio to pad-to-max:")
    for s in strategies:
        pad_share = 1 - real / sum(b["input_ids"].numel() for b in batches[s])
        ratios = [a / b for a, b in zip(speeds[s], speeds["pad to max"])]
        print(f"  {s:18s} {statistics.median(speeds[s]):7.0f} tok/s  x{statistics.median(ratios):4.1f}  "
              f"(pad share {pad_share:.0%})")

    measure.fix_malloc_thresholds()
    print(f"\npeak RSS growth of one LoRA step at batch {args.batch_size} x {args.max_len} tokens:")
    peaks = {}
    for label, ckpt in (("without gradient checkpointing", False), ("with gradient checkpointing", True)):
        m = lora_model(checkpointing=ckpt)
        m.train()
        x = torch.randint(3, m.config.vocab_size, (args.batch_size, args.max_len),
                          generator=torch.Generator().manual_seed(0))
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)

        def step():
            m(input_ids=x, labels=x, use_cache=False).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        _, peak = measure.measure_peak(step)
        peaks[label] = peak
        print(f"  {label:32s} {peak.growth_mb:6.0f} MB  {peak.seconds:5.2f} s  ({peak.how})")
    a, b = peaks["without gradient checkpointing"], peaks["with gradient checkpointing"]
    print(f"  checkpointing: {b.growth_mb / a.growth_mb:.0%} of the memory, {b.seconds / a.seconds:.2f}x the time")


if __name__ == "__main__":
    main()
