"""Self-check exercises: each checker says clearly when an answer is right and hints when not.

An unanswered exercise (``None``) is not a failure, so notebooks run top to bottom as shipped.
Worked solutions live in ``solutions/`` for learners who open them on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    import torch

    total = 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.split(".")[-1] in module_names:
            total += r * (mod.in_features + mod.out_features)
    return total


def check_lora_parameters(answer, model, r: int = 16, module_names=("q_proj", "v_proj")) -> Feedback:
    """Exercise 02: how many parameters does LoRA with rank ``r`` on ``module_names`` add?"""
    import torch

    module_names = list(module_names)
    if answer is None:
        return Feedback(None, "replace None with your number, then run the cell again.")
    truth = lora_extra_parameters(model, r, module_names)
    if answer == truth:
        return Feedback(True, f"{truth:,} parameters: A is r x in and B is out x r, for every adapted layer.")
    layers = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in module_names]
    one_each = sum(r * (m.in_features + m.out_features) for m in {n.split(".")[-1]: m for n, m in
                   model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in module_names}.values())
    if answer == sum(m.in_features * m.out_features for m in layers):
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
        return Feedback(False, f"answer_mb should be a number of megabytes, got {type(answer_mb).__name__} {answer_mb!r}.")
    n_bytes = n_params * bytes_per_param
    truth = n_bytes / 1e6

    def near(value) -> bool:
        return abs(answer_mb - value) <= 0.01 * abs(value)

    if near(truth):
        return Feedback(True, f"{n_params:,} parameters x {bytes_per_param} bytes = {n_bytes:,} bytes = {truth:.2f} MB.")
    if near(n_bytes / 2**20):
        return Feedback(True, f"{answer_mb:.2f} MiB (2^20 bytes), which is {truth:.2f} MB (10^6 bytes); "
                              "both units are common, so say which one you mean.")
    if near(n_params / 1e6) or near(n_params / 2**20):
        hint = f"that is the parameter count in millions; each fp32 parameter takes {bytes_per_param} bytes."
    elif near(n_params * 8 * bytes_per_param / 1e6):
        hint = f"that counts bits; memory is in bytes ({bytes_per_param} bytes = {8 * bytes_per_param} bits per parameter)."
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
