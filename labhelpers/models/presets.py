"""Model presets and name resolution: the embedded tiny model and real checkpoints, one code path.

Every notebook loads with ``AutoTokenizer/AutoModelForCausalLM.from_pretrained(resolve_model(name))``;
switching to a real model is one papermill parameter (``-p model_name smollm2-135m``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from labhelpers.errors import ModelError
from labhelpers.paths import BASE_MODEL_DIR

DEFAULT_MODEL = "tiny"


@dataclass(frozen=True)
class Preset:
    """A named model: where it lives, its size, and what LoRA should adapt."""

    name: str
    path: str  # hub id or local folder
    params_b: float  # billions of parameters
    target_modules: list[str] = field(default_factory=list)
    #: The chapter's Olive ``--text_template`` for the phrase -> tone task, in this model's chat format.
    tone_template: str = ""
    license: str = ""
    note: str = ""


_LLAMA_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", str(BASE_MODEL_DIR), 0.0037, _LLAMA_PROJ,
                   "<|user|> {phrase}</s><|assistant|> {tone}", "MIT (built by this project)",
                   "embedded, offline; made by labhelpers.models.basemodel"),
    "smollm2-135m": Preset("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", 0.135, _LLAMA_PROJ,
                           "<|im_start|>user\n{phrase}<|im_end|>\n<|im_start|>assistant\n{tone}",
                           "Apache-2.0"),
    "qwen2.5-0.5b": Preset("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct", 0.494, _LLAMA_PROJ,
                           "<|im_start|>user\n{phrase}<|im_end|>\n<|im_start|>assistant\n{tone}",
                           "Apache-2.0"),
    "llama-3.2-1b": Preset("llama-3.2-1b", "meta-llama/Llama-3.2-1B-Instruct", 1.24, _LLAMA_PROJ,
                           "<|start_header_id|>user<|end_header_id|>\n\n{phrase}<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n{tone}",
                           "Llama 3.2 Community License (gated: accept it on the hub first)"),
    "phi-3.5-mini": Preset("phi-3.5-mini", "microsoft/Phi-3.5-mini-instruct", 3.82,
                           ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
                           "<|user|>\n{phrase}<|end|>\n<|assistant|>\n{tone}", "MIT"),
}


def resolve_model(model_name: str | None) -> str:
    """Map a parameter value to what ``from_pretrained`` takes.

    ``""``/``"tiny"`` -> the embedded model; a preset name -> its hub id; an existing folder -> that
    folder; an ``org/name`` string -> returned as is (needs a hub or a local cache).
    """
    name = (model_name or DEFAULT_MODEL).strip()
    if name in PRESETS:
        path = PRESETS[name].path
        if name == DEFAULT_MODEL and not Path(path).is_dir():
            raise ModelError(f"the embedded model is missing at {path}; rebuild it with `make base-model`")
        return path
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(f"model_name={name!r} is a folder without config.json; point it at a folder "
                             "written by save_pretrained")
        return str(p)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") != 1
    if looks_local:
        raise ModelError(f"model_name={name!r}: no such folder, and not a preset ({', '.join(PRESETS)}) "
                         "or a hub id like 'org/name'. Fix the path or pick a preset.")
    return name


def preset_for(model_name: str | None) -> Preset | None:
    """The preset a name refers to (by preset name or hub id), else None."""
    name = (model_name or DEFAULT_MODEL).strip()
    if name in PRESETS:
        return PRESETS[name]
    return next((p for p in PRESETS.values() if p.path == name), None)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
