"""What 4-bit and 8-bit quantization do to weights and memory (bitsandbytes), measured.

``round_trip`` quantizes one weight matrix the way bitsandbytes stores it and returns the
dequantized copy, so a notebook can plot the error; ``linear_weight_bytes`` counts what the linear
layers of a loaded model really occupy.
"""

from __future__ import annotations

import torch

from labhelpers.errors import ConfigError

QUANT_TYPES = ("nf4", "fp4", "int8")


def require_bitsandbytes() -> None:
    """Raise a ConfigError that says how to fix it if bitsandbytes cannot quantize on this machine."""
    try:
        import bitsandbytes.functional as F

        F.quantize_4bit(torch.ones(64, 64), blocksize=64, quant_type="nf4")
    except Exception as err:  # ImportError, missing native library, unsupported CPU...
        raise ConfigError(
            f"4-bit loading needs a working bitsandbytes, and it failed here: {type(err).__name__}: {err}. "
            "Install bitsandbytes>=0.50 (`pip install -U bitsandbytes`), or use method='lora' "
            "(full-precision base), which needs no bitsandbytes.") from err


def round_trip(weight, quant_type: str, blocksize: int = 64):
    """``weight`` quantized with bitsandbytes and dequantized again (same shape, fp32).

    nf4/fp4: 4-bit codes with one absmax scale per ``blocksize`` weights (what ``load_in_4bit`` stores);
    int8: one absmax scale per row (LLM.int8's vector-wise quantization, without outlier handling).
    """
    import bitsandbytes.functional as F

    w = weight.detach().float().contiguous()
    if quant_type in ("nf4", "fp4"):
        q, state = F.quantize_4bit(w, blocksize=blocksize, quant_type=quant_type)
        return F.dequantize_4bit(q, state).float().reshape(w.shape)
    if quant_type == "int8":
        codes, scales, _ = F.int8_vectorwise_quant(w)
        return codes.float() * scales[:, None].float() / 127
    raise ConfigError(f"quant_type={quant_type!r} is not one of {QUANT_TYPES}")


def quantization_errors(weight, quant_types=QUANT_TYPES, blocksize: int = 64) -> dict:
    """Per quant type: mean and max absolute error and the error relative to the mean |weight|."""
    w = weight.detach().float()
    scale = w.abs().mean().item()
    out = {}
    for qt in quant_types:
        err = (round_trip(w, qt, blocksize) - w).abs()
        out[qt] = {"mean_abs_error": err.mean().item(), "max_abs_error": err.max().item(),
                   "relative_error": err.mean().item() / scale}
    return out


def linear_weight_bytes(model) -> int:
    """Bytes held by the weights of the decoder's linear layers (4-bit/8-bit aware; no lm_head).

    bitsandbytes layers report their packed storage plus their quantization constants, so this is
    what the quantized weights really cost in memory.
    """

    total = 0
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or name.endswith("lm_head"):
            continue
        w = mod.weight
        total += w.numel() * w.element_size()
        state = getattr(w, "quant_state", None)
        if state is not None:  # Params4bit: absmax (and, with double quant, its own constants)
            total += state.absmax.numel() * state.absmax.element_size()
            if getattr(state, "state2", None) is not None:
                total += state.state2.absmax.numel() * state.state2.absmax.element_size()
                total += state.state2.code.numel() * state.state2.code.element_size()
        scb = getattr(w, "SCB", None)
        if scb is not None:  # Int8Params: one scale per row
            total += scb.numel() * scb.element_size()
    return total


#: bitsandbytes' CPU kernel for AVX-512 BF16 / AMX repacks 4-bit weights in blocks of this many output rows.
CPU_PACK_BLOCK = 32


def keep_4bit_unpacked_on_cpu(model) -> int:
    """Switch off bitsandbytes' AVX-512 BF16 repacking for 4-bit layers whose output size it cannot pack.

    bitsandbytes 0.50 repacks a ``Linear4bit``'s weight for the AVX-512 BF16 / AMX kernel on its first
    inference call on such a CPU; it needs ``out_features % 32 == 0`` ("N must be divisible by block_n"; the
    embedded model's MLP is 688 wide) and whole quantization blocks per row (``in_features % blocksize == 0``;
    down_proj reads 688).
    Layers that do not qualify keep the portable kernel (same results).
    Returns how many layers were switched; on CPUs without AVX-512 BF16 nothing changes.
    """
    from bitsandbytes.nn import Linear4bit

    switched = 0
    for module in model.modules():
        state = getattr(module.weight, "quant_state", None) if isinstance(module, Linear4bit) else None
        blocksize = state.blocksize if state is not None else 64
        if isinstance(module, Linear4bit) and (module.out_features % CPU_PACK_BLOCK or module.in_features % blocksize):
            if getattr(module, "support_avx512bf16_for_cpu", False):
                switched += 1
            module.support_avx512bf16_for_cpu = False
    return switched
