"""Validated run settings: one dataclass, bad values and unknown keys named with a fix.

Notebooks build it from their ``parameters`` cell right after papermill injects values, so a wrong
parameter stops the first cell with one clear line instead of failing minutes later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from labhelpers.checks import check_choice, check_int, check_number, did_you_mean
from labhelpers.constants import ADAPTER_METHODS
from labhelpers.errors import ConfigError
from labhelpers.models.presets import resolve_model
from labhelpers.train import workshop


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
        if not isinstance(self.output_dir, str):
            raise ConfigError(f"output_dir={self.output_dir!r} must be a folder path (text), or empty for a new "
                              "folder under runs/")
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


def accuracy_bar(min_accuracy, config: TrainConfig, notebook: str, schedule: dict | None = None,
                 name: str = "min_accuracy"):
    """The accuracy a notebook asserts: ``"auto"`` means the bar measured for this model and notebook
    (``labhelpers.train.workshop``) when the run's schedule is at least the workshop one, else None
    (report only); None reports; a number is used as given."""
    schedule = {"max_steps": config.max_steps} if schedule is None else schedule
    value = workshop.bar(notebook, config.model_path, name, min_accuracy, schedule)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{name}={min_accuracy!r} must be 'auto', None or a number in [0, 1]")
    return float(value)


def effects_checked(check_effects, config: TrainConfig, notebook: str, schedule: dict | None = None,
                    name: str = "check_effects") -> bool:
    """Whether a notebook asserts its measured effects: ``"auto"`` where they were measured to hold for this
    model at this schedule (``labhelpers.train.workshop``), True always, False never (report only)."""
    if check_effects != "auto" and not isinstance(check_effects, bool):   # 0 and 1 are not switches here
        raise ConfigError(f"{name}={check_effects!r} must be 'auto', True or False")
    schedule = {"max_steps": config.max_steps} if schedule is None else schedule
    return workshop.bar(notebook, config.model_path, name, check_effects, schedule) is True
