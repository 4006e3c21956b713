"""Self-check exercises: each checker says clearly when an answer is right and hints when not.

An unanswered exercise (``None``) is not a failure, so notebooks run top to bottom as shipped.
Worked solutions live in ``solutions/`` for learners who open them on purpose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from labhelpers.deploy.olive import packed_samples
from labhelpers.memory.estimate import NF4_BYTES, NF4_DQ_BYTES, lora_trainable_params
from labhelpers.memory.fitcheck import plan_training
from labhelpers.models.shapes import shape_of


@dataclass
class Feedback:
    ok: bool | None  # None: not answered yet
    message: str

    def __str__(self) -> str:
        mark = {True: "Correct", False: "Not yet", None: "Not answered yet"}[self.ok]
        return f"{mark}: {self.message}"

    def _repr_markdown_(self) -> str:
        return f"**{str(self)}**"


def lora_extra_parameters(model, r: int, module_names: list[str]) -> int:
    """Parameters LoRA adds: r * (in + out) for every nn.Linear whose name ends in one of ``module_names``."""

    total = 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.split(".")[-1] in module_names:
            total += r * (mod.in_features + mod.out_features)
    return total


def check_lora_parameters(answer, model, r: int = 16, module_names=("q_proj", "v_proj")) -> Feedback:
    """Exercise 02: how many parameters does LoRA with rank ``r`` on ``module_names`` add?"""

    module_names = list(module_names)
    if answer is None:
        return Feedback(None, "replace None with your number, then run the cell again.")
    truth = lora_extra_parameters(model, r, module_names)
    if answer == truth:
        return Feedback(True, f"{truth:,} parameters: A is r x in and B is out x r, for every adapted layer.")
    layers = {n: m for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in module_names}
    # The first layer of each kind, i.e. the count for a single decoder block.
    first = {n.split(".")[-1]: m for n, m in reversed(list(layers.items()))}
    one_each = sum(r * (m.in_features + m.out_features) for m in first.values())
    if answer == sum(m.in_features * m.out_features for m in layers.values()):
        hint = "that is the size of the frozen weights themselves; LoRA adds two thin matrices A and B."
    elif answer == one_each:
        hint = f"you counted one layer of each kind; the model has {len(layers)} adapted Linear modules in all."
    elif answer == truth // r:
        hint = "you left out the rank r: A has r rows and B has r columns."
    else:
        hint = "for each adapted nn.Linear(in, out) LoRA adds A (r x in) and B (out x r): r * (in + out)."
    return Feedback(False, hint)


def check_weight_memory(answer_mb, n_params: int, bytes_per_param: int = 4) -> Feedback:
    """Exercise 00: the fp32 weight memory of a model in MB, from its parameter count.

    MB here is 10**6 bytes (as runs.folder_mb reports). An answer in MiB (2**20 bytes, ~4.9 % smaller)
    is accepted too, with a note: both units are in common use. Tolerance: 1 %, enough for rounding.
    """
    if answer_mb is None:
        return Feedback(None, "replace None with your number of MB, then run the cell again.")
    if isinstance(answer_mb, bool) or not isinstance(answer_mb, (int, float)):
        return Feedback(False, "answer_mb should be a number of megabytes, got "
                               f"{type(answer_mb).__name__} {answer_mb!r}.")
    n_bytes = n_params * bytes_per_param
    truth = n_bytes / 1e6

    def near(value) -> bool:
        return abs(answer_mb - value) <= 0.01 * abs(value)

    if near(truth):
        return Feedback(True, f"{n_params:,} parameters x {bytes_per_param} bytes = {n_bytes:,} bytes "
                              f"= {truth:.2f} MB.")
    if near(n_bytes / 2**20):
        return Feedback(True, f"{answer_mb:.2f} MiB (2^20 bytes), which is {truth:.2f} MB (10^6 bytes); "
                              "both units are common, so say which one you mean.")
    if near(n_params / 1e6) or near(n_params / 2**20):
        hint = f"that is the parameter count in millions; each fp32 parameter takes {bytes_per_param} bytes."
    elif near(n_params * 8 * bytes_per_param / 1e6):
        hint = (f"that counts bits; memory is in bytes ({bytes_per_param} bytes = {8 * bytes_per_param} bits "
                "per parameter).")
    elif bytes_per_param == 4 and (near(n_params * 2 / 1e6) or near(n_params * 2 / 2**20)):
        hint = "that is the size in bf16/fp16 (2 bytes per parameter); fp32 takes 4."
    elif near(n_bytes):
        hint = "that is the number of bytes; divide by 10^6 for MB."
    elif near(n_bytes / 1e3) or near(n_bytes / 2**10):
        hint = "that is kilobytes; divide by 1,000 once more for MB."
    elif near(n_bytes / 1e9) or near(n_bytes / 2**30):
        hint = "that is gigabytes; multiply by 1,000 for MB."
    else:
        hint = "weights take parameters x bytes per parameter (fp32: 4); then divide by 10^6 for MB."
    return Feedback(False, hint)


def check_nf4_gigabytes(answer, n_params: float = 8e9) -> Feedback:
    """Exercise 03: GB (10^9 bytes) of NF4 + double-quantization weights for ``n_params`` weights."""
    if answer is None:
        return Feedback(None, "replace None with your number of GB, then run the cell again.")

    per_weight = NF4_DQ_BYTES
    truth = n_params * per_weight / 1e9
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return Feedback(False, "give a number of GB, e.g. 3.5")
    if abs(answer - truth) <= 0.01 * truth:
        return Feedback(True, f"{truth:.2f} GB: 0.5 byte for the code + 1/64 for the 8-bit absmax + "
                              f"4/(64*256) for its fp32 scale = {per_weight:.4f} byte per weight.")
    if abs(answer - n_params * 0.5 / 1e9) <= 0.005 * truth:
        hint = "you counted the 4-bit codes only; each block of 64 weights also stores its scale (absmax)."
    elif abs(answer - n_params * NF4_BYTES / 1e9) <= 0.005 * truth:
        hint = "that is NF4 without double quantization (fp32 absmax); double quantization stores it in 8 bits."
    elif abs(answer - n_params * 4 / 1e9) <= 0.01 * n_params * 4 / 1e9:
        hint = "that is fp32 (4 bytes per weight); a 4-bit code is half a byte."
    elif abs(answer - truth * 1e9 / 2**30) <= 0.01 * truth:
        hint = "that is GiB (2^30 bytes); the question asks for GB (10^9 bytes)."
    else:
        hint = "per weight: 4 bits = 0.5 byte, plus 1 byte per 64 weights, plus 4 bytes per 64*256 weights."
    return Feedback(False, hint)


def check_full_finetune_gib(answer_gib, n_params: float = 7e9) -> Feedback:
    """Exercise 01: GiB for weights + gradients + AdamW state when fully fine-tuning ``n_params``
    parameters in bf16 mixed precision (no activations): 2 + 2 + 12 = 16 bytes per parameter."""
    if answer_gib is None:
        return Feedback(None, "replace None with your number of GiB, then run the cell again.")
    if isinstance(answer_gib, bool) or not isinstance(answer_gib, (int, float)):
        return Feedback(False, f"answer_gib should be a number of GiB, got {type(answer_gib).__name__} {answer_gib!r}.")
    gib = 2**30

    def near(n_bytes, unit=gib) -> bool:
        return abs(answer_gib - n_bytes / unit) <= 0.02 * n_bytes / unit

    truth = 16 * n_params / gib
    if near(16 * n_params):
        return Feedback(True, f"{truth:.0f} GiB: bf16 weights (2) + bf16 gradients (2) + fp32 master copy (4) + "
                              "two fp32 AdamW moments (8) = 16 bytes per parameter, before activations.")
    if near(16 * n_params, 1e9):
        hint = "that is GB (10^9 bytes); the question asks for GiB (2^30 bytes)."
    elif near(12 * n_params):
        hint = "close: you left out one term. Mixed precision keeps an fp32 master copy of the weights too."
    elif near(2 * n_params):
        hint = "that is the bf16 weights alone; training also stores gradients and AdamW's state."
    elif near(4 * n_params):
        hint = "weights and gradients are there; AdamW keeps two fp32 moments per parameter as well."
    elif near(8 * n_params) or near(10 * n_params):
        hint = "AdamW's two moments are fp32 (4 bytes each), and mixed precision adds an fp32 master copy."
    else:
        hint = "add bytes per parameter: weights 2, gradients 2, fp32 master copy 4, AdamW moments 4 + 4."
    return Feedback(False, hint)


def check_error_lines(answer, report) -> Feedback:
    """Exercise 04: the line numbers a validation report's *errors* point at (warnings do not stop a run)."""
    if answer is None:
        return Feedback(None, "replace None with a list of line numbers, then run the cell again.")
    if isinstance(answer, (int, str)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in answer):
        return Feedback(False, f"answer should be a list of line numbers (integers), got {answer!r}.")
    truth = sorted({i.line for i in report.errors if i.line is not None})
    got = sorted(set(answer))
    if got == truth:
        return Feedback(True, f"lines {truth}: these stop training; duplicates and long rows are warnings "
                              "you decide on.")
    warn_lines = {i.line for i in report.warnings}
    extra, missing = sorted(set(got) - set(truth)), sorted(set(truth) - set(got))
    if extra and set(extra) <= warn_lines:
        hint = f"lines {extra} only have warnings (level 'warning'): they are reported, not fatal."
    elif missing:
        hint = f"{len(missing)} error line(s) missing; filter report.to_frame() on level == 'error'."
    else:
        hint = f"lines {extra} have no error; read the 'line' column of the errors only."
    return Feedback(False, hint)


