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
