"""Will this fine-tune fit in memory? Predict it before starting, and find settings that would fit.

``plan_training`` prices a run with ``labhelpers.memory.estimate`` (weights, gradients, optimizer state,
activations), multiplies it by the overhead the course measured on top of that estimate (the backward
pass's temporary buffers, the allocator: ``OVERHEAD``) and compares it with the machine's memory. When
it does not fit, it applies the usual remedies one after another, cheapest in quality first, and stops
at the first combination that fits::

    plan = plan_training("qwen2.5-0.5b", "full", batch_size=16, seq_len=512, machine={"memory_gib": 24})
    print(plan)          # verdict, then each change with its predicted total
    plan.settings        # the settings to use (the last step's)

The order of remedies, and why:

1. gradient checkpointing: same result, about a third more time (recomputes the forward pass);
2. batch 1 x gradient accumulation: same effective batch and result, slower steps;
3. bf16 weights and compute: only where the hardware has bf16 (on a CPU without it, ~10x slower);
4. a cheaper method: full -> LoRA (trains ~1 % of the weights) -> QLoRA (4-bit base, needs bitsandbytes);
5. shorter sequences (halved, down to ``MIN_SEQ_LEN``): changes what the model sees, so it comes last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from labhelpers.checks import check_choice
from labhelpers.constants import TRAIN_METHODS
from labhelpers.errors import ConfigError
from labhelpers.memory import estimate
from labhelpers.memory.hardware import available_memory_gib, bf16_supported, pick_device
from labhelpers.models.shapes import shape_of

#: Measured peak RSS / the estimate's total on the embedded model (tests/memory/test_estimate_measured.py: 12-23 %
#: above): the prediction is estimate x OVERHEAD, so "fits" errs on the safe side.
OVERHEAD = 1.25
#: Share of the machine's memory a run may use; the rest is the OS, the notebook, other programs.
HEADROOM = 0.8
MIN_SEQ_LEN = 128


@dataclass
class Step:
    """One remedy applied on top of the previous ones, and what it predicts."""

    change: str
    why: str
    settings: dict
    predicted_gib: float
    fits: bool


@dataclass
class FitPlan:
    """The verdict for the requested settings, and the remedies tried (``steps``) when it did not fit."""

    model: str
    requested: dict
    predicted_gib: float
    budget_gib: float
    memory_gib: float
    memory_source: str
    steps: list[Step] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.predicted_gib <= self.budget_gib

    @property
    def fits_after_changes(self) -> bool:
        return self.fits or bool(self.steps and self.steps[-1].fits)

    @property
    def settings(self) -> dict:
        """The settings to train with: as requested if they fit, else the last remedy's."""
        return dict(self.steps[-1].settings) if self.steps else dict(self.requested)

    def to_frame(self):
        rows = [{"change": "as requested", "predicted_gib": self.predicted_gib, "fits": self.fits, "why": ""}]
        rows += [{"change": s.change, "predicted_gib": s.predicted_gib, "fits": s.fits, "why": s.why}
                 for s in self.steps]
        return pd.DataFrame(rows)

    def __str__(self) -> str:
        r = self.requested
        head = (f"{self.model}, {r['method']} {r['precision']}, batch {r['batch_size']} x seq {r['seq_len']}"
                f"{', grad. checkpointing' if r['gradient_checkpointing'] else ''}: predicted "
                f"{self.predicted_gib:.2f} GiB; budget {self.budget_gib:.2f} GiB "
                f"({HEADROOM:.0%} of {self.memory_gib:.1f} GiB {self.memory_source})")
        if self.fits:
            return head + "\n  fits as requested."
        lines = [head, "  does not fit; changes, each on top of the previous:"]
        lines += [f"  - {s.change}: {s.predicted_gib:.2f} GiB {'fits' if s.fits else 'still too much'} ({s.why})"
                  for s in self.steps]
        if not self.fits_after_changes:
            lines.append("  Even with all of them it does not fit: use a smaller model (see the presets that "
                         "fit in notebook 00) or a machine with more memory.")
        return "\n".join(lines)


def _shape(model) -> tuple[str, dict]:
    if isinstance(model, dict):
        missing = {"n_params", "n_layers", "hidden", "intermediate", "vocab", "n_embedding"} - set(model)
        if missing:
            raise ConfigError(f"model shape dict lacks {sorted(missing)}; pass a preset name or "
                              "shape_of(...)/estimate.shape_for_params(...)")
        return "custom shape", model
    if isinstance(model, (int, float)) and not isinstance(model, bool):
        return f"{model:g} B params", estimate.shape_for_params(float(model))
    return str(model), shape_of(str(model))


