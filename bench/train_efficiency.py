"""Where a training step's time goes on this CPU, against its matmul rate, and the settings that change it.

In one run: the machine's GEMM rate (fp32 and bf16, a few sizes, best of several), then seconds per step of
a plain PyTorch loop (forward, backward, AdamW) on notebook 02's phrase -> tone batches (batch 8, the
tokenizer's chat template, answer-only labels, padded to the batch's longest) for the tiny Llama and
SmolLM2-135M, per method and setting:

- LoRA r 8 on every linear layer, lora_dropout 0.05 (what most recipes and the course's notebooks use) or 0;
- the base weights in fp32 or bf16 (``hardware.pick_dtype``'s choice where the CPU has bf16 hardware);
- attention ``sdpa`` (transformers' default) or ``eager``;
- full fine-tuning, fp32 weights (bf16 would round its small updates away; bench/lr_sweep.py);
- QLoRA: the base's linear layers in bitsandbytes NF4 (double quantization), computing in fp32 or bf16,
  ``prepare_model_for_kbit_training`` without gradient checkpointing (as notebook 03 on this CPU).

Achieved rate = FLOPs / seconds, with N = the parameters in matmuls (every linear layer, the lm_head
included; the embedding lookup is not a matmul) and T = tokens in the batch (padding included, since it is
computed): LoRA 4·N·T (forward 2·N·T, backward through frozen weights 2·N·T, no weight gradients; the
adapters' own FLOPs are under 1 %), full fine-tuning 6·N·T (weight gradients too). Attention's T² terms
are left out (T is ~50 here). Three fractions: of the best square-GEMM rate in the weights' (compute)
dtype, of the fp32 square-GEMM rate (the issue's yardstick, so bf16's faster matmuls count), and of the
"model-shape" GEMM rate: the same dtype's matmuls at the model's own shapes (every linear layer's forward,
input-gradient and weight-gradient products for T tokens, timed alone). The last is the ceiling a step
could reach if it did nothing but its matmuls (measured on an AMD EPYC, 2 cores: 121-127 GFLOP/s for both
models against 129 square, so the gap is not in the matmul shapes). A chart: ``train_efficiency.png``.

Settings alternate (every setting once, then again) so load that comes and goes hits all alike. Writes
``bench/results/train_efficiency.{csv,md}`` (with ``--tag T``: ``train_efficiency_T.*``).

    .venv/bin/python bench/train_efficiency.py [--steps 4] [--repeats 2]   (needs `make real-model`; ~4 min)
"""

import argparse
import csv
import statistics
import time

import matplotlib
import torch

matplotlib.use("Agg")   # the bench writes a PNG; no screen
import matplotlib.pyplot as plt  # noqa: E402
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, DataCollatorForSeq2Seq

from labhelpers.memory.hardware import busy_processes, busy_warning, cpu_bf16_supported, cpu_name
from labhelpers.paths import BASE_MODEL_DIR, REAL_MODEL_DIR, REPO_ROOT
from labhelpers.train.quantization import keep_4bit_unpacked_on_cpu
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
    ("QLoRA NF4, fp32 compute, dropout 0", "qlora", torch.float32, 0.0, "sdpa"),
    ("QLoRA NF4, bf16 compute, dropout 0, eager attention", "qlora", torch.bfloat16, 0.0, "eager"),
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


def shape_gemm_rate(model, tokens: int, dtype: torch.dtype, full: bool, repeats: int = 3) -> float:
    """GFLOP/s of this model's own matmuls for ``tokens`` tokens: forward and input-gradient products of
    every linear layer, plus weight-gradient products if ``full`` (timed alone, best of ``repeats``)."""
    shapes = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    best = 0.0
    for _ in range(repeats):
        flops, seconds = 0.0, 0.0
        for d_in, d_out in sorted(set(shapes)):
            count = shapes.count((d_in, d_out))
            x, w, g = (torch.randn(tokens, d_in, dtype=dtype), torch.randn(d_out, d_in, dtype=dtype),
                       torch.randn(tokens, d_out, dtype=dtype))
            products = [(x, w.t()), (g, w)] + ([(g.t(), x)] if full else [])
            for a, b in products:
                a @ b
            t0 = time.perf_counter()
            for _ in range(count):
                for a, b in products:
                    a @ b
            seconds += time.perf_counter() - t0
            flops += count * len(products) * 2 * tokens * d_in * d_out
        best = max(best, flops / seconds / 1e9)
    return best