def check_best_step(answer, log_history: list[dict]) -> Feedback:
    """Exercise 05: the step whose validation loss was lowest (the checkpoint ``load_best_model_at_end`` loads)."""
    if answer is None:
        return Feedback(None, "replace None with a step number, then run the cell again.")
    if isinstance(answer, bool) or not isinstance(answer, int):
        return Feedback(False, f"answer should be a step number (an integer), got {answer!r}.")
    evals = [(h["eval_loss"], h["step"]) for h in log_history if "eval_loss" in h]
    if not evals:
        return Feedback(False, "this run logged no validation loss; train with eval_strategy='steps'.")
    best_loss, best = min(evals)
    if answer == best:
        return Feedback(True, f"step {best} (validation loss {best_loss:.4f}): the lowest, so its checkpoint was "
                              "loaded at the end, whatever the last step was.")
    last = max(h["step"] for h in log_history if "step" in h)
    if answer == last:
        hint = "that is the last step; load_best_model_at_end picks the lowest *validation* loss, not the latest."
    elif answer not in {s for _, s in evals}:
        hint = f"validation ran only on steps {sorted(s for _, s in evals)}; pick one of those."
    else:
        hint = "another evaluation step had a lower validation loss; look for the minimum of eval_loss."
    return Feedback(False, hint)


