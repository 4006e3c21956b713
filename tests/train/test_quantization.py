import pytest
import torch

from labhelpers.errors import ConfigError
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
