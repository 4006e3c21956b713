"""Evaluation speed: batched greedy generation against batch 1, and scoring the labels in one forward pass.

The notebooks score a classifier by generating its answer (``labhelpers.evaluate.generation.generate_answers``:
greedy, left padding, a batch stops when every row has written EOS) and parsing the label out of it. This
bench times that loop at batch 1, 8 and 32 on the tone test prompts, for the tiny Llama and SmolLM2-135M,
each after a short LoRA run (a plain loop, so answers end at EOS as a tuned model's do) and as the base
model writing a longer open answer (where decoding, not the prompt, dominates). It reports prompts/s,
new tokens/s (tokens up to and including EOS; the padding a finished row keeps computing is not counted)
and whether every batch size gives batch 1's answers.

Label scoring is the other way to classify: one forward pass over ``prompt + label + end-of-turn`` for each
of the four labels, and the label with the highest summed log-probability wins. It never produces an
unparseable answer, and it always picks some label, which can hide a model that has not learned the format:
the bench prints how often it agrees with the generated label.

    .venv/bin/python bench/eval_speed.py [--prompts 64] [--repeats 2]   (needs `make real-model`; ~4 min)

Writes ``bench/results/eval_speed.{csv,md}``.
"""

import argparse
import csv
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

from labhelpers.data.templates import chat_texts
from labhelpers.evaluate.generation import generate_answers
from labhelpers.evaluate.metrics import parse_label
from labhelpers.memory.hardware import busy_processes, busy_warning
from labhelpers.paths import BASE_MODEL_DIR, REAL_MODEL_DIR, REPO_ROOT
from labhelpers.train.tonetask import ToneTask

RESULTS = REPO_ROOT / "bench" / "results"
#: model name -> (folder, LoRA steps, learning rate): the steps that reach notebook 02's accuracy on each
MODELS = {"tiny": (BASE_MODEL_DIR, 150, 5e-3), "smollm2-135m": (REAL_MODEL_DIR, 40, 2e-3)}
BATCH_SIZES = (1, 8, 32)
#: (label, model state, max_new_tokens): 4 is the notebooks' classification setting
CASES = [("tone label, tuned", "tuned", 4), ("open answer, base", "base", 16)]


def tune(model, tokenizer, steps: int, lr: float):
    """A short LoRA run on the tone task (batch 8, answer-only labels), in a plain loop."""
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    train = ToneTask(tokenizer, n_test=1).train.shuffle(seed=0)
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for i in range(steps):
        batch = collate([train[(i * 8 + j) % len(train)] for j in range(8)])
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


def new_tokens(tokenizer, answers_ids: list[list[int]]) -> int:
    """Tokens a row really wrote: up to and including its first EOS."""
    n = 0
    for ids in answers_ids:
        n += ids.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in ids else len(ids)
    return n


def generated_ids(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """The new token ids of generate_answers' loop at batch 1 (to count them; the text is compared separately)."""
    out = []
    for p in prompts:
        enc = tokenizer(p, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        out.append(ids[0, enc["input_ids"].shape[1]:].tolist())
    return out


def score_labels(model, tokenizer, phrases: list[str], labels, batch_size: int = 32) -> list[str]:
    """The label whose ``answer + end of turn`` has the highest summed log-probability after each prompt."""
    rows = []   # (prompt length, full ids) per phrase and label
    for phrase in phrases:
        for label in labels:
            prompt, full = chat_texts(tokenizer, phrase, label)
            p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            rows.append((len(p_ids), tokenizer(full, add_special_tokens=False)["input_ids"]))
    scores = []
    pad = tokenizer.pad_token_id
    for i in range(0, len(rows), batch_size * len(labels)):
        chunk = rows[i:i + batch_size * len(labels)]
        width = max(len(ids) for _, ids in chunk)
        ids = torch.tensor([r + [pad] * (width - len(r)) for _, r in chunk])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for _, r in chunk])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for row, (start, r) in enumerate(chunk):
            # token t is predicted at position t - 1; only the answer's tokens (and what ends it) count
            scores.append(sum(logp[row, t - 1, r[t]].item() for t in range(start, len(r))))
    per = torch.tensor(scores).view(len(phrases), len(labels))
    return [labels[j] for j in per.argmax(-1).tolist()]


def timed(fn, repeats: int):
    """Median seconds of ``repeats`` calls, and the last result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64, help="tone test prompts answered per timing")
    ap.add_argument("--repeats", type=int, default=2, help="timings per setting (median)")
    args = ap.parse_args()
    if args.prompts < 1 or args.repeats < 1:
        ap.error("--prompts and --repeats must be at least 1")
    warning = busy_warning(busy_processes())
    if warning:
        print(warning)
    rows = []
    for name, (folder, steps, lr) in MODELS.items():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        task = ToneTask(tokenizer, n_test=args.prompts)
        phrases, truth = list(task.test["phrase"]), list(task.test["tone"])
        for case, state, max_new in CASES:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
            if state == "tuned":
                model = tune(model, tokenizer, steps, lr)
            n_new = new_tokens(tokenizer, generated_ids(model, tokenizer, task.prompts, max_new))
            reference = None
            for bs in BATCH_SIZES:
                sec, answers = timed(lambda: generate_answers(model, tokenizer, task.prompts, max_new_tokens=max_new,
                                                              batch_size=bs), args.repeats)
                reference = reference or answers
                same = sum(a == b for a, b in zip(answers, reference)) / len(answers)
                preds = [parse_label(a, task.labels) for a in answers]
                rows.append({"model": name, "case": case, "method": f"generate, batch {bs}", "seconds": round(sec, 2),
                             "prompts_per_s": round(len(answers) / sec, 1), "new_tokens_per_s": round(n_new / sec, 1),
                             "same_as_batch_1": round(same, 3),
                             "accuracy": round(sum(p == t for p, t in zip(preds, truth)) / len(truth), 3)})
            if state == "tuned":
                sec, scored = timed(lambda: score_labels(model, tokenizer, phrases, task.labels), args.repeats)
                gen = [parse_label(a, task.labels) for a in reference]
                rows.append({"model": name, "case": case, "method": "score the 4 labels, batch 32",
                             "seconds": round(sec, 2), "prompts_per_s": round(len(scored) / sec, 1),
                             "new_tokens_per_s": "", "same_as_batch_1": round(
                                 sum(a == b for a, b in zip(scored, gen)) / len(gen), 3),
                             "accuracy": round(sum(p == t for p, t in zip(scored, truth)) / len(truth), 3)})
    for r in rows:   # speed-up against batch 1 of the same model and case
        one = next(x for x in rows if x["model"] == r["model"] and x["case"] == r["case"]
                   and x["method"] == "generate, batch 1")
        r["vs_batch_1"] = round(one["seconds"] / r["seconds"], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "eval_speed.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [f"{args.prompts} tone test prompts, fp32, {torch.get_num_threads()} threads, median of {args.repeats}; "
             "'same' = answers equal to batch 1's (for label scoring: its label equals the generated one)", "",
             "| model | case | method | s | prompts/s | new tokens/s | vs batch 1 | same | accuracy |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['case']} | {r['method']} | {r['seconds']} | {r['prompts_per_s']} | "
              f"{r['new_tokens_per_s']} | {r['vs_batch_1']}x | {r['same_as_batch_1']} | {r['accuracy']} |"
              for r in rows]
    (RESULTS / "eval_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