def check_lora_inputs(answer, lora_inputs) -> Feedback:
    """Exercise 06: how many LoRA graph inputs a runtime-adapter ORT GenAI model has.

    ``lora_inputs``: the graph's LoRA input names (``export.lora_inputs(folder)``, a dict or any iterable),
    named ``model.layers.<i>.<attn|mlp>.<proj>.lora_<A|B>.MatMul.weight``.
    """

    if answer is None:
        return Feedback(None, "replace None with a number of graph inputs, then run the cell again.")
    if isinstance(answer, bool) or not isinstance(answer, int):
        return Feedback(False, f"answer should be a whole number of graph inputs, got {answer!r}.")
    names = list(lora_inputs)
    parts = [m.groups() for m in (re.search(r"layers\.(\d+)\.(?:[^.]+\.)*?([^.]+)\.lora_[AB]\.", n) for n in names)
             if m]
    truth = len(names)
    layers = len({layer for layer, _ in parts}) or 1
    projections = sorted({proj for _, proj in parts})
    if answer == truth:
        return Feedback(True, f"{truth} = {layers} layers x {len(projections)} adapted projections x 2 (lora_A and "
                              "lora_B). The rank is a free dimension of each input, so one graph takes adapters of "
                              "any rank.")
    attention = [p for p in projections if p in ("q_proj", "k_proj", "v_proj", "o_proj")]
    if answer == truth // 2:
        hint = "each adapted projection has two LoRA matrices, A (in x r) and B (r x out): one input for each."
    elif answer in (2 * len(projections), len(projections)):
        hint = f"that is one decoder layer; the model has {layers} layers, each with its own LoRA inputs."
    elif attention and len(attention) < len(projections) and answer in (2 * layers * len(attention),
                                                                        layers * len(attention)):
        hint = "all-linear adapts the MLP's projections (gate_proj, up_proj, down_proj) too, not only attention."
    elif answer == 2 * truth:
        hint = ("the adapters share the same inputs (one is active at a time): count the graph's inputs, "
                "not per adapter.")
    else:
        hint = "count layers x adapted projections per layer x 2 matrices (lora_A, lora_B)."
    return Feedback(False, hint)


