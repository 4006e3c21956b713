"""How much memory inference and fine-tuning need: a documented estimate you can check against PyTorch.

``estimate_memory`` adds up four parts (bytes, reported in GiB = 2**30 bytes):

**Weights** = parameters x bytes per parameter: fp32 4, bf16/fp16 2. QLoRA keeps the linear layers in
4-bit NF4: 0.5 byte/param for the codes plus one fp32 scale ("absmax") per block of 64 weights =
0.5 + 4/64 = 0.5625 byte/param; double quantization stores those scales as 1 byte each plus one fp32
scale per 256 of them: 0.5 + 1/64 + 4/(64*256) = 0.5159 byte/param (bitsandbytes' layout; a few per-matrix
constants of ~1 KB are ignored). Parameters that stay unquantized (embeddings, lm_head, norms: pass
``n_unquantized``) take ``precision`` bytes. LoRA/QLoRA add the adapter parameters at
``trainable_precision``.

**Gradients** = trainable parameters x bytes of ``trainable_precision`` (frozen weights have none).
Full fine-tuning trains every parameter in ``precision``; LoRA/QLoRA train the adapters, which peft keeps
in fp32 by default (``autocast_adapter_dtype=True``).

**Optimizer state** per trainable parameter: AdamW keeps two moments (m, v) of ``optimizer_precision``
(fp32: 8 bytes); ``"adamw_8bit"`` (bitsandbytes) about 2 bytes; ``"sgd"`` none. Mixed-precision full
fine-tuning in bf16/fp16 also keeps an fp32 master copy of the weights (+4 bytes, counted here with the
optimizer as in the ZeRO paper: 2 + 2 + 12 = 16 bytes/param). ``master_weights`` overrides the default
(True only for ``method="full"`` in bf16/fp16); set it False for pure bf16 training, as the QLoRA paper's
"16-bit finetuning" figure (2 + 2 + 8 = 12 bytes/param) does.

**Activations** (training) = batch x seq x (layers x per-layer term + head term), with ``a`` = activation
bytes (4 in fp32, 2 in bf16/fp16), ``h`` = hidden size and ``i`` = MLP intermediate size (default 8/3 h,
the Llama ratio). Per token and layer a Llama decoder layer saves for backward
``k_h*h + 4*a*i`` bytes with ``k_h = 10*a`` (+4 in half precision, where RMSNorm works in fp32): 40 h + 16 i
in fp32, 24 h + 8 i in bf16. So in the brief form ``batch x seq x hidden x layers x k``:
``k = k_h + 4*a*i/h`` = 82.7 bytes (fp32) or 45.3 bytes (bf16) at i = 8/3 h. The head adds ``(2*a + 4)*h``
(final norm, lm_head input) + ``4*vocab`` (transformers computes the loss in fp32). These constants are
what PyTorch 2.13 / transformers 4.57 save with SDPA attention (no seq^2 term; eager attention adds
heads x seq per token and layer; grouped-query attention saves a little less, ~7 % at 1 kv head);
``tests/memory/test_estimate.py`` measures them with saved-tensor hooks.
LoRA dropout > 0 adds a copy of every adapted input plus a 1-byte mask: ``(6h + i)*(a + 1)`` per token and
layer for all-linear adapters (dropout 0 is ~14 % below the full-fine-tune term; this estimate errs high).
Gradient checkpointing keeps only each layer's input (``a*h`` per token and layer) and recomputes one
layer at a time during backward (that layer's full term is added). Inference: the KV cache
``2 x layers x batch x seq x h x a`` (an upper bound for grouped-query attention) + one row of logits.

Not counted: the CUDA/CPU runtime and allocator overhead, temporary buffers, dataloader memory.
``fits`` leaves headroom for these.
"""

from __future__ import annotations

from labhelpers.checks import check_choice
from labhelpers.constants import GIB, MEMORY_METHODS
from labhelpers.errors import ConfigError
from labhelpers.models.shapes import shape_of

PRECISION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
#: bitsandbytes NF4: 4-bit codes + one fp32 absmax per 64 weights.
NF4_BYTES = 0.5 + 4 / 64
#: Double quantization: absmax as uint8 + one fp32 scale per 256 absmax values.
NF4_DQ_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
#: Optimizer state tensors per trainable parameter (bytes set by optimizer_precision, except 8-bit).
OPTIMIZERS = ("adamw", "adamw_8bit", "sgd")
#: Llama's MLP width: 2/3 of 4h (SwiGLU keeps the parameter count of a 4h GELU MLP).
LLAMA_MLP_RATIO = 8 / 3

