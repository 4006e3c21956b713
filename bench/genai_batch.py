"""ORT GenAI int4 on SmolLM2: batched greedy generation against batch 1, for short and long answers.

Notebooks 06 and 09 score GenAI models one prompt at a time (``GenAIModel.generate``). This bench asks whether
batching would pay, as it does for PyTorch (``bench/eval_speed.py``): the same tone prompts (chat template, base
model) at batch 1 and at batch 8 and 32, left-padded with the folder's ``pad_token_id``, greedy, for

- a short answer: at most 4 new tokens, stopping at EOS (the notebooks' label scoring);
- a long answer: exactly ``--long-tokens`` new tokens (EOS suppressed), where decoding dominates.

Tokens/s counts generated tokens up to and including EOS; "same" is the fraction of prompts whose batched
tokens equal batch 1's. Runs alternate between batch sizes.

Measured (Intel AMX, 2026-12-04, ``bench/results/genai_batch_intel-amx.md``): with onnxruntime-genai 0.15.2 a
left-padded batch changes greedy answers (the same prompts batched without padding give batch 1's tokens
exactly; with padding, ``pad_token_id`` 2 or 0 alike, most answers change: 0.44 of short answers the same, 0.16
of long ones). Batching prompts of equal length (no padding) keeps every answer, at 1.19x for the notebooks'
short answers (the prompt's prefill dominates) and 1.66x for 48-token ones: 06 and 09 score at batch 1.

    .venv/bin/python bench/genai_batch.py [--prompts 32] [--long-tokens 48] [--repeats 2] [--tag T]
    (needs `make real-model`; ~3 min)

Writes ``bench/results/genai_batch{_T}.{csv,md}``.
"""

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime_genai as og
from transformers import AutoTokenizer

from labhelpers.data.templates import chat_texts
from labhelpers.deploy import export
from labhelpers.deploy.onnx_infer import GenAIModel
from labhelpers.memory.hardware import busy_processes, busy_warning, cpu_name
from labhelpers.paths import REAL_MODEL_DIR, REPO_ROOT, TONE_DATA_DIR

RESULTS = REPO_ROOT / "bench" / "results"
#: 1, 8, 32: consecutive prompts, left-padded; "groups": prompts of equal token length batched together (no padding)
BATCH_SIZES = (1, 8, 32, "groups")


def batched_tokens(gm: GenAIModel, prompts: list[str], max_new: int, exact: bool, pad: int, eos: int
                   ) -> list[list[int]]:
    """Greedy new tokens of every prompt in one og generator, prompts left-padded with ``pad`` to the longest."""
    ids = [gm.encode(p) for p in prompts]
    width = max(map(len, ids))
    grid = np.full((len(ids), width), pad, dtype=np.int32)
    for i, row in enumerate(ids):
        grid[i, width - len(row):] = row
    params = og.GeneratorParams(gm.model)
    params.set_search_options(do_sample=False, batch_size=len(ids), max_length=width + max_new,
                              min_length=width + (max_new if exact else 0))
    generator = og.Generator(gm.model, params)
    generator.append_tokens(grid)
    out = [[] for _ in ids]
    done = [False] * len(ids)
    while not generator.is_done():
        generator.generate_next_token()
        for i, token in enumerate(generator.get_next_tokens()):
            if not done[i]:
                out[i].append(int(token))
                done[i] = not exact and int(token) == eos
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--long-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix for the result files, e.g. the CPU")
    args = ap.parse_args()
    if args.tag and not args.tag.replace("-", "").isalnum():
        ap.error(f"--tag {args.tag!r}: letters, digits and - only")
    if not (REAL_MODEL_DIR / "config.json").is_file():
        raise SystemExit(f"{REAL_MODEL_DIR} is missing: run `make real-model` first")
    warning = busy_warning(busy_processes())
    if warning:
        print(warning)
    tokenizer = AutoTokenizer.from_pretrained(REAL_MODEL_DIR)
    phrases = [json.loads(line)["phrase"] for line in (TONE_DATA_DIR / "test.jsonl").read_text().splitlines()]
    prompts = [chat_texts(tokenizer, p)[0] for p in phrases[:args.prompts]]
    cases = {"short answer (<= 4 tokens, EOS stops)": (4, False),
             f"long answer ({args.long_tokens} tokens)": (args.long_tokens, True)}
    with tempfile.TemporaryDirectory(prefix="genai-batch-") as tmp:
        t0 = time.perf_counter()
        folder = export.build_genai(REAL_MODEL_DIR, Path(tmp) / "int4", "int4")
        print(f"built int4: {time.perf_counter() - t0:.0f} s")
        gm = GenAIModel(folder)
        config = json.loads((folder / "genai_config.json").read_text())["model"]
        pad, eos = config["pad_token_id"], config["eos_token_id"]

        lengths = [len(gm.encode(p)) for p in prompts]

        def run(batch, max_new: int, exact: bool) -> list[list[int]]:
            if batch == 1:
                return [gm.generate_tokens(p, max_new, min_new_tokens=max_new if exact else 0) for p in prompts]
            if batch == "groups":
                out = [None] * len(prompts)
                for n in sorted(set(lengths)):
                    idx = [i for i, k in enumerate(lengths) if k == n]
                    for i, t in zip(idx, batched_tokens(gm, [prompts[i] for i in idx], max_new, exact, pad, eos)):
                        out[i] = t
                return out
            return [t for i in range(0, len(prompts), batch)
                    for t in batched_tokens(gm, prompts[i:i + batch], max_new, exact, pad, eos)]

        run(8, 2, False)   # warm-up
        seconds = {(c, b): [] for c in cases for b in BATCH_SIZES}
        answers = {}
        for r in range(args.repeats):
            for case, (max_new, exact) in cases.items():
                order = BATCH_SIZES[r % 4:] + BATCH_SIZES[:r % 4]
                for b in order:
                    t = time.perf_counter()
                    answers[case, b] = run(b, max_new, exact)
                    seconds[case, b].append(time.perf_counter() - t)
    rows = []
    for case in cases:
        base_s = statistics.median(seconds[case, 1])
        for b in BATCH_SIZES:
            s = statistics.median(seconds[case, b])
            got, ref = answers[case, b], answers[case, 1]
            rows.append({"case": case, "batch": b, "s": round(s, 2),
                         "new_tokens_per_s": round(sum(map(len, got)) / s, 1), "vs_batch_1": round(base_s / s, 2),
                         "same_as_batch_1": round(sum(g == e for g, e in zip(got, ref)) / len(ref), 3)})
    stem = RESULTS / ("genai_batch" + (f"_{args.tag}" if args.tag else ""))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with stem.with_suffix(".csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [f"CPU: {cpu_name()}", "",
             f"SmolLM2-135M-Instruct, ORT GenAI int4 (builder defaults), {len(prompts)} tone prompts, greedy, "
             f"median of {args.repeats} alternating repeats", "",
             "| case | batch | s | new tokens/s | vs batch 1 | same as batch 1 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['batch']} | {r['s']} | {r['new_tokens_per_s']} | {r['vs_batch_1']}x | "
              f"{r['same_as_batch_1']} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