def matmul_params(model) -> int:
    """Parameters that take part in a matmul: every nn.Linear (the lm_head too, even when tied)."""
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))


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
    if method == "qlora":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant, dtype=dtype,
                                                     attn_implementation=attn)
        keep_4bit_unpacked_on_cpu(model)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn)
    n = matmul_params(model)
    if method in ("lora", "qlora"):
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
    ap.add_argument("--tag", default="", help="suffix for the result files, e.g. the CPU: "
                    "train_efficiency_<tag>.md (results from another machine are kept)")
    args = ap.parse_args()
    if args.tag and not args.tag.replace("-", "").isalnum():
        ap.error(f"--tag {args.tag!r}: letters, digits and - only")
    result_stem = RESULTS / ("train_efficiency" + (f"_{args.tag}" if args.tag else ""))
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
    seconds, params, shape_rates = {}, {}, {}
    for name, path in MODELS.items():   # the model's own matmul shapes, per dtype and method kind
        model = AutoModelForCausalLM.from_pretrained(path)
        for d in rates:
            for full in (False, True):
                shape_rates[(name, d, full)] = shape_gemm_rate(model, round(tokens[name]), d, full)
        del model
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
            full = s[1] == "full"
            flops = (6 if full else 4) * params[name] * tokens[name]
            gflops = flops / sec / 1e9
            base = base or sec
            rows.append({"model": name, "setting": s[0], "s_per_step": round(sec, 3),
                         "vs_first": round(sec / base, 2), "gflop_s": round(gflops, 1),
                         "fraction_of_gemm": round(gflops / rates[s[2]], 2),
                         "fraction_of_fp32_gemm": round(gflops / rates[torch.float32], 2),
                         "model_shape_gemm_gflop_s": round(shape_rates[(name, s[2], full)], 1),
                         "fraction_of_model_shape_gemm": round(gflops / shape_rates[(name, s[2], full)], 2),
                         "matmul_params_M": round(params[name] / 1e6, 1), "tokens_per_batch": round(tokens[name])})
    RESULTS.mkdir(parents=True, exist_ok=True)
    with result_stem.with_suffix(".csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    head = ("| model | setting | s/step | vs the first setting | GFLOP/s | of the GEMM rate (its dtype) | "
            "of the fp32 GEMM rate | model-shape GEMM GFLOP/s | of the model-shape rate |")
    lines = [f"CPU: {cpu_name()}, bf16 hardware: {cpu_bf16_supported()}", "",
             f"GEMM (best square matmul): {gemm}; {torch.get_num_threads()} threads; "
             f"median of {args.repeats} x {args.steps} steps", "",
             head, "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['setting']} | {r['s_per_step']} | {r['vs_first']} | {r['gflop_s']} | "
              f"{r['fraction_of_gemm']} | {r['fraction_of_fp32_gemm']} | {r['model_shape_gemm_gflop_s']} | "
              f"{r['fraction_of_model_shape_gemm']} |" for r in rows]
    result_stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    chart(rows, result_stem.with_suffix(".png"))


def chart(rows: list[dict], path) -> None:
    """Achieved fraction of the fp32 GEMM rate and of the model-shape rate, per model and setting."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, model in zip(axes, MODELS):
        mine = [r for r in rows if r["model"] == model]
        y = range(len(mine))
        ax.barh([i + 0.2 for i in y], [r["fraction_of_fp32_gemm"] for r in mine], 0.4, label="of the fp32 GEMM rate")
        ax.barh([i - 0.2 for i in y], [r["fraction_of_model_shape_gemm"] for r in mine], 0.4,
                label="of the model-shape GEMM rate")
        ax.set_yticks(list(y), [r["setting"] for r in mine])
        ax.set_title(model)
        ax.set_xlabel("achieved FLOP/s as a fraction")
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
