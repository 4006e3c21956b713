"""How close ``labhelpers.memory.fitcheck``'s prediction comes to a measured LoRA step, batch by batch.

For each batch x sequence setting of notebook 07's memory table, a fresh model (LoRA r 8, dropout 0.05, all
linear layers, fp32, AdamW) takes one small step (so the optimizer state exists), then one step at that
setting inside ``labhelpers.memory.measure.measure_peak`` (peak RSS growth). The prediction is
``plan_training(preset, "lora", ...)``: the estimate of notebook 01 times ``fitcheck.OVERHEAD``, weights
included, so it is compared with growth + weights. Prints both and their ratio for each setting, in one
run: a ratio under 1 is a prediction below what the step really took.

    .venv/bin/python bench/fitcheck_batches.py [--model tiny]        (smollm2-135m needs `make real-model`)
"""

import argparse

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, set_seed

from labhelpers.memory import fitcheck, measure
from labhelpers.models.presets import resolve_model
from labhelpers.train import workshop

SETTINGS = ((4, 64), (16, 64), (4, 256), (16, 256))


def lora_model(path: str):
    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))


def step_growth_mb(model, batch: int, seq: int) -> float:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def step(x):
        model(input_ids=x, labels=x, use_cache=False).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(torch.randint(3, model.config.vocab_size, (1, 8), generator=gen))  # optimizer state, outside the peak
    x = torch.randint(3, model.config.vocab_size, (batch, seq), generator=gen)
    return measure.measure_peak(step, x)[1].growth_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="a preset the course ships: tiny or smollm2-135m")
    args = ap.parse_args()
    path = resolve_model("" if args.model == "tiny" else args.model)
    preset = workshop.model_key(path)
    print(f"{args.model} ({path}), LoRA r 8, fp32; prediction x{fitcheck.OVERHEAD} overhead, weights included")
    print(f"{'batch x seq':>11} {'growth MB':>10} {'weights MB':>10} {'predicted MB':>12} {'predicted/measured':>18}")
    for batch, seq in SETTINGS:
        model = lora_model(path)
        weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
        growth = step_growth_mb(model, batch, seq)
        predicted = fitcheck.plan_training(preset, "lora", batch_size=batch, seq_len=seq,
                                           lora_r=8).predicted_gib * 2**30 / 1e6
        print(f"{batch:>5} x {seq:<4} {growth:>10.0f} {weights:>10.0f} {predicted:>12.0f} "
              f"{predicted / (growth + weights):>18.2f}")
        del model


if __name__ == "__main__":
    main()
