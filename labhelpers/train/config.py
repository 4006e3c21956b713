"""Validated run settings: one dataclass, bad values and unknown keys named with a fix.

Notebooks build it from their ``parameters`` cell right after papermill injects values, so a wrong
parameter stops the first cell with one clear line instead of failing minutes later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from labhelpers.checks import check_choice, check_int, check_number, did_you_mean
from labhelpers.constants import ADAPTER_METHODS
from labhelpers.errors import ConfigError
from labhelpers.models.presets import DEFAULT_MODEL, PRESETS, resolve_model


@dataclass
class TrainConfig:
    """Settings of one fine-tuning run (names as in the notebooks' parameters cells)."""

    model_name: str = ""
    method: str = "lora"
    max_steps: int = 300
    learning_rate: float = 1e-3
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    batch_size: int = 8
    seed: int = 0
    output_dir: str = ""
    trust_remote_code: bool = False
    model_path: str = field(default="", init=False)

    def __post_init__(self) -> None:
        check_choice("method", self.method, ADAPTER_METHODS)
        check_int("max_steps", self.max_steps, low=1)
        check_int("lora_r", self.lora_r, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_int("seed", self.seed, low=0)
        check_number("learning_rate", self.learning_rate, 0.0, 1.0, "e.g. 1e-4 to 1e-3 for LoRA")
        check_number("lora_alpha", self.lora_alpha, 0.0, None, "often 2 x lora_r")
        if not (isinstance(self.lora_dropout, (int, float)) and 0 <= self.lora_dropout < 1):
            raise ConfigError(f"lora_dropout={self.lora_dropout!r} must be in [0, 1), e.g. 0.05")
        if not (self.target_modules == "all-linear"
                or (isinstance(self.target_modules, list) and self.target_modules
                    and all(isinstance(m, str) and m for m in self.target_modules))):
            raise ConfigError(f"target_modules={self.target_modules!r} must be 'all-linear' or a non-empty "
                              "list of module names such as ['q_proj', 'v_proj']")
        if not isinstance(self.trust_remote_code, bool):
            raise ConfigError("trust_remote_code must be True or False")
        self.model_path = resolve_model(self.model_name)

    @classmethod
    def from_dict(cls, values: dict, source: str = "parameters") -> "TrainConfig":
        """Build from a dict, naming unknown keys (with the closest known name) and their source."""
        known = [f.name for f in fields(cls) if f.init]
        for key in values:
            if key not in known:
                raise ConfigError(f"{source}: unknown key {key!r}; {did_you_mean(key, known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_bar(min_accuracy, config: TrainConfig, default_steps: int = 300, default_bar: float = 0.90):
    """The accuracy a notebook asserts: ``"auto"`` means the lesson's bar on the embedded model with at
    least the default schedule, and no bar (None) for other experiments; a number is used as given."""
    if min_accuracy == "auto":
        default_run = (config.model_path == PRESETS[DEFAULT_MODEL].path and config.max_steps >= default_steps)
        return default_bar if default_run else None
    if min_accuracy is None:
        return None
    if not isinstance(min_accuracy, (int, float)) or not 0 <= min_accuracy <= 1:
        raise ConfigError(f"min_accuracy={min_accuracy!r} must be 'auto', None or a number in [0, 1]")
    return float(min_accuracy)


def effects_checked(check_effects, config: TrainConfig) -> bool:
    """Whether a notebook asserts its measured effects: ``"auto"`` on the embedded model only (the effects
    were measured there), True always, False never (report only)."""
    if check_effects not in ("auto", True, False):
        raise ConfigError(f"check_effects={check_effects!r} must be 'auto', True or False")
    return check_effects is True or (check_effects == "auto" and config.model_path == PRESETS[DEFAULT_MODEL].path)
