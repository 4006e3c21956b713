"""ONNX artefacts shared by test_export, test_onnx_infer and test_serve, each built once per session.

Plain functions with a cache rather than fixtures: a fixture imported into three test modules
would be built three times. ``root`` is a folder under pytest's session temp dir.
"""

import functools
import json
from pathlib import Path

PROMPTS = ("the cat sat on the mat", "I won the big prize today")
NEW_TOKENS = 12
ADAPTER_SEEDS = {"A": 1, "B": 4}


def root_for(tmp_path_factory) -> str:
    root = tmp_path_factory.getbasetemp() / "onnx-artefacts"
    root.mkdir(exist_ok=True)
    return str(root)


@functools.lru_cache(maxsize=None)
def tokenizer(base: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base)


@functools.lru_cache(maxsize=None)
def chat_prompts(base: str) -> tuple[str, ...]:
    from labhelpers.data.templates import chat_texts

    return tuple(chat_texts(tokenizer(base), p)[0] for p in PROMPTS)


def _random_lora(model, seed: int, path: Path) -> Path:
    """r=4 all-linear LoRA, 0 training steps, lora_B random so that it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # get_peft_model draws lora_A from the global generator: seed it, or tests depend on order
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    peft.save_pretrained(path)
    return path


@functools.lru_cache(maxsize=None)
def adapters(base: str, root: str) -> dict:
    from transformers import AutoModelForCausalLM

    return {name: _random_lora(AutoModelForCausalLM.from_pretrained(base), seed, Path(root) / f"peft-{name}")
            for name, seed in ADAPTER_SEEDS.items()}


@functools.lru_cache(maxsize=None)
def foreign_adapter(root: str) -> Path:
    """A LoRA adapter for a differently shaped base (hidden 48 instead of 32)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    other = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))
    return _random_lora(other, 3, Path(root) / "peft-foreign")


@functools.lru_cache(maxsize=None)
def merged_a(base: str, root: str) -> Path:
    """Adapter A merged into the base and saved (safetensors + tokenizer): a model with varied outputs."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = Path(root) / "merged-A"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapters(base, root)["A"])
    model.merge_and_unload().save_pretrained(out)
    tokenizer(base).save_pretrained(out)
    return out


@functools.lru_cache(maxsize=None)
def pytorch_tokens(model_dir: str) -> tuple:
    """Greedy tokens of a saved (merged) model for each of chat_prompts."""
    from transformers import AutoModelForCausalLM

    from labhelpers.deploy.onnx_infer import greedy_tokens

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = tokenizer(model_dir)
    return tuple(tuple(greedy_tokens(model, tok, p, NEW_TOKENS)) for p in chat_prompts(model_dir))


@functools.lru_cache(maxsize=None)
def peft_tokens(base: str, root: str) -> dict:
    """{None/'A'/'B': greedy tokens per prompt} from PeftModel with both adapters loaded, unmerged."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from labhelpers.deploy.onnx_infer import greedy_tokens

    paths = adapters(base, root)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), paths["A"], adapter_name="A")
    model.load_adapter(paths["B"], adapter_name="B")
    model.eval()
    tok = tokenizer(base)
    out = {}
    for name in ("A", "B"):
        model.set_adapter(name)
        out[name] = tuple(tuple(greedy_tokens(model, tok, p, NEW_TOKENS)) for p in chat_prompts(base))
    with model.disable_adapter():
        out[None] = tuple(tuple(greedy_tokens(model, tok, p, NEW_TOKENS)) for p in chat_prompts(base))
    return out


@functools.lru_cache(maxsize=None)
def genai_plain(base: str, root: str) -> Path:
    from labhelpers.deploy.export import build_genai

    return build_genai(merged_a(base, root), Path(root) / "genai-merged-A", "fp32")


@functools.lru_cache(maxsize=None)
def genai_runtime(base: str, root: str) -> Path:
    """fp32 GenAI folder of the base with LoRA inputs (template: adapter A)."""
    from labhelpers.deploy.export import build_genai

    return build_genai(base, Path(root) / "genai-runtime", "fp32", adapter_dir=adapters(base, root)["A"],
                       runtime_adapters=True)


@functools.lru_cache(maxsize=None)
def genai_runtime_int4(base: str, root: str) -> Path:
    """int4 GenAI folder of the base with float LoRA inputs (template: adapter A)."""
    from labhelpers.deploy.export import build_genai

    return build_genai(base, Path(root) / "genai-runtime-int4", "int4", adapter_dir=adapters(base, root)["A"],
                       runtime_adapters=True)


@functools.lru_cache(maxsize=None)
def onnx_adapters(base: str, root: str) -> dict:
    from labhelpers.deploy.export import write_onnx_adapter

    folder = genai_runtime(base, root)
    return {name: write_onnx_adapter(path, folder, Path(root) / f"{name}.onnx_adapter")
            for name, path in adapters(base, root).items()}


@functools.lru_cache(maxsize=None)
def foreign_onnx_adapter(base: str, root: str) -> Path:
    """An .onnx_adapter with the graph's names but another base's shapes (what a mix-up produces)."""
    import numpy as np
    import onnxruntime as ort

    from labhelpers.deploy.export import lora_inputs

    params = {}
    for name, shape in lora_inputs(genai_runtime(base, root)).items():
        wrong = tuple(4 if d is None else d + 16 for d in shape)
        params[name] = ort.OrtValue.ortvalue_from_numpy(np.zeros(wrong, dtype=np.float32))
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(1)
    fmt.set_parameters(params)
    path = Path(root) / "foreign.onnx_adapter"
    fmt.export_adapter(str(path))
    return path


def genai_config(folder) -> dict:
    return json.loads((Path(folder) / "genai_config.json").read_text())


@functools.lru_cache(maxsize=None)
def optimum_export(base: str, root: str) -> Path:
    from labhelpers.deploy.export import export_optimum

    return export_optimum(merged_a(base, root), Path(root) / "optimum-merged-A")


def visible(text: str) -> str:
    """Text without U+FFFD, whitespace and control characters. Random adapters emit broken UTF-8 byte tokens, some
    carrying a leading space: transformers shows them as U+FFFD, og's stream decoder drops the whole token, space
    included. Token-level parity is checked exactly elsewhere; text is compared on what is visible."""
    return "".join(ch for ch in text if ch.isprintable() and not ch.isspace() and ch != "\ufffd")
