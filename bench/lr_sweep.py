"""Learning rates on the real SmolLM2-135M-Instruct: full fine-tuning vs LoRA, held-out accuracy after a short run.

The chapter recommends 1e-5 to 1e-4; the course trains LoRA at 1e-3. This sweep measures both methods over
the same grid on the phrase -> tone task (notebook 02's data, chat template and answer-only labels, batch 8,
cosine schedule with 5 % warm-up, seed 0): accuracy on held-out phrases, the last logged training loss and
seconds per step. Weights stay fp32 (bf16 autocast where the CPU runs it in hardware): a bf16 copy of the
weights would round full fine-tuning's small updates away. Writes ``bench/results/lr_sweep_smollm2.csv``,
a markdown table and a chart (notebook 02 shows them).

    .venv/bin/python bench/lr_sweep.py [--steps 30] [--n-test 100]   (needs `make real-model`; about 9 min on 2 cores)
"""

import argparse
import csv
import os
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainingArguments,
    set_seed,
)

from labhelpers.evaluate import plots  # noqa: E402
from labhelpers.memory.hardware import busy_processes, busy_warning, cpu_bf16_supported  # noqa: E402
from labhelpers.paths import REAL_MODEL_DIR, REPO_ROOT  # noqa: E402
from labhelpers.train.tonetask import ToneTask  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results"
GRID = {"full": (1e-5, 1e-4, 1e-3), "lora": (1e-5, 1e-4, 1e-3, 5e-3)}


def run(method: str, lr: float, task: ToneTask, tokenizer, steps: int, bf16: bool) -> dict:
    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(REAL_MODEL_DIR, dtype=torch.float32)
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="lr-sweep-"), max_steps=steps, per_device_train_batch_size=8,
        learning_rate=lr,
        lr_scheduler_type="cosine", warmup_ratio=0.05, logging_steps=max(1, steps // 6), save_strategy="no",
        report_to="none", seed=0, data_seed=0, use_cpu=True, bf16=bf16, disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=task.train,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    _, scores = task.evaluate(model.eval())
    return {"method": method, "learning_rate": lr, "steps": steps, "accuracy": round(scores["accuracy"], 3),
            "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
            "seconds_per_step": round(seconds / steps, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--n-test", type=int, default=100)
    args = ap.parse_args()
    warning = busy_warning(busy_processes())
    if warning:
        print(warning)
    tokenizer = AutoTokenizer.from_pretrained(REAL_MODEL_DIR)
    task = ToneTask(tokenizer, n_test=args.n_test)
    bf16 = cpu_bf16_supported()
    rows = []
    for method, rates in GRID.items():
        for lr in rates:
            row = run(method, lr, task, tokenizer, args.steps, bf16)
            rows.append(row)
            print(row, flush=True)
    load = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "lr_sweep_smollm2.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"SmolLM2-135M-Instruct, phrase -> tone, {args.steps} steps of batch 8, {args.n_test} held-out phrases, "
             f"seed 0, bf16 autocast {bf16}, load average {load:.1f} on {os.cpu_count()} CPUs after the run", "",
             "| method | learning rate | accuracy | training loss first -> last | s/step |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['learning_rate']:g} | {r['accuracy']:.2f} | {r['first_loss']:.3f} -> "
              f"{r['last_loss']:.3f} | {r['seconds_per_step']:.2f} |" for r in rows]
    (RESULTS / "lr_sweep_smollm2.md").write_text("\n".join(lines) + "\n")
    fig = plots.sweep_curves(pd.DataFrame(rows), "learning_rate", "accuracy", "method", band=(1e-5, 1e-4),
                             band_label="the chapter's range", title=f"SmolLM2-135M, {args.steps} steps")
    fig.axes[0].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    fig.savefig(RESULTS / "lr_sweep_smollm2.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
