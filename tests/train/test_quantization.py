import pytest
import torch

from labhelpers.errors import ConfigError
from labhelpers.paths import BASE_MODEL_DIR
from labhelpers.train import quantization as Q


def test_round_trip_keeps_shape_and_orders_errors():
    torch.manual_seed(0)
    w = torch.randn(128, 192) * 0.02  # trained weights are roughly normal
    for qt in Q.QUANT_TYPES:
        assert Q.round_trip(w, qt).shape == w.shape
    errs = Q.quantization_errors(w)
    assert errs["int8"]["mean_abs_error"] < errs["nf4"]["mean_abs_error"] < errs["fp4"]["mean_abs_error"]
    # 4 bits with a scale per 64 weights: error around a tenth of a typical weight, not more.
    assert 0.02 < errs["nf4"]["relative_error"] < 0.2


def test_unknown_quant_type_is_named():
    with pytest.raises(ConfigError, match="quant_type='int4'"):
        Q.round_trip(torch.ones(4, 64), "int4")


def test_require_bitsandbytes_passes_here_and_explains_failure(monkeypatch):
    Q.require_bitsandbytes()
    import bitsandbytes.functional as F

    def broken(*a, **k):
        raise RuntimeError("no native library")

    monkeypatch.setattr(F, "quantize_4bit", broken)
    with pytest.raises(ConfigError, match="method='lora'"):
        Q.require_bitsandbytes()


def test_linear_weight_bytes_counts_4bit_storage(tiny_model_dir, tiny_model):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    fp32 = Q.linear_weight_bytes(tiny_model)
    expected = sum(m.weight.numel() * 4 for n, m in tiny_model.named_modules()
                   if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head"))
    assert fp32 == expected
    q = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32,
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"))
    n_weights = expected / 4
    # 0.5 byte of codes + one fp32 absmax per 64 weights (no double quant here).
    assert Q.linear_weight_bytes(q) == pytest.approx(n_weights * (0.5 + 4 / 64), rel=0.01)


def test_4bit_inference_runs_on_this_cpu_once_repacking_is_kept_off():
    """bitsandbytes 0.50 on an AVX-512 BF16 CPU fails at the first no-grad forward of a 4-bit layer whose
    output size is not a multiple of 32 (the embedded model's MLP: 688); keep_4bit_unpacked_on_cpu fixes it."""
    from bitsandbytes.functional import has_avx512bf16 as cpu_has_avx512bf16  # the check bitsandbytes makes
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    def load():
        return AutoModelForCausalLM.from_pretrained(
            BASE_MODEL_DIR, dtype=torch.float32,
            quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                   bnb_4bit_compute_dtype=torch.float32)).eval()

    ids = torch.tensor([[1, 5, 9, 12]])
    if cpu_has_avx512bf16():
        with pytest.raises(AssertionError, match="divisible by block_n"), torch.no_grad():
            load()(ids)
    model = load()
    switched = Q.keep_4bit_unpacked_on_cpu(model)
    # gate_proj and up_proj (688 outputs) and down_proj (688 inputs) in each layer; q/k/v/o pack fine.
    assert switched == (3 * model.config.num_hidden_layers if cpu_has_avx512bf16() else 0)
    with torch.no_grad():
        logits = model(ids).logits
    assert torch.isfinite(logits).all() and logits.shape == (1, 4, model.config.vocab_size)
