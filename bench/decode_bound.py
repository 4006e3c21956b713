"""Decoding speed of SmolLM2-135M's real weights against this machine's memory-bandwidth bound.

Decoding one token at batch 1 reads every weight a matmul uses once (an embedding lookup reads one row) and
the KV cache so far; on a CPU that is memory-bound, so ``bound = read bandwidth / bytes read per token`` is
the most tokens/s any backend can reach. This bench measures the bandwidth (best ``sum`` over a 1 GiB fp32
tensor: a pure read), counts each variant's bytes per token from its own weights (PyTorch: the matmul
weights in their dtype; ONNX: the initializers every non-Gather node reads, from the graph), and times:

- PyTorch ``generate``, fp32 and bf16 weights (bf16 halves the bytes; the CPU must have bf16 hardware),
  sdpa attention, ``torch.inference_mode`` (inside ``generate``), all cores;
- ONNX Runtime GenAI fp32, and int4 with the builder's options: the CPU defaults (block 32, accuracy
  level 4 = int8 activations), block 128, accuracy level 1 (fp32 activations), and the default on 1 thread.
  An int8 lm_head (``matmul_mixed_precision=last_matmul:int8``) does not run with onnxruntime-genai 0.15.2 on
  SmolLM2: with the tied embedding shared, onnxruntime refuses the graph ("lm_head.MatMul.weight_Q8G32 is not a
  graph input"); with ``shared_embeddings=false`` the embedding's Reshape fails on the first prompt.

Every backend answers the same tone prompts: greedy, batch 1, exactly ``--new-tokens`` tokens (EOS
suppressed, so all do the same work); runs alternate between backends. Tokens/s is the steady decoding
rate, ``(n - 1) / (t(n) - t(1))``, so the prompt's prefill is not counted. "same tokens" compares the
greedy tokens with PyTorch fp32's.

    .venv/bin/python bench/decode_bound.py [--new-tokens 128] [--repeats 2] [--prompts 2]
    (needs `make real-model`; ~6 min)

Writes ``bench/results/decode_bound.{csv,md}`` (with ``--tag T``: ``decode_bound_T.*``).
"""

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

import onnx
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from labhelpers.data.templates import chat_texts
from labhelpers.deploy import export
from labhelpers.deploy.onnx_infer import GenAIModel, greedy_tokens, parity
from labhelpers.errors import ModelError
from labhelpers.memory.hardware import busy_processes, busy_warning, cpu_bf16_supported, cpu_name
from labhelpers.paths import REAL_MODEL_DIR, REPO_ROOT, TONE_DATA_DIR

RESULTS = REPO_ROOT / "bench" / "results"
#: name -> (precision, builder options, threads; None = all cores)
GENAI_VARIANTS = {
    "GenAI fp32": ("fp32", {}, None),
    "GenAI int4 (defaults: block 32, accuracy 4)": ("int4", {}, None),
    # 64, not 128: the shared (tied) embedding is quantized in blocks along the hidden size, 576 for SmolLM2,
    # and block 128 (576 = 4.5 x 128) builds a graph whose embedding Reshape fails on the first prompt
    "GenAI int4, block 64": ("int4", {"block_size": 64}, None),
    "GenAI int4, accuracy level 1": ("int4", {"accuracy_level": 1}, None),
    "GenAI int4 (defaults), 1 thread": ("int4", {}, 1),
}
GATHERS = {"Gather", "GatherBlockQuantized"}


def read_bandwidth(gib: float = 1.0, repeats: int = 5) -> float:
    """Best bytes/s of a full read (``sum``) of a large fp32 tensor, on torch's threads."""
    x = torch.ones(int(gib * 2 ** 30 / 4))
    x.sum()
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        x.sum()
        best = max(best, x.numel() * 4 / (time.perf_counter() - t0))
    return best


def _init_bytes(init) -> int:
    if init.data_location == onnx.TensorProto.EXTERNAL:
        return int({e.key: e.value for e in init.external_data}["length"])
    if init.raw_data:
        return len(init.raw_data)
    return onnx.numpy_helper.to_array(init).nbytes


def onnx_bytes_per_token(folder: Path) -> int:
    """Bytes of the initializers that nodes other than an embedding lookup read (once per decoded token)."""
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    users: dict[str, set] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    return sum(_init_bytes(i) for i in graph.initializer if not users.get(i.name, set()) <= GATHERS)


def torch_bytes_per_token(model) -> int:
    """Bytes of every nn.Linear weight (the lm_head too: tied to the embedding, it is read in full)."""
    return sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, torch.nn.Linear))


