"""Running exported models: ORT GenAI folders (with switchable LoRA adapters) and optimum ONNX exports.

Greedy decoding everywhere, so outputs can be compared token by token with PyTorch (``parity``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import onnxruntime as ort
import torch
from optimum.onnxruntime import ORTModelForCausalLM
from transformers import AutoTokenizer

from labhelpers.deploy.export import check_adapter_shapes, lora_inputs
from labhelpers.errors import ConfigError, ModelError
from labhelpers.evaluate.generation import generate_answers


class GenAIModel:
    """An ORT GenAI folder loaded once; adapters load next to it and switch per call.

    ``threads`` caps ONNX Runtime's intra-op threads (None: its default, one per core).
    """

    def __init__(self, folder: str | Path, threads: int | None = None):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise ModelError(f"ORT GenAI folder {self.folder} does not exist; build one with "
                             "labhelpers.deploy.export.build_genai(merged_dir, out_dir)")
        config_path = self.folder / "genai_config.json"
        if not config_path.is_file():
            raise ModelError(f"{self.folder} has no genai_config.json, so it is not an ORT GenAI folder "
                             "(an optimum export runs with optimum_generate instead)")
        import onnxruntime_genai as og

        self._og = og
        try:
            self.context_length = int(json.loads(config_path.read_text())["model"]["context_length"])
            config = og.Config(str(self.folder))
            if threads:
                config.overlay(json.dumps({"model": {"decoder": {"session_options": {
                    "intra_op_num_threads": int(threads), "inter_op_num_threads": 1}}}}))
            self.model = og.Model(config)
            self.tokenizer = og.Tokenizer(self.model)
        except (RuntimeError, ValueError, KeyError) as err:
            raise ModelError(f"could not load the ORT GenAI folder {self.folder}: {err}. A file is missing or "
                             "damaged: rebuild the folder with build_genai") from err
        self._adapters = None  # og.Adapters, made on the first load_adapter
        self.adapters: dict[str, Path] = {}

    # --- adapters ---

    def load_adapter(self, path: str | Path, name: str) -> None:
        """Load an ``.onnx_adapter`` file under ``name`` (the base model stays loaded once)."""

        path = Path(path).expanduser()
        if not path.is_file():
            raise ModelError(f"adapter file {path} not found; write it with "
                             "labhelpers.deploy.export.write_onnx_adapter(peft_dir, genai_folder, out_path)")

        try:
            params = ort.AdapterFormat.read_adapter(str(path)).get_parameters()
        except Exception as err:
            raise ModelError(f"{path} is not a readable .onnx_adapter file: {err}") from err
        # og checks shapes only when generating, with a terse message; check here and name the problem.
        check_adapter_shapes({k: tuple(v.shape()) for k, v in params.items()}, lora_inputs(self.folder),
                             f"adapter {path}")
        if self._adapters is None:
            self._adapters = self._og.Adapters(self.model)
        if name in self.adapters:
            self._adapters.unload(name)
        self._adapters.load(str(path), name)
        self.adapters[name] = path

    def unload_adapter(self, name: str) -> None:
        self.check_adapter(name)
        self._adapters.unload(name)
        del self.adapters[name]

    def check_adapter(self, name: str) -> None:
        """Raise ModelError unless an adapter ``name`` is loaded."""
        if name not in self.adapters:
            raise ModelError(f"no adapter named {name!r} is loaded (loaded: {sorted(self.adapters) or 'none'}); "
                             "load it first with load_adapter(path, name)")

    # --- text ---

    def chat_prompt(self, user_text: str) -> str:
        """``user_text`` in the chat template saved in the folder, ending where the answer starts."""
        messages = json.dumps([{"role": "user", "content": user_text}])
        try:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        except RuntimeError as err:
            raise ModelError(f"{self.folder}: the tokenizer has no usable chat template ({err}); "
                             "save the tokenizer with its chat template next to the model") from err

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; og adds no BOS, so the text must hold it (the chat template writes it)."""
        return [int(t) for t in self.tokenizer.encode(text)]

    def _tokens(self, prompt_text: str, max_new_tokens: int, adapter: str | None,
                min_new_tokens: int = 0) -> Iterator[int]:
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens} must be at least 1")
        if adapter is not None:
            self.check_adapter(adapter)
        ids = self.tokenizer.encode(prompt_text)
        if len(ids) + 1 > self.context_length:
            raise ConfigError(f"the prompt is {len(ids)} tokens; the model's context is {self.context_length}")
        og = self._og
        params = og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=min(len(ids) + max_new_tokens, self.context_length),
                                  min_length=len(ids) + min_new_tokens)
        generator = og.Generator(self.model, params)  # one per call: cheap, and adapters are per generator
        if adapter is not None:
            generator.set_active_adapter(self._adapters, adapter)
        generator.append_tokens(ids)
        while not generator.is_done():
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])

    def generate_tokens(self, prompt_text: str, max_new_tokens: int = 64, adapter: str | None = None,
                        min_new_tokens: int = 0) -> list[int]:
        """Greedy new token ids (EOS included when the model stops); ``adapter=None`` is the base model."""
        return list(self._tokens(prompt_text, max_new_tokens, adapter, min_new_tokens))

    def generate(self, prompt_text: str, max_new_tokens: int = 64, adapter: str | None = None) -> str:
        """Greedy answer text, without special tokens or surrounding spaces."""
        # Joined stream pieces rather than tokenizer.decode: og's decode cuts the text at the first
        # broken UTF-8 byte sequence, the stream decoder skips it and goes on.
        return "".join(self.stream(prompt_text, max_new_tokens, adapter)).strip()

    def stream(self, prompt_text: str, max_new_tokens: int = 64, adapter: str | None = None) -> Iterator[str]:
        """The answer piece by piece as tokens are generated (special tokens give no text)."""
        decoder = self.tokenizer.create_stream()  # holds partial UTF-8 until a character is complete
        for token in self._tokens(prompt_text, max_new_tokens, adapter):
            piece = decoder.decode(token)
            if piece:
                yield piece


