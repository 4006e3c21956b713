"""Turn a merged Hugging Face model folder into ONNX artefacts.

- ``export_optimum`` / ``quantize_int8``: plain ONNX through optimum (runs with ``ORTModelForCausalLM``);
- ``build_genai``: an ONNX Runtime GenAI folder (model + genai_config.json + tokenizer) through the
  onnxruntime-genai model builder, fp32 or int4, optionally with LoRA inputs that adapters fill at run time;
- ``write_onnx_adapter``: a PEFT LoRA adapter as an ``.onnx_adapter`` file for such a folder.

Every function writes a new folder (or file) and refuses to replace one that holds files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from optimum.onnxruntime import ORTModelForCausalLM, ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
from safetensors.numpy import load_file

from labhelpers.errors import ConfigError, ModelError, OverwriteError

PRECISIONS = ("fp32", "int4")
#: Builder ``--extra_options`` that ``build_genai(options=...)`` passes on (the int4 speed/accuracy knobs
#: bench/decode_bound.py measures); others are refused so a typo is not silently ignored by the builder.
BUILDER_OPTIONS = ("block_size", "accuracy_level", "matmul_mixed_precision", "shared_embeddings",
                   "prune_lm_head", "is_symmetric", "algo_config")
#: What a runnable ORT GenAI folder must hold (og reads the tokenizer from tokenizer.json).
GENAI_FILES = ("genai_config.json", "model.onnx", "tokenizer.json", "tokenizer_config.json")
#: Files copied next to an optimum export so the folder runs on its own.
_SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
               "generation_config.json")
#: The builder names LoRA weights ``model.layers.<i>.<attn|mlp>.<proj>.lora_<A|B>.MatMul.weight``.
LORA_TAG = ".lora_"
#: Symbolic rank dimension of the LoRA graph inputs: adapters of any rank fit one graph.
RANK_DIM = "lora_rank"
_LLAMA_PROJ = {"attn": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
_GRAPH_NAME = re.compile(r"layers\.(\d+)\.(?:[^.]+\.)*?([^.]+)\.(lora_[AB])\.MatMul\.weight$")
_PEFT_NAME = re.compile(r"layers\.(\d+)\.(?:[^.]+\.)*?([^.]+)\.(lora_[AB])\.weight$")


# --- folders -------------------------------------------------------------------------------------

def _refuse_existing(out_dir: str | Path) -> Path:
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise OverwriteError(f"out_dir {out} exists and is a file: pass a new out_dir")
    if out.is_dir() and any(out.iterdir()):
        raise OverwriteError(f"out_dir {out} already exists and is not empty; refusing to overwrite it. "
                             "Pass a new out_dir or delete that folder yourself.")
    return out


@contextmanager
def _staged(out_dir: str | Path):
    """Yield a temporary folder next to ``out_dir`` that becomes ``out_dir`` only if the block succeeds.

    An interrupted export then never leaves a half-written model under the name the user asked for.
    """
    out = _refuse_existing(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
        if out.is_dir():
            out.rmdir()  # empty (checked above); os.replace cannot replace a directory otherwise
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_hf_dir(path: str | Path, what: str) -> Path:
    """A Hugging Face model folder with config.json, safetensors weights and tokenizer.json."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ModelError(f"{what} {p} does not exist; save the merged model there first "
                         "(model.merge_and_unload().save_pretrained(...) and tokenizer.save_pretrained(...))")
    if not (p / "config.json").is_file():
        raise ModelError(f"{what} {p} has no config.json: point it at a folder written by save_pretrained")
    if not any(p.glob("*.safetensors")):
        raise ModelError(f"{what} {p} has no .safetensors weights; only safetensors are loaded here: "
                         "re-save it with save_pretrained(...) (safetensors is its default)")
    if not (p / "tokenizer.json").is_file():
        raise ModelError(f"{what} {p} has no tokenizer.json; the exported folder must run on its own: "
                         "save the tokenizer next to the model (tokenizer.save_pretrained(...))")
    return p


