"""The fine-tuning methods notebook 01 compares, and the checks on its parameters.

The methods themselves are set up in the notebook, in the open (LoraConfig, IA3Config,
BitsAndBytesConfig, get_peft_model); this module only validates the choices before any work starts.
"""

from __future__ import annotations

from labhelpers.constants import METHODS
from labhelpers.errors import ConfigError
from labhelpers.train.quantization import require_bitsandbytes

#: The comparisons in notebook 01 are made against these two.
REQUIRED = ("full", "lora")


def check_methods(methods, learning_rates: dict) -> list[str]:
    """``methods`` as a list after checking it: known names, no repeats, "full" and "lora" present, a
    learning rate in (0, 1) for each, and a working bitsandbytes if "qlora" is asked for."""
    if isinstance(methods, str) or not isinstance(methods, (list, tuple)) or not methods:
        raise ConfigError(f"methods={methods!r} must be a non-empty list, e.g. {list(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"methods: unknown {unknown}; choose from {list(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"methods={methods!r} lists a method twice")
    missing = [m for m in REQUIRED if m not in methods]
    if missing:
        raise ConfigError(f"methods must include {list(REQUIRED)} (the comparisons are made against them); "
                          f"add {missing}")
    for m in methods:
        lr = learning_rates.get(m)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1:
            raise ConfigError(f"lr_{m}={lr!r} must be a number in (0, 1), e.g. 1e-3 for LoRA, 2e-4 for full "
                              "fine-tuning, 0.1 for IA3")
    if "qlora" in methods:
        require_bitsandbytes()  # names the fix (install it, or drop "qlora" from methods)
    return list(methods)