def _precision_bytes(name: str, value: str) -> int:
    if value not in PRECISION_BYTES:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(PRECISION_BYTES)}")
    return PRECISION_BYTES[value]


def _positive_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")


def activation_bytes_per_token(n_layers: int, hidden_size: int, precision: str = "fp32",
                               intermediate_size: int | None = None, vocab_size: int | None = None,
                               gradient_checkpointing: bool = False, lora_dropout: float = 0.0) -> float:
    """Bytes saved for backward per token of a batch (see the module docstring for the terms)."""
    a = _precision_bytes("precision", precision)
    h = hidden_size
    i = intermediate_size if intermediate_size is not None else LLAMA_MLP_RATIO * h
    layer = (10 * a + (4 if a == 2 else 0)) * h + 4 * a * i
    if lora_dropout > 0:
        layer += (6 * h + i) * (a + 1)  # dropout output + bool mask for each adapted input
    head = (2 * a + 4) * h + 4 * (vocab_size or 0)
    if gradient_checkpointing:
        return n_layers * a * h + layer + head  # checkpoints + the one layer being recomputed
    return n_layers * layer + head


def estimate_memory(n_params: int, method: str, precision: str = "fp32", *, seq_len: int = 256,
                    batch_size: int = 1, n_layers: int | None = None, hidden_size: int | None = None,
                    intermediate_size: int | None = None, vocab_size: int | None = None,
                    lora_fraction: float = 0.01, trainable_params: int | None = None,
                    trainable_precision: str | None = None, lora_dropout: float = 0.0,
                    optimizer: str = "adamw", optimizer_precision: str = "fp32",
                    master_weights: bool | None = None, gradient_checkpointing: bool = False,
                    double_quant: bool = True, n_unquantized: int = 0) -> dict:
    """Memory (GiB) to run ``method`` on a model of ``n_params`` parameters; formulas in the module doc.

    Returns weights_gib, gradients_gib, optimizer_gib, activations_gib, total_gib, plus
    trainable_params and the inputs that decided them. Activations are 0 unless n_layers and
    hidden_size are given.
    """
    _positive_int("n_params", n_params)
    check_choice("method", method, MEMORY_METHODS)
    a = _precision_bytes("precision", precision)
    _positive_int("seq_len", seq_len)
    _positive_int("batch_size", batch_size)
    _positive_int("n_layers", n_layers, allow_none=True)
    _positive_int("hidden_size", hidden_size, allow_none=True)
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer={optimizer!r} must be one of {', '.join(OPTIMIZERS)}")
    state_bytes = {"adamw": 2 * _precision_bytes("optimizer_precision", optimizer_precision),
                   "adamw_8bit": 2, "sgd": 0}[optimizer]
    if not (isinstance(n_unquantized, int) and 0 <= n_unquantized <= n_params):
        raise ConfigError(f"n_unquantized={n_unquantized!r} must be an integer between 0 and n_params "
                          "(the embedding/lm_head/norm parameters QLoRA leaves unquantized)")

    if method == "inference":
        trainable = 0
    elif method == "full":
        trainable = n_params
    elif trainable_params is not None:
        _positive_int("trainable_params", trainable_params)
        trainable = trainable_params
    else:
        if not 0 < lora_fraction < 1:
            raise ConfigError(f"lora_fraction={lora_fraction!r} must be in (0, 1), e.g. 0.01; "
                              "or pass trainable_params (peft: model.get_nb_trainable_parameters()[0])")
        trainable = round(n_params * lora_fraction)
    if trainable_precision is None:
        # Full fine-tuning trains the weights in place; peft upcasts adapters to fp32 by default.
        trainable_precision = precision if method == "full" else "fp32"
    t = _precision_bytes("trainable_precision", trainable_precision)
    if master_weights is None:
        master_weights = method == "full" and a == 2

    if method == "qlora":
        nf4 = NF4_DQ_BYTES if double_quant else NF4_BYTES
        weights = (n_params - n_unquantized) * nf4 + n_unquantized * a
    else:
        weights = n_params * a
    if method in ("lora", "qlora"):
        weights += trainable * t  # the adapters are parameters beside the frozen base
    gradients = trainable * t
    optimizer_b = trainable * (state_bytes + (4 if master_weights and trainable else 0))

    activations = 0.0
    if n_layers is not None and hidden_size is not None:
        tokens = batch_size * seq_len
        if method == "inference":
            activations = 2 * n_layers * tokens * hidden_size * a + batch_size * 4 * (vocab_size or 0)
        else:
            activations = tokens * activation_bytes_per_token(
                n_layers, hidden_size, precision, intermediate_size, vocab_size, gradient_checkpointing,
                lora_dropout if method in ("lora", "qlora") else 0.0)
    total = weights + gradients + optimizer_b + activations
    return {
        "method": method, "precision": precision, "trainable_params": trainable,
        "trainable_precision": trainable_precision, "master_weights": master_weights,
        "weights_gib": weights / GIB, "gradients_gib": gradients / GIB, "optimizer_gib": optimizer_b / GIB,
        "activations_gib": activations / GIB, "total_gib": total / GIB,
    }