def _check_peft_dir(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not (p / "adapter_config.json").is_file():
        raise ModelError(f"adapter folder {p} has no adapter_config.json: point it at a folder written by "
                         "PeftModel.save_pretrained")
    if not (p / "adapter_model.safetensors").is_file():
        raise ModelError(f"adapter folder {p} has no adapter_model.safetensors (only safetensors are loaded): "
                         "re-save it with PeftModel.save_pretrained(...)")
    return p


def _copy_side_files(src: Path, dst: Path) -> None:
    for name in _SIDE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


# --- optimum -------------------------------------------------------------------------------------

def export_optimum(merged_dir: str | Path, out_dir: str | Path) -> Path:
    """ONNX export (text-generation-with-past) of ``merged_dir`` into ``out_dir``, tokenizer included."""
    out = _refuse_existing(out_dir)  # before the slow imports: a refusal should be instant
    src = _check_hf_dir(merged_dir, "merged_dir")

    with _staged(out_dir) as tmp:
        # use_cache=True exports the with-past graph: generation reuses the KV cache, as in PyTorch.
        model = ORTModelForCausalLM.from_pretrained(src, export=True, use_cache=True)
        model.save_pretrained(tmp)
        _copy_side_files(src, tmp)
    return out


def quantize_int8(onnx_dir: str | Path, out_dir: str | Path) -> Path:
    """Dynamic int8 quantization (avx2 kernels, weights int8, activations quantized at run time)."""
    out = _refuse_existing(out_dir)
    src = Path(onnx_dir).expanduser()
    if not (src / "model.onnx").is_file():
        raise ModelError(f"{src} holds no model.onnx; export one first with export_optimum(merged_dir, out_dir)")

    with _staged(out_dir) as tmp:
        quantizer = ORTQuantizer.from_pretrained(src, file_name="model.onnx")
        # per_channel=False: one scale per tensor, the fastest dynamic path on AVX2.
        quantizer.quantize(save_dir=tmp, quantization_config=AutoQuantizationConfig.avx2(is_static=False,
                                                                                        per_channel=False))
        _copy_side_files(src, tmp)
    return out


# --- ORT GenAI -----------------------------------------------------------------------------------

def _lora_node_names(model_dir: Path) -> list[str]:
    """Names the builder gives the LoRA MatMuls of every layer (kept out of int4 quantization)."""
    layers = json.loads((model_dir / "config.json").read_text()).get("num_hidden_layers", 0)
    return [f"/model/layers.{i}/{block}/{proj}/lora_{ab}/MatMul"
            for i in range(layers) for block, projs in _LLAMA_PROJ.items() for proj in projs for ab in "AB"]


def _log_tail(text: str, lines: int = 15) -> str:
    # tqdm rewrites one line with \r: split on both so the tail is readable.
    parts = [p.strip() for p in re.split(r"[\r\n]+", text) if p.strip()]
    return "\n".join(parts[-lines:])


def build_genai(merged_dir: str | Path, out_dir: str | Path, precision: str = "fp32",
                adapter_dir: str | Path | None = None, runtime_adapters: bool = False,
                timeout: float = 1800, options: dict | None = None) -> Path:
    """An ORT GenAI folder (model.onnx, genai_config.json, tokenizer) for CPU, made by the model builder.

    ``merged_dir`` is a merged model; with ``adapter_dir`` it is the *base* the adapter was trained on
    and the adapter is baked in as separate LoRA MatMuls. ``runtime_adapters=True`` then turns those
    weights into graph inputs (zero by default = the base model), so ``.onnx_adapter`` files written by
    ``write_onnx_adapter`` switch adapters at run time; ``adapter_dir`` is only the template that fixes
    which modules have LoRA inputs (its own weights are not kept). ``options``: builder extra options
    from ``BUILDER_OPTIONS``, e.g. ``{"block_size": 64, "accuracy_level": 4}`` (int4's defaults on CPU:
    block 32, accuracy level 4; a tied embedding needs a block size that divides the hidden size).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not one of {PRECISIONS}")
    extra: list[str] = []
    for key, value in (options or {}).items():
        if key not in BUILDER_OPTIONS:
            raise ConfigError(f"options: {key!r} is not one of {BUILDER_OPTIONS}")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not text or "=" in text or any(c.isspace() for c in text):
            raise ConfigError(f"options[{key!r}]={value!r}: the builder takes KEY=VALUE with no '=' or spaces "
                              "in the value")
        extra.append(f"{key}={text}")
    out = _refuse_existing(out_dir)
    if runtime_adapters and adapter_dir is None:
        raise ConfigError("runtime_adapters=True needs adapter_dir: an adapter whose target modules the "
                          "graph gets LoRA inputs for (e.g. one trained with target_modules='all-linear')")
    src = _check_hf_dir(merged_dir, "merged_dir")
    if adapter_dir is not None:
        adapter = _check_peft_dir(adapter_dir).resolve()
        if any(c in str(adapter) for c in "=,"):
            raise ConfigError(f"adapter_dir {adapter} contains '=' or ',', which the builder's "
                              "--extra_options cannot pass; move or rename the folder")
        extra.append(f"adapter_path={adapter}")
        if precision == "int4":
            # The builder would quantize the small LoRA MatMuls too; runtime weights must stay float.
            extra.append("nodes_to_exclude=" + ",".join(_lora_node_names(src)))
    with _staged(out) as tmp, tempfile.TemporaryDirectory(prefix="genai-cache-") as cache:
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src.resolve()),
               "-o", str(tmp.resolve()), "-p", precision, "-e", "cpu", "-c", cache]
        if extra:
            cmd += ["--extra_options", *extra]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        try:
            # cwd=cache: the builder writes relative scratch paths; keep them out of the user's folder.
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cache, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            partial = err.stdout or b""  # bytes even with text=True
            partial = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
            raise ModelError(f"the ORT GenAI model builder ran over {timeout:.0f} s for {src}; "
                             f"last lines of its log:\n{_log_tail(partial)}") from err
        log = (proc.stdout or "") + "\n" + (proc.stderr or "")
        missing = [f for f in GENAI_FILES if not (tmp / f).is_file()]
        if proc.returncode != 0 or missing:
            hint = (" The adapter does not fit this model: was it made for another base?"
                    if "size mismatch" in log else "")
            raise ModelError(f"the ORT GenAI model builder failed for {src} (exit code {proc.returncode}"
                             + (f", missing {missing}" if missing else "") + f").{hint} "
                             f"Last lines of its log:\n{_log_tail(log)}")
        if runtime_adapters:
            expose_lora_inputs(tmp)
    return out


# --- runtime adapters ----------------------------------------------------------------------------

def expose_lora_inputs(onnx_model_dir: str | Path) -> list[str]:
    """Turn every ``.lora_`` initializer of ``model.onnx`` into a graph input (in place); returns their names.

    The initializer stays as the input's default, set to zero, so without an active adapter the model
    is the base model. The rank dimension becomes symbolic, so adapters of any rank fit.
    """

    folder = Path(onnx_model_dir)
    path = folder / "model.onnx"
    if not path.is_file():
        raise ModelError(f"{folder} holds no model.onnx; build it with build_genai(...)")
    model = onnx.load(str(path))  # external data loaded into memory: the file is rewritten below
    inputs = {i.name for i in model.graph.input}
    names = []
    for init in model.graph.initializer:
        if LORA_TAG not in init.name or init.name in inputs:
            continue
        if not init.name.endswith(".MatMul.weight"):
            raise ModelError(f"{init.name} in {path} is not a float MatMul weight (was it quantized?); "
                             "build with build_genai(..., runtime_adapters=True), which keeps LoRA MatMuls float")
        arr = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(np.zeros_like(arr), init.name))
        shape = [arr.shape[0], RANK_DIM] if ".lora_A." in init.name else [RANK_DIM, arr.shape[1]]
        model.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, shape))
        names.append(init.name)
    if not names:
        raise ModelError(f"{path} has no LoRA weights to expose: build it with build_genai(..., adapter_dir=...)")
    # Save beside, then swap: onnx appends to an existing data file, and a crash must not corrupt the model.
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        onnx.save(model, str(Path(tmp) / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                  location="model.onnx.data", size_threshold=0)
        for name in ("model.onnx.data", "model.onnx"):
            (Path(tmp) / name).chmod(0o644)
            os.replace(Path(tmp) / name, folder / name)
    return names


def lora_inputs(onnx_model_dir: str | Path) -> dict[str, tuple]:
    """``{graph input name: shape}`` of the LoRA inputs (the rank dimension is None)."""

    path = Path(onnx_model_dir) / "model.onnx"
    if not path.is_file():
        raise ModelError(f"{path} not found; build the folder with build_genai(...)")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as err:  # DecodeError and friends: the file is damaged
        raise ModelError(f"{path} is not a readable ONNX model ({type(err).__name__}); rebuild the folder") from err
    return {i.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim)
            for i in graph.input if LORA_TAG in i.name}


def check_adapter_shapes(shapes: dict[str, tuple], graph: dict[str, tuple], where: str) -> None:
    """Raise ModelError unless every adapter tensor is a LoRA input of the graph with a fitting shape."""
    if not graph:
        raise ModelError(f"{where}: the model has no LoRA inputs; build it with "
                         "build_genai(..., adapter_dir=..., runtime_adapters=True) to switch adapters at run time")
    unknown = sorted(set(shapes) - set(graph))
    if unknown:
        raise ModelError(f"{where}: {len(unknown)} adapter tensor(s) have no LoRA input in the model, e.g. "
                         f"{unknown[0]!r}: adapter made for another base (or for modules the model was not "
                         "built with LoRA inputs for; rebuild with an adapter of the same target modules)")
    for name, shape in sorted(shapes.items()):
        expected = graph[name]
        if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
            shown = tuple(RANK_DIM if e is None else e for e in expected)
            raise ModelError(f"{where}: adapter made for another base: {name} has shape {tuple(shape)}, "
                             f"the model expects {shown}")
    for name, shape in shapes.items():  # float A is (in, r), B is (r, out): both ranks must agree
        # Only the plain float pair: an int4 adapter (Olive's auto-opt --precision int4) stores
        # ``weight_Q4`` blocks and ``weight_scales`` whose symbolic dims are not the rank.
        if ".lora_A." in name and name.endswith(".weight") and len(shape) == 2:
            other = name.replace(".lora_A.", ".lora_B.")
            if other in shapes and len(shapes[other]) == 2 and shapes[other][0] != shape[1]:
                raise ModelError(f"{where}: {name} has rank {shape[1]} but {other} rank {shapes[other][0]}; "
                                 "the adapter is damaged")


def _adapter_scaling(config: dict, where: Path) -> float:
    if config.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"{where}: peft_type {config.get('peft_type')!r}; only LoRA adapters convert")
    if config.get("use_dora"):
        raise ConfigError(f"{where}: DoRA adapters have no plain LoRA MatMul form; merge it instead")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ConfigError(f"{where}: per-module rank_pattern/alpha_pattern is not supported here; merge it instead")
    r, alpha = config["r"], config.get("lora_alpha", config["r"])
    return alpha / (r ** 0.5) if config.get("use_rslora") else alpha / r


def onnx_adapter_tensors(peft_adapter_dir: str | Path, graph: dict[str, tuple]) -> dict:
    """The adapter's weights as ``{graph input name: float32 array}`` (transposed, lora_B scaled)."""

    src = _check_peft_dir(peft_adapter_dir)
    scaling = _adapter_scaling(json.loads((src / "adapter_config.json").read_text()), src)
    # Map (layer, module, A/B) to the graph's name: the builder's names differ from PEFT's (self_attn -> attn).
    by_key = {}
    for name in graph:
        m = _GRAPH_NAME.search(name)
        if m:
            by_key[m.groups()] = name
    out = {}
    for key, value in load_file(str(src / "adapter_model.safetensors")).items():
        m = _PEFT_NAME.search(key)
        name = by_key.get(m.groups()) if m else None
        if name is None:
            name = key  # unknown to the graph: check_adapter_shapes names it
        w = value.astype(np.float32)
        if m and m.group(3) == "lora_B":
            w = w * scaling  # the builder folds the scaling into lora_B; so must the adapter
        out[name] = np.ascontiguousarray(w.T)  # MatMul weights are (in, out); Linear stores (out, in)
    return out


def write_onnx_adapter(peft_adapter_dir: str | Path, onnx_model_dir: str | Path, out_path: str | Path) -> Path:
    """Write a PEFT LoRA adapter as an ``.onnx_adapter`` file for a ``runtime_adapters`` GenAI folder."""

    out = Path(out_path).expanduser()
    if out.exists():
        raise OverwriteError(f"{out} already exists; refusing to overwrite it. Pass a new out_path or "
                             "delete that file yourself.")
    graph = lora_inputs(onnx_model_dir)
    tensors = onnx_adapter_tensors(peft_adapter_dir, graph)
    check_adapter_shapes({k: v.shape for k, v in tensors.items()}, graph, f"adapter {peft_adapter_dir}")
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(1)
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in tensors.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt.export_adapter(str(out))
    return out