# --- optimum ONNX exports ------------------------------------------------------------------------

def load_optimum(onnx_dir: str | Path, threads: int | None = None):
    """An ``ORTModelForCausalLM`` from an ``export_optimum``/``quantize_int8`` folder."""
    folder = Path(onnx_dir).expanduser()
    if not folder.is_dir():
        raise ModelError(f"ONNX folder {folder} does not exist; "
                         "export one with labhelpers.deploy.export.export_optimum")
    onnx_files = sorted(p.name for p in folder.glob("*.onnx"))
    if not onnx_files or not (folder / "config.json").is_file():
        raise ModelError(f"{folder} needs one .onnx file and config.json (found {onnx_files or 'no .onnx'}); "
                         "export it with export_optimum")

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ORTModelForCausalLM.from_pretrained(folder, file_name=onnx_files[0], session_options=options)
    except Exception as err:  # onnxruntime raises its own classes for a damaged file
        raise ModelError(f"could not load {folder / onnx_files[0]}: {err}. Re-export the folder") from err


def greedy_tokens(model, tokenizer, prompt_text: str, max_new_tokens: int = 64, min_new_tokens: int = 0) -> list[int]:
    """Greedy new token ids from a PyTorch or optimum ORT model (batch 1, prompt already holds BOS)."""

    enc = tokenizer(prompt_text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return out[0, enc["input_ids"].shape[1]:].tolist()


def optimum_generate(onnx_dir, tokenizer, prompts: list[str], max_new_tokens: int = 64,
                     batch_size: int = 1) -> list[str]:
    """Greedy answers from an optimum ONNX folder (or a loaded ``ORTModelForCausalLM``).

    ``tokenizer``: a tokenizer, or None to load the one saved in the folder. ``batch_size`` > 1 generates
    that many prompts at once, left-padded (``generation.generate_answers``, the PyTorch models' loop).
    """
    is_path = isinstance(onnx_dir, (str, Path))
    model = load_optimum(onnx_dir) if is_path else onnx_dir
    if tokenizer is None:
        if not is_path:
            raise ConfigError("pass the tokenizer when passing a loaded model")

        tokenizer = AutoTokenizer.from_pretrained(onnx_dir)
    if batch_size > 1:
        return generate_answers(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [tokenizer.decode(greedy_tokens(model, tokenizer, p, max_new_tokens), skip_special_tokens=True).strip()
            for p in prompts]


def parity(reference_tokens: list[int], other_tokens: list[int]) -> dict:
    """Token-by-token comparison: ``match`` (identical), ``first_diff`` (index or None), ``agreement``.

    ``agreement`` is the share of positions (over the longer sequence) holding the same token.
    """
    ref, other = list(reference_tokens), list(other_tokens)
    n = max(len(ref), len(other))
    same = sum(a == b for a, b in zip(ref, other))
    first = next((i for i, (a, b) in enumerate(zip(ref, other)) if a != b), None)
    if first is None and len(ref) != len(other):
        first = min(len(ref), len(other))
    return {"match": ref == other, "first_diff": first, "same": same, "compared": n,
            "agreement": same / n if n else 1.0}