def estimate_for_preset(preset_name: str, method: str, precision: str = "fp32", **kwargs) -> dict:
    """estimate_memory with a preset's shape filled in (QLoRA leaves embeddings unquantized)."""
    s = shape_of(preset_name)
    kwargs.setdefault("n_layers", s["n_layers"])
    kwargs.setdefault("hidden_size", s["hidden"])
    kwargs.setdefault("intermediate_size", s["intermediate"])
    kwargs.setdefault("vocab_size", s["vocab"])
    if method == "qlora":
        kwargs.setdefault("n_unquantized", s["n_embedding"])  # bitsandbytes quantizes nn.Linear only
    return estimate_memory(s["n_params"], method, precision, **kwargs)


def fits(estimate: dict, available_gib: float, headroom: float = 0.8) -> bool:
    """True if the estimate's total fits in ``headroom`` x ``available_gib`` (the rest is for the runtime)."""
    if not isinstance(estimate, dict) or "total_gib" not in estimate:
        raise ConfigError("estimate must be the dict returned by estimate_memory (it needs 'total_gib')")
    if not 0 < headroom <= 1:
        raise ConfigError(f"headroom={headroom!r} must be in (0, 1], e.g. 0.8 to keep 20 % free")
    if not available_gib > 0:
        raise ConfigError(f"available_gib={available_gib!r} must be a positive number of GiB")
    return estimate["total_gib"] <= headroom * available_gib


# --- shapes for the calculator: free model sizes and LoRA's parameter count -----------------------------

#: Llama-family models keep hidden/layers near 128 (7B: 4096/32, 13B: 5120/40, 70B: 8192/80 = 102).
HIDDEN_PER_LAYER = 128
DEFAULT_VOCAB = 32000
MIN_PARAMS_B, MAX_PARAMS_B = 0.1, 70.0


def shape_for_params(params_b: float, vocab_size: int = DEFAULT_VOCAB) -> dict:
    """A Llama-like shape for a free size in billions of parameters (what ``labhelpers.models.shapes.shape_of``
    returns).

    A decoder layer with a SwiGLU MLP of width 8/3 h holds 4h^2 (attention) + 8h^2 (MLP) = 12 h^2
    parameters; with hidden ~ 128 x layers, 12 h^3 / 128 + 2 x vocab x h (untied embeddings) = n_params.
    We solve for h (rounded to a multiple of 64), then set layers = n_params' share / 12 h^2. Real models
    differ in detail (grouped-query attention, wider MLPs); the memory estimate depends mostly on the
    parameter count, and on h x layers for activations, which this keeps.
    """
    ok = isinstance(params_b, (int, float)) and not isinstance(params_b, bool)
    if not ok or not MIN_PARAMS_B <= params_b <= MAX_PARAMS_B:
        raise ConfigError(f"params_b={params_b!r} must be a number of billions of parameters between "
                          f"{MIN_PARAMS_B} and {MAX_PARAMS_B} (e.g. 7 for a 7 B model)")
    _positive_int("vocab_size", vocab_size)
    n = params_b * 1e9
    h = 64.0
    for _ in range(60):  # fixed point of h = (128 (n - 2 v h) / 12)^(1/3)
        h = max(64.0, (HIDDEN_PER_LAYER * max(n - 2 * vocab_size * h, n * 0.05) / 12) ** (1 / 3))
    h = max(64, int(round(h / 64)) * 64)
    emb = 2 * vocab_size * h
    layers = max(1, round((n - emb) / (12 * h * h)))
    return {"n_params": int(round(n)), "n_layers": layers, "hidden": h, "intermediate": int(round(LLAMA_MLP_RATIO * h)),
            "vocab": vocab_size, "n_embedding": emb}


def lora_trainable_params(shape: dict, r: int = 16) -> int:
    """Parameters LoRA (rank ``r``, all 7 linear layers of each Llama block) adds to a model of ``shape``.

    r x (in + out) per adapted layer: q, k, v, o (h -> h; an upper bound with grouped-query attention),
    gate and up (h -> i) and down (i -> h).
    """
    _positive_int("lora_r", r)
    h, i = shape["hidden"], shape["intermediate"]
    return shape["n_layers"] * r * (4 * (h + h) + 3 * (h + i))