def check_largest_batch(answer, model: str = "llama-3.2-1b", method: str = "lora", seq_len: int = 512,
                        memory_gib: float = 16, max_batch: int = 256) -> Feedback:
    """Exercise 07: the largest batch size that ``fitcheck.plan_training`` predicts fits as requested."""

    if answer is None:
        return Feedback(None, "replace None with a batch size, then run the cell again.")
    if isinstance(answer, bool) or not isinstance(answer, int) or answer < 1:
        return Feedback(False, f"answer should be a positive whole number (a batch size), got {answer!r}.")

    def plan(b):
        return plan_training(model, method, batch_size=b, seq_len=seq_len, machine={"memory_gib": memory_gib})

    truth = max((b for b in range(1, max_batch + 1) if plan(b).fits), default=0)
    if answer == truth:
        p, q = plan(truth), plan(truth + 1)
        return Feedback(True, f"batch {truth} is predicted at {p.predicted_gib:.2f} GiB, within the "
                              f"{p.budget_gib:.2f} GiB budget; batch {truth + 1} needs {q.predicted_gib:.2f} GiB. "
                              "Activations grow linearly with the batch; the weights do not.")
    p = plan(answer)
    if p.fits:
        return Feedback(False, f"batch {answer} fits ({p.predicted_gib:.2f} of {p.budget_gib:.2f} GiB), and so "
                               "does a larger one: try bigger batches until .fits turns False.")
    return Feedback(False, f"batch {answer} is predicted at {p.predicted_gib:.2f} GiB, over the {p.budget_gib:.2f} "
                           "GiB budget: try smaller ones (loop over batch sizes and keep the last that fits).")


def check_adapters_per_copy(answer, preset: str = "llama-3.2-1b", r: int = 8) -> Feedback:
    """Exercise 08: how many LoRA adapters (rank ``r``, all linear layers) take the bytes of one full copy.

    Both in the same precision, so the answer is parameters of the model / parameters of one adapter.
    """

    if answer is None:
        return Feedback(None, "replace None with a number of adapters, then run the cell again.")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer <= 0:
        return Feedback(False, f"answer should be a positive number of adapters, got {answer!r}.")
    shape = shape_of(preset)
    adapter = lora_trainable_params(shape, r)
    truth = shape["n_params"] / adapter
    if abs(answer - truth) <= 0.05 * truth:
        return Feedback(True, f"about {truth:.0f}: one adapter is {adapter / 1e6:.1f} M parameters against "
                              f"{shape['n_params'] / 1e9:.2f} B for the model, so one full fine-tuned copy per task "
                              f"costs as much disk as {truth:.0f} adapters on one shared base.")
    if abs(answer - truth / 2) <= 0.05 * truth / 2:
        hint = f"that is the figure for rank {2 * r}; the adapter here has rank {r}."
    elif abs(answer - 1 / truth) <= 0.05 / truth:
        hint = ("that is adapter / model; the question asks how many adapters fit in one model's bytes "
                "(model / adapter).")
    else:
        hint = ("divide the model's parameters (memory.shape_of(preset)['n_params']) by one adapter's "
                "(memory.lora_trainable_params(shape, r)).")
    return Feedback(False, hint)


def check_olive_samples(answer, max_steps: int, batch_size: int, epochs: float, max_seq_len: int = 64,
                        rows: int = 800, max_samples: int = 256) -> Feedback:
    """Exercise 09: how many training samples ``olive finetune`` built (samples seen / epochs)."""

    if answer is None:
        return Feedback(None, "replace None with a number of training samples, then run the cell again.")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer <= 0:
        return Feedback(False, f"answer should be a positive number of samples, got {answer!r}.")
    truth = packed_samples(max_steps, batch_size, epochs)
    seen = max_steps * batch_size
    if abs(answer - truth) <= max(1, 0.01 * truth):
        capped = (f" That is exactly Olive's default --max_samples {max_samples}: the file holds more "
                  f"{max_seq_len}-token pieces, and the rest were never trained on. Pass --max_samples to use "
                  "them all." if truth == max_samples else "")
        return Feedback(True, f"{truth}: {max_steps} steps x {batch_size} pieces = {seen} samples seen, in "
                              f"{epochs:g} passes. Each sample is one {max_seq_len}-token piece of several "
                              f"joined rows, not one of the {rows} rows.{capped}")
    if abs(answer - seen) <= 0.01 * seen:
        hint = f"{seen} is how many samples the run saw ({max_steps} x {batch_size}); divide by the epochs."
    elif abs(answer - rows) <= 1:
        hint = (f"{rows} is the number of rows in the file; Olive does not train on rows but on "
                f"{max_seq_len}-token pieces of the joined text.")
    elif abs(answer - seen * epochs) <= 0.01 * seen * epochs:
        hint = "divide the samples seen by the epochs, not multiply."
    else:
        hint = "samples = max_steps x batch_size / epochs (the last 'epoch' figure in lora_log)."
    return Feedback(False, hint)
