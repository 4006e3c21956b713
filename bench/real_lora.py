"""LoRA on the real SmolLM2-135M-Instruct: ``python -m labhelpers finetune`` against a plain PyTorch loop.

Both train LoRA (r 8, the 7 projections, batch 8, lr 1e-3) from ``configs/smollm2_tone_lora.yaml`` on
rows encoded the same way (``templates.encode``, answer-only labels), padded the same way, in the same dtype
(the config's ``lab.precision``: bf16 where the CPU computes it) with eager attention. Runs alternate
(CLI, loop, CLI, loop) so load that comes and goes hits both; the CLI's seconds per step come from its own
``metrics.json`` (``train_seconds / steps``: Trainer.train() with its logging and final save), the loop's
from a timer around its steps. Prints both and the ratio within each back-to-back pair.

    .venv/bin/python bench/real_lora.py [--steps 12] [--repeats 2]      (needs `make real-model`)
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, set_seed

from labhelpers.data import records, templates
from labhelpers.data.runconfig import load_config
from labhelpers.memory.hardware import busy_processes, busy_warning, pick_attention
from labhelpers.paths import REPO_ROOT
from labhelpers.train.finetune import training_dtype

CONFIG = REPO_ROOT / "configs" / "smollm2_tone_lora.yaml"


def run_cli(steps: int, tmp: Path) -> dict:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["passes"]["lora"]["training_args"].update(max_steps=steps, save_steps=steps, logging_steps=steps)
    raw["data_configs"][0]["load_dataset_config"]["data_files"] = str(REPO_ROOT / "data" / "tone" / "train.jsonl")
    raw["lab"]["eval_samples"] = 8  # generation after training is not what is timed
    out = tmp / f"cli-{time.monotonic_ns()}"
    raw["output_dir"] = str(out)
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    subprocess.run([sys.executable, "-m", "labhelpers", "finetune", "--config", str(cfg)], check=True,
                   capture_output=True, text=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"s_per_step": metrics["train_seconds"] / metrics["steps"], "step": metrics["seconds_per_step"]}


def run_loop(steps: int, rows: list[dict], tokenizer) -> dict:
    cfg = load_config(CONFIG)
    set_seed(0)
    # the CLI's dtype and attention: bf16 weights where the CPU computes bf16 (lab.precision auto), eager attention
    model = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=training_dtype(cfg.lab["precision"], "cpu"),
                                                 attn_implementation=pick_attention("cpu"))
    lc = cfg.lora
    model = get_peft_model(model, LoraConfig(r=lc["r"], lora_alpha=lc["alpha"], lora_dropout=lc["lora_dropout"],
                                             target_modules=lc["target_modules"], task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=templates.IGNORE_INDEX,
                                      return_tensors="pt")
    g = torch.Generator().manual_seed(0)
    tokens, times = 0, []
    t0 = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        idx = torch.randint(len(rows), (8,), generator=g).tolist()
        batch = collator([rows[i] for i in idx])
        tokens += int(batch["attention_mask"].sum())
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return {"s_per_step": (time.perf_counter() - t0) / steps, "step": statistics.median(times[1:]),
            "tokens": tokens / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    busy = busy_warning(busy_processes())
    if busy:
        print(f"warning: {busy}")
    tokenizer = AutoTokenizer.from_pretrained(load_config(CONFIG).model_path)
    cfg = load_config(CONFIG).for_tokenizer(tokenizer)   # the model's chat template writes the rows, as in the CLI
    rows = [templates.encode(cfg.text_template, tokenizer, r, cfg.max_seq_len)
            for r in records.read_records(REPO_ROOT / "data" / "tone" / "train.jsonl").rows]
    names = ("python -m labhelpers finetune", "plain PyTorch loop")
    results = {kind: {n: [] for n in names} for kind in ("s_per_step", "step")}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            cli = run_cli(args.steps, Path(tmp))
            loop = run_loop(args.steps, rows, tokenizer)
            for name, res in zip(names, (cli, loop)):
                for kind in results:
                    results[kind][name].append(res[kind])
    print(f"SmolLM2-135M LoRA r=8, batch 8 x ~{loop['tokens'] / 8:.0f} tokens, {args.steps} steps x {args.repeats} "
          f"alternating runs, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{str(training_dtype(load_config(CONFIG).lab['precision'], 'cpu'))[6:]}")
    for kind, title in (("s_per_step", "wall time of the training call / steps (setup and final save included)"),
                        ("step", "median optimizer step after the first (forward, backward, update)")):
        print(f"-- {title}")
        for name, vals in results[kind].items():
            print(f"{name:<30} s/step: " + ", ".join(f"{v:5.2f}" for v in vals)
                  + f"   median {statistics.median(vals):5.2f}")
        pairs = [a / b for a, b in zip(*results[kind].values())]
        print("ratio CLI / plain loop per pair: " + ", ".join(f"{r:.3f}" for r in pairs)
              + f"   median {statistics.median(pairs):.3f}")


if __name__ == "__main__":
    main()
