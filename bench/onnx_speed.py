"""Decoding speed of the embedded model: PyTorch eager against ONNX Runtime (optimum) and ORT GenAI.

Every backend answers the same chat prompts of the tone test set: greedy, batch 1, exactly
--new-tokens new tokens each (EOS suppressed, so all do the same work). Runs alternate between the
backends (the order rotates each repeat) so machine noise hits all alike. Prints tokens/s of every
run and the median, the ratio to PyTorch, the model's size on disk, and whether the greedy tokens
equal PyTorch's.

    .venv/bin/python bench/onnx_speed.py [--new-tokens 64] [--repeats 3] [--prompts 4] [--threads N]
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from labhelpers.data import templates
from labhelpers.deploy import export
from labhelpers.deploy.onnx_infer import GenAIModel, greedy_tokens, load_optimum, parity
from labhelpers.paths import BASE_MODEL_DIR, TONE_DATA_DIR


def model_mb(folder: Path, pattern: str) -> float:
    """Size of the model files only (weights and graph, not the tokenizer), in MB."""
    return sum(p.stat().st_size for p in folder.glob(pattern)) / 1e6


def timed(label, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"  {label}: {time.perf_counter() - t0:.1f} s")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every backend (default: torch's, which OMP_NUM_THREADS sets)")
    args = ap.parse_args()
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)  # ORT ignores OMP_NUM_THREADS: every backend gets this count explicitly
    n = args.new_tokens

    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL_DIR)
    rows = [json.loads(line) for line in (TONE_DATA_DIR / "test.jsonl").read_text().splitlines()[:args.prompts]]
    prompts = [templates.chat_texts(tokenizer, row["phrase"])[0] for row in rows]

    with tempfile.TemporaryDirectory(prefix="onnx-speed-") as tmp:
        tmp = Path(tmp)
        print("building (the embedded model is its own merged model: no adapter)")
        opt = timed("optimum export fp32", export.export_optimum, BASE_MODEL_DIR, tmp / "optimum")
        int8 = timed("optimum int8 (dynamic)", export.quantize_int8, opt, tmp / "optimum-int8")
        g32 = timed("ORT GenAI builder fp32", export.build_genai, BASE_MODEL_DIR, tmp / "genai-fp32", "fp32")
        g4 = timed("ORT GenAI builder int4", export.build_genai, BASE_MODEL_DIR, tmp / "genai-int4", "int4")

        pt = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR, dtype=torch.float32).eval()
        ort32, ort8 = load_optimum(opt, threads), load_optimum(int8, threads)
        gen32, gen4 = GenAIModel(g32, threads), GenAIModel(g4, threads)
        backends = {
            "PyTorch eager fp32": (lambda p: greedy_tokens(pt, tokenizer, p, n, min_new_tokens=n),
                                   model_mb(BASE_MODEL_DIR, "*.safetensors")),
            "optimum ORT fp32": (lambda p: greedy_tokens(ort32, tokenizer, p, n, min_new_tokens=n),
                                 model_mb(opt, "*.onnx*")),
            "optimum ORT int8": (lambda p: greedy_tokens(ort8, tokenizer, p, n, min_new_tokens=n),
                                 model_mb(int8, "*.onnx*")),
            "ORT GenAI fp32": (lambda p: gen32.generate_tokens(p, n, min_new_tokens=n), model_mb(g32, "model.onnx*")),
            "ORT GenAI int4": (lambda p: gen4.generate_tokens(p, n, min_new_tokens=n), model_mb(g4, "model.onnx*")),
        }
        names = list(backends)
        for name in names:  # warm-up: first-call allocations, session set-up
            backends[name][0](prompts[0])
        speeds = {name: [] for name in names}
        tokens = {}
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                out = [backends[name][0](p) for p in prompts]
                dt = time.perf_counter() - t0
                assert all(len(t) == n for t in out), f"{name} did not generate {n} tokens"
                speeds[name].append(len(prompts) * n / dt)
                tokens.setdefault(name, out)

    print(f"\n{len(prompts)} prompts x {n} new tokens, batch 1, greedy, {args.repeats} alternating repeats, "
          f"{threads} thread(s), torch {torch.__version__}")
    ref = statistics.median(speeds[names[0]])
    print(f"{'backend':<20} {'tokens/s per repeat':<26} {'median':>8} {'vs PyTorch':>11} {'size MB':>8}  same tokens")
    for name in names:
        med = statistics.median(speeds[name])
        same = [parity(a, b) for a, b in zip(tokens[names[0]], tokens[name])]
        agree = sum(s["same"] for s in same) / sum(s["compared"] for s in same)
        print(f"{name:<20} {', '.join(f'{v:6.0f}' for v in speeds[name]):<26} {med:8.0f} {med / ref:10.2f}x "
              f"{backends[name][1]:8.2f}  {sum(s['match'] for s in same)}/{len(same)} prompts ({agree:.0%} of tokens)")


if __name__ == "__main__":
    main()
