"""Full fine-tuning vs LoRA vs QLoRA on the embedded model: peak memory and seconds per step, side by side.

Each run is a fresh Python process (labhelpers.memory.measure.measure_training_subprocess) that loads the model
for one method and trains AdamW steps on random full-length token batches: peak RSS growth over the
RSS after loading (exact, from the kernel's high-water mark) and the median seconds per step after a
warm-up step. Runs alternate (full, lora, qlora, full, ...) so load that comes and goes hits all
methods alike; ratios to full fine-tuning are taken within each round. The calculator's estimate
(labhelpers.course.widgets.calculator_table) is printed beside the measurement.

    .venv/bin/python bench/methods.py [--batch-size 16] [--seq-len 256] [--steps 3] [--repeats 2]
"""

import argparse
import os
import statistics

from labhelpers.course.widgets import calculator_table
from labhelpers.memory.measure import measure_training_subprocess

METHODS = ("full", "lora", "qlora")  # the order notebook 01 shows them in


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per run (after 1 warm-up step)")
    ap.add_argument("--repeats", type=int, default=2, help="rounds of alternating runs")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    runs = {m: [] for m in METHODS}
    for r in range(args.repeats):
        for m in METHODS:
            got = measure_training_subprocess(m, batch_size=args.batch_size, seq_len=args.seq_len, steps=args.steps,
                                              warmup_steps=1, threads=args.threads or None)
            runs[m].append(got)
            print(f"round {r + 1} {m:<6} peak growth {got['peak_growth_mb']:7.1f} MB  "
                  f"{got['sec_per_step']:.3f} s/step  ({got['threads']} threads)", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nbatch {args.batch_size} x seq {args.seq_len}, {args.steps} timed steps x {args.repeats} alternating "
          f"rounds, load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'method':<7}{'weights MB':>11}{'peak growth MB':>16}{'estimate MB':>13}{'s/step':>9}"
          f"{'memory / full':>15}{'time / full':>13}")
    mb = 2**30 / 1e6
    for m in METHODS:
        est = calculator_table("tiny", method=m, precision="fp32", seq_len=args.seq_len, batch_size=args.batch_size,
                               lora_r=8, available_gib=1.0)["estimate"]
        growth = statistics.median(g["peak_growth_mb"] for g in runs[m])
        sps = statistics.median(g["sec_per_step"] for g in runs[m])
        # Ratios within each round (back-to-back runs), then their median.
        mem_ratio = statistics.median(g["peak_growth_mb"] / f["peak_growth_mb"] for g, f in zip(runs[m], runs["full"]))
        time_ratio = statistics.median(g["sec_per_step"] / f["sec_per_step"] for g, f in zip(runs[m], runs["full"]))
        print(f"{m:<7}{runs[m][0]['weights_mb']:>11.2f}{growth:>16.1f}"
              f"{(est['total_gib'] - est['weights_gib']) * mb:>13.1f}"
              f"{sps:>9.3f}{mem_ratio:>15.2f}{time_ratio:>13.2f}")
    print("peak growth = gradients + optimizer state + activations (+ allocator overhead and backward temporaries);"
          "\nestimate = the calculator's same parts (labhelpers.memory.estimate), without temporaries.")


if __name__ == "__main__":
    main()
