"""One job with every core's threads vs two jobs at once with half each: the choice `make test` makes for nbval.

Each job does what a notebook spends its time on, on SmolLM2-135M (LoRA, fp32, eager attention): LoRA training
steps at the notebooks' batch (8 x 48 tokens) and greedy generation at batch 1 (32 new tokens). First one job
alone with all the cores' threads, then two of the same jobs started together with half the threads each.
Throughput is work done per second of wall time; the ratio is two jobs' over one job's, measured in one run.

    .venv/bin/python bench/parallel_jobs.py            # about 2 minutes on 2 cores
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def work(steps: int, tokens: int) -> dict:
    """Time `steps` LoRA steps and one `tokens`-token greedy generation (after one warm-up of each)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from labhelpers.paths import REAL_MODEL_DIR

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(REAL_MODEL_DIR)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(REAL_MODEL_DIR, attn_implementation="eager"),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = torch.randint(0, 1000, (8, 48))

    def step():
        model(input_ids=batch, labels=batch).loss.backward()
        opt.step()
        opt.zero_grad()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    train_s = (time.perf_counter() - t0) / steps
    model.eval()
    prompt = tok("The weather today is", return_tensors="pt")
    with torch.no_grad():
        model.generate(**prompt, max_new_tokens=4, do_sample=False)
        t0 = time.perf_counter()
        model.generate(**prompt, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        gen_s = time.perf_counter() - t0
    return {"threads": torch.get_num_threads(), "train_s_per_step": train_s, "gen_s": gen_s}


def launch(threads: int, steps: int, tokens: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, __file__, "--worker", str(steps), str(tokens)], env=env,
                            stdout=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"a worker failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main(steps: int = 4, tokens: int = 32) -> None:
    cores = os.cpu_count() or 1
    half = max(1, cores // 2)
    one = result(launch(cores, steps, tokens))
    pair = [result(p) for p in [launch(half, steps, tokens), launch(half, steps, tokens)]]
    rows = [("training", "train_s_per_step"), ("generation", "gen_s")]
    print(f"{cores} cores: one job x {one['threads']} threads vs two jobs at once x {half} thread(s) each")
    print("| work | one job, s | each of two jobs, s | two jobs' throughput / one job's |")
    print("|---|---|---|---|")
    for name, key in rows:
        each = [p[key] for p in pair]
        # two jobs finish two units in max(each) seconds; one job finishes one unit in one[key] seconds
        ratio = 2 * one[key] / max(each)
        print(f"| {name} | {one[key]:.2f} | {each[0]:.2f} / {each[1]:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(work(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        main()