def _machine(machine: dict | None) -> tuple[float, str, bool]:
    """(memory GiB, where it was read, bf16 in hardware) for a given or the current machine."""
    if machine is None:
        gib, source = available_memory_gib()
        return gib, source, bf16_supported(pick_device())
    if not isinstance(machine, dict) or "memory_gib" not in machine:
        raise ConfigError(f"machine={machine!r} must be a dict like {{'memory_gib': 16, 'bf16': False}} "
                          "(or None to read this machine)")
    gib = machine["memory_gib"]
    if isinstance(gib, bool) or not isinstance(gib, (int, float)) or gib <= 0:
        raise ConfigError(f"machine['memory_gib']={gib!r} must be a positive number of GiB")
    return float(gib), machine.get("source", "given"), bool(machine.get("bf16", False))


def predict_gib(shape: dict, settings: dict) -> float:
    """The estimate's total for ``settings`` times OVERHEAD (what the process will really peak at)."""
    method = settings["method"]
    kwargs = dict(seq_len=settings["seq_len"], batch_size=settings["batch_size"], n_layers=shape["n_layers"],
                  hidden_size=shape["hidden"], intermediate_size=shape["intermediate"], vocab_size=shape["vocab"],
                  gradient_checkpointing=settings["gradient_checkpointing"],
                  lora_dropout=settings.get("lora_dropout", 0.0))
    if method in ("lora", "qlora"):
        kwargs["trainable_params"] = estimate.lora_trainable_params(shape, settings["lora_r"])
    if method == "qlora":
        kwargs["n_unquantized"] = shape["n_embedding"]
    est = estimate.estimate_memory(shape["n_params"], method, settings["precision"], **kwargs)
    return est["total_gib"] * OVERHEAD


def plan_training(model="tiny", method: str = "lora", *, batch_size: int = 8, seq_len: int = 256,
                  precision: str = "fp32", lora_r: int = 16, lora_dropout: float = 0.05,
                  gradient_checkpointing: bool = False,
                  machine: dict | None = None, allow_qlora: bool = True) -> FitPlan:
    """Predict whether training fits and, if not, the remedies that make it fit (see the module doc).

    model: a preset name ("tiny", "smollm2-135m", ...), a size in billions, or a shape dict.
    machine: ``{"memory_gib": 24, "bf16": False}``; None reads this machine (free GPU memory or RAM).
    allow_qlora: False where bitsandbytes does not work (then LoRA is the cheapest method offered).
    """
    check_choice("method", method, TRAIN_METHODS)
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("lora_r", lora_r)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    if isinstance(lora_dropout, bool) or not isinstance(lora_dropout, (int, float)) or not 0 <= lora_dropout < 1:
        raise ConfigError(f"lora_dropout={lora_dropout!r} must be a number in [0, 1), e.g. 0.05")
    if precision not in estimate.PRECISION_BYTES:
        raise ConfigError(f"precision={precision!r} must be one of {', '.join(estimate.PRECISION_BYTES)}")
    name, shape = _shape(model)
    gib, source, bf16 = _machine(machine)
    budget = HEADROOM * gib
    settings = {"method": method, "precision": precision, "batch_size": batch_size, "grad_accum": 1,
                "seq_len": seq_len, "lora_r": lora_r, "lora_dropout": lora_dropout,
                "gradient_checkpointing": gradient_checkpointing}
    plan = FitPlan(name, dict(settings), predict_gib(shape, settings), budget, gib, source)
    if plan.fits:
        return plan

    def remedies(s):
        if not s["gradient_checkpointing"]:
            yield "gradient checkpointing on", "same result, ~1/3 more time", {"gradient_checkpointing": True}
        if s["batch_size"] > 1:
            yield (f"batch 1 x gradient accumulation {s['batch_size'] * s['grad_accum']}",
                   "same effective batch, slower steps",
                   {"batch_size": 1, "grad_accum": s["batch_size"] * s["grad_accum"]})
        if s["precision"] == "fp32" and bf16:
            yield "bf16 weights and compute", "half the bytes; this hardware has bf16", {"precision": "bf16"}
        if s["method"] == "full":
            yield "LoRA instead of full fine-tuning", "trains ~1 % of the weights; no full-size optimizer state", \
                {"method": "lora"}
        if s["method"] in ("full", "lora") and allow_qlora:
            yield "QLoRA (4-bit NF4 base)", "base weights ~1/7 of fp32; needs bitsandbytes", {"method": "qlora"}
        while s["seq_len"] // 2 >= MIN_SEQ_LEN:
            half = s["seq_len"] // 2
            yield f"max_seq_len {half}", "fewer activations; longer examples get cut", {"seq_len": half}
            s = {**s, "seq_len": half}

    current = dict(settings)
    for change, why, update in remedies(current):
        current = {**current, **update}
        predicted = predict_gib(shape, current)
        plan.steps.append(Step(change, why, dict(current), predicted, predicted <= budget))
        if predicted <= budget:
            break
    return plan
