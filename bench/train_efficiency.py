"""Where a training step's time goes on this CPU, against its matmul rate, and the settings that change it.

In one run: the machine's GEMM rate (fp32 and bf16, a few sizes, best of several), then seconds per step of
a plain PyTorch loop (forward, backward, AdamW) on notebook 02's phrase -> tone batches (batch 8, the
tokenizer's chat template, answer-only labels, padded to the batch's longest) for the tiny Llama and
SmolLM2-135M, per method and setting:

- LoRA r 8 on every linear layer, lora_dropout 0.05 (what most recipes and the course's notebooks use) or 0;
- the base weights in fp32 or bf16 (``hardware.pick_dtype``'s choice where the CPU has bf16 hardware);
- attention ``sdpa`` (transformers' default) or ``eager``;
- full fine-tuning, fp32 weights (bf16 would round its small updates away; bench/lr_sweep.py).

Achieved rate = FLOPs / seconds, with N = the parameters in matmuls (every linear layer, the lm_head
included; the embedding lookup is not a matmul) and T = tokens in the batch (padding included, since it is
computed): LoRA 4·N·T (forward 2·N·T, backward through frozen weights 2·N·T, no weight gradients; the
adapters' own FLOPs are under 1 %), full fine-tuning 6·N·T (weight gradients too). Attention's T² terms
are left out (T is ~50 here). The fraction is of the GEMM rate in the weights' dtype.

Settings alternate (every setting once, then again) so load that comes and goes hits all alike. Writes
``bench/results/train_efficiency.{csv,md}``.

    .venv/bin/python bench/train_efficiency.py [--steps 4] [--repeats 2]   (needs `make real-model`; ~4 min)
"""

import argparse
import csv
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

from labhelpers.memory.hardware import busy_processes, busy_warning, cpu_bf16_supported
from labhelpers.paths import BASE_MODEL_DIR, REAL_MODEL_DIR, REPO_ROOT
from labhelpers.train.tonetask import ToneTask

RESULTS = REPO_ROOT / "bench" / "results"
MODELS = {"tiny": BASE_MODEL_DIR, "smollm2-135m": REAL_MODEL_DIR}
#: (label, method, weights dtype, lora_dropout, attention)
SETTINGS = [
    ("LoRA, fp32, dropout 0.05", "lora", torch.float32, 0.05, "sdpa"),
    ("LoRA, bf16, dropout 0.05", "lora", torch.bfloat16, 0.05, "sdpa"),
    ("LoRA, bf16, dropout 0", "lora", torch.bfloat16, 0.0, "sdpa"),
    ("LoRA, bf16, dropout 0, eager attention", "lora", torch.bfloat16, 0.0, "eager"),
    ("LoRA, fp32, dropout 0", "lora", torch.float32, 0.0, "sdpa"),
    ("full, fp32", "full", torch.float32, None, "sdpa"),
]


def gemm_rate(dtype: torch.dtype, sizes=(512, 1024, 2048), repeats: int = 5) -> float:
    """Best GFLOP/s of square matmuls of these sizes."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        k = max(2, int(2e10 / (2 * n ** 3)))   # ~20 GFLOP per timing
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(k):
                a @ b
            best = max(best, 2 * n ** 3 * k / (time.perf_counter() - t0) / 1e9)
    return best


def matmul_params(model) -> int:
    """Parameters that take part in a matmul: every nn.Linear (the lm_head too, even when tied)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def batches(model_dir, n: int, batch_size: int = 8) -> list[dict]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train = ToneTask(tokenizer, n_test=10).train
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    return [collate([train[i * batch_size + j] for j in range(batch_size)]) for i in range(n)]


def step_seconds(model_dir, setting, data: list[dict], warmup: int = 2) -> tuple[float, int]:
    """Median seconds per step of a plain loop, and the matmul parameter count."""
    _, method, dtype, dropout, attn = setting
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn)
    n = matmul_params(model)
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times, warm = [], data[:warmup]   # the first steps allocate buffers: run them once untimed
    for i, batch in enumerate(warm + data):
        t0 = time.perf_counter()
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= len(warm):
            times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per setting and repeat")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be at least 1")
    warning = busy_warning(busy_processes())
    if warning:
        print(warning)
    rates = {torch.float32: gemm_rate(torch.float32)}
    if cpu_bf16_supported():
        rates[torch.bfloat16] = gemm_rate(torch.bfloat16)
    gemm = ", ".join(f"{str(d)[6:]} {r:.0f} GFLOP/s" for d, r in rates.items())
    print(f"{torch.get_num_threads()} threads; GEMM: {gemm}")
    settings = [s for s in SETTINGS if s[2] in rates]
    data = {name: batches(path, args.steps) for name, path in MODELS.items()}
    tokens = {name: statistics.mean(b["input_ids"].numel() for b in d) for name, d in data.items()}
    seconds, params = {}, {}
    for _ in range(args.repeats):
        for name, path in MODELS.items():
            for s in settings:
                sec, params[name] = step_seconds(path, s, data[name])
                seconds.setdefault((name, s[0]), []).append(sec)
    rows = []
    for name in MODELS:
        base = None
        for s in settings:
            sec = statistics.median(seconds[(name, s[0])])
            flops = (4 if s[1] == "lora" else 6) * params[name] * tokens[name]
            gflops = flops / sec / 1e9
            base = base or sec
            rows.append({"model": name, "setting": s[0], "s_per_step": round(sec, 3),
                         "vs_first": round(sec / base, 2), "gflop_s": round(gflops, 1),
                         "fraction_of_gemm": round(gflops / rates[s[2]], 2),
                         "matmul_params_M": round(params[name] / 1e6, 1), "tokens_per_batch": round(tokens[name])})
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "train_efficiency.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    head = "| model | setting | s/step | vs the first setting | GFLOP/s | of the GEMM rate |"
    lines = [f"GEMM (best square matmul): {gemm}; {torch.get_num_threads()} threads; "
             f"median of {args.repeats} x {args.steps} steps", "",
             head, "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['setting']} | {r['s_per_step']} | {r['vs_first']} | {r['gflop_s']} | "
              f"{r['fraction_of_gemm']} |" for r in rows]
    (RESULTS / "train_efficiency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