def kv_bytes(config: dict, positions: float, element_size: int) -> float:
    """KV cache read for one token at this many positions (every layer's keys and values)."""
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * positions * element_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix for the result files, e.g. the CPU: "
                    "decode_bound_<tag>.md (results from another machine are kept)")
    args = ap.parse_args()
    if args.tag and not args.tag.replace("-", "").isalnum():
        ap.error(f"--tag {args.tag!r}: letters, digits and - only")
    result_stem = RESULTS / ("decode_bound" + (f"_{args.tag}" if args.tag else ""))
    if args.new_tokens < 2 or args.repeats < 1 or args.prompts < 1:
        ap.error("--new-tokens must be at least 2, --repeats and --prompts at least 1")
    if not (REAL_MODEL_DIR / "config.json").is_file():
        raise SystemExit(f"{REAL_MODEL_DIR} is missing: run `make real-model` first")
    warning = busy_warning(busy_processes())
    if warning:
        print(warning)
    n = args.new_tokens
    threads = torch.get_num_threads()
    bandwidth = read_bandwidth()
    print(f"read bandwidth {bandwidth / 1e9:.1f} GB/s ({threads} threads)")

    config = json.loads((REAL_MODEL_DIR / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(REAL_MODEL_DIR)
    phrases = [json.loads(line)["phrase"] for line in (TONE_DATA_DIR / "test.jsonl").read_text().splitlines()]
    prompts = [chat_texts(tokenizer, p)[0] for p in phrases[:args.prompts]]
    positions = statistics.mean(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts) + n / 2

    backends = {}   # name -> (generate(prompt, max_new) -> token ids, bytes per token)
    failed = {}     # name -> why it did not build or load
    dtypes = [torch.float32] + ([torch.bfloat16] if cpu_bf16_supported() else [])
    for dtype in dtypes:
        pt = AutoModelForCausalLM.from_pretrained(REAL_MODEL_DIR, dtype=dtype, attn_implementation="sdpa").eval()
        size = dtype.itemsize
        backends[f"PyTorch {str(dtype)[6:]}"] = (
            lambda p, k, m=pt: greedy_tokens(m, tokenizer, p, k, min_new_tokens=k),
            torch_bytes_per_token(pt) + kv_bytes(config, positions, size))
    with tempfile.TemporaryDirectory(prefix="decode-bound-") as tmp:
        built = {}   # (precision, options) -> folder: a variant that differs only in threads reuses its build
        for i, (name, (precision, options, nthreads)) in enumerate(GENAI_VARIANTS.items()):
            key = (precision, tuple(sorted(options.items())))
            try:
                if key not in built:
                    t0 = time.perf_counter()
                    built[key] = export.build_genai(REAL_MODEL_DIR, Path(tmp) / f"v{i}", precision, options=options)
                    print(f"built {name}: {time.perf_counter() - t0:.0f} s")
                gm = GenAIModel(built[key], nthreads or threads)
            except ModelError as err:   # a builder option this version cannot combine: report it, go on
                failed[name] = str(err).splitlines()[0][:200]
                print(f"{name}: {failed[name]}")
                continue
            backends[name] = (lambda p, k, m=gm: m.generate_tokens(p, k, min_new_tokens=k),
                              onnx_bytes_per_token(built[key]) + kv_bytes(config, positions, 4))
        for name in list(backends):   # warm-up: first-call allocations, session set-up
            try:
                backends[name][0](prompts[0], 4)
            except RuntimeError as err:   # onnxruntime's error for a graph that loads but cannot run
                failed[name] = str(err).splitlines()[0][:200]
                print(f"{name}: {failed[name]}")
                del backends[name]
        names = list(backends)
        rates = {name: [] for name in names}
        tokens = {}
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                gen = backends[name][0]
                for p in prompts:
                    t0 = time.perf_counter()
                    gen(p, 1)
                    t1 = time.perf_counter()
                    out = gen(p, n)
                    t2 = time.perf_counter()
                    assert len(out) == n, f"{name} generated {len(out)} tokens, not {n}"
                    # t(n) - t(1): n - 1 decoding steps, the prefill cancels out
                    rates[name].append((n - 1) / max((t2 - t1) - (t1 - t0), 1e-9))
                    tokens.setdefault(name, []).append(out)

    rows = []
    ref_name = names[0]
    for name in names:
        rate = statistics.median(rates[name])
        bpt = backends[name][1]
        bound = bandwidth / bpt
        agree = [parity(a, b) for a, b in zip(tokens[ref_name], tokens[name])]
        rows.append({"backend": name, "tokens_per_s": round(rate, 1), "vs_pytorch_fp32": None,
                     "MB_read_per_token": round(bpt / 1e6, 1), "bound_tokens_per_s": round(bound, 1),
                     "fraction_of_bound": round(rate / bound, 2),
                     "same_tokens": round(sum(a["same"] for a in agree) / sum(a["compared"] for a in agree), 3)})
    best_pt = max(r["tokens_per_s"] for r in rows if r["backend"].startswith("PyTorch"))
    for r in rows:
        r["vs_pytorch_fp32"] = round(r["tokens_per_s"] / rows[0]["tokens_per_s"], 2)
        r["vs_best_pytorch"] = round(r["tokens_per_s"] / best_pt, 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with result_stem.with_suffix(".csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [f"CPU: {cpu_name()}, bf16 hardware: {cpu_bf16_supported()}", "",
             f"SmolLM2-135M-Instruct, {len(prompts)} prompts x {n} new tokens, batch 1, greedy, median of "
             f"{args.repeats} alternating repeats; {threads} threads unless said; read bandwidth "
             f"{bandwidth / 1e9:.1f} GB/s; KV cache counted at {positions:.0f} positions", "",
             "| backend | tokens/s | vs PyTorch fp32 | vs best PyTorch | MB read/token | bound tokens/s | "
             "of the bound | same tokens as PyTorch fp32 |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['tokens_per_s']} | {r['vs_pytorch_fp32']}x | {r['vs_best_pytorch']}x | "
              f"{r['MB_read_per_token']} | {r['bound_tokens_per_s']} | {r['fraction_of_bound']} | "
              f"{r['same_tokens']} |" for r in rows]
    lines += [f"| {name} | failed: {why} | | | | | | |" for name, why in failed.items()]
    result_stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
