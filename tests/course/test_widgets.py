"""The widgets: the memory calculator and the template playground (pure functions, errors, wiring)."""

import html

import pytest

from labhelpers import constants
from labhelpers.course.widgets import (
    CUSTOM,
    PLAYGROUND_ROW,
    PLAYGROUND_TEMPLATE,
    calculator_table,
    memory_calculator,
    template_playground,
    template_tokens,
)
from labhelpers.data import templates
from labhelpers.errors import ConfigError
from labhelpers.memory import estimate
from labhelpers.models.shapes import shape_of

GIB = constants.GIB


def _total(**kw):
    return calculator_table(available_gib=16.0, **kw)["estimate"]["total_gib"]


def test_table_has_the_parts_and_they_add_up():
    r = calculator_table("llama-3.2-1b", method="lora", precision="bf16", seq_len=512, batch_size=2, available_gib=16.0)
    t = r["table"]
    assert list(t.index) == ["weights", "gradients", "optimizer state", "activations", "total"]
    assert t.loc["total", "GiB"] == pytest.approx(t["GiB"].iloc[:4].sum())
    assert r["text"].startswith("llama-3.2-1b, lora, bf16, batch 2 x seq 512")
    # It is the documented estimate, not a copy of it: same numbers as estimate_for_preset with LoRA's count.
    shape = shape_of("llama-3.2-1b")
    ref = estimate.estimate_for_preset("llama-3.2-1b", "lora", "bf16", seq_len=512, batch_size=2,
                                     trainable_params=estimate.lora_trainable_params(shape, 16), lora_dropout=0.05)
    assert r["estimate"]["total_gib"] == pytest.approx(ref["total_gib"])


@pytest.mark.parametrize("change", [
    dict(method="full"), dict(precision="fp32"), dict(seq_len=1024), dict(batch_size=4), dict(lora_r=64),
    dict(model="qwen2.5-0.5b"), dict(gradient_checkpointing=True),
])
def test_every_input_changes_the_result(change):
    base = dict(model="llama-3.2-1b", method="lora", precision="bf16", seq_len=512, batch_size=1, lora_r=16)
    assert _total(**(base | change)) != pytest.approx(_total(**base))


def test_sizes_order_methods_and_memory():
    kw = dict(model="llama-3.2-1b", precision="bf16", seq_len=256, batch_size=1)
    full, lora, qlora = (_total(method=m, **kw) for m in ("full", "lora", "qlora"))
    assert qlora < lora < full
    assert _total(**(kw | dict(seq_len=512, method="lora"))) > lora   # longer sequences: more activations


def test_custom_sizes_grow_with_params_and_match_shape():
    small = _total(model=CUSTOM, params_b=1.0, method="full", precision="bf16")
    big = _total(model=CUSTOM, params_b=7.0, method="full", precision="bf16")
    assert 5 < big / small < 9
    s = estimate.shape_for_params(7.0)
    assert 28 <= s["n_layers"] <= 36 and 3840 <= s["hidden"] <= 4480   # Llama-2-7B: 32 x 4096
    assert estimate.shape_for_params(13.0)["hidden"] == 5120            # Llama-2-13B's hidden size


def test_qlora_65b_headline():
    """QLoRA paper: 65 B fits a 48 GB GPU with QLoRA; 16-bit full fine-tuning needs hundreds of GB."""
    kw = dict(model=CUSTOM, params_b=65, precision="bf16", seq_len=512, batch_size=1, lora_r=64,
              gradient_checkpointing=True, available_gib=48 * 1e9 / GIB)
    q = calculator_table(method="qlora", **kw)
    f = calculator_table(method="full", **kw)
    assert q["estimate"]["total_gib"] * GIB < 48e9
    assert f["estimate"]["total_gib"] * GIB > 300e9 and not f["fits"]


def test_fits_follows_available_memory():
    kw = dict(model="smollm2-135m", method="lora", precision="fp32", seq_len=256, batch_size=1)
    total = _total(**kw)
    assert calculator_table(available_gib=total * 2, **kw)["fits"]
    assert not calculator_table(available_gib=total * 1.1, **kw)["fits"]   # 80 % headroom
    r = calculator_table(**kw)   # this machine
    assert r["available_gib"] > 0 and r["where"]


@pytest.mark.parametrize("kw,name", [
    (dict(model=CUSTOM, params_b=0.05), "params_b"), (dict(model=CUSTOM, params_b=100), "params_b"),
    (dict(model=CUSTOM, params_b=None), "params_b"), (dict(model=CUSTOM, params_b=-1), "params_b"),
    (dict(model="gpt-9"), "model"), (dict(method="sft"), "method"), (dict(precision="int3"), "precision"),
    (dict(seq_len=0), "seq_len"), (dict(batch_size=-2), "batch_size"), (dict(lora_r=0), "lora_r"),
])
def test_bad_input_names_the_parameter(kw, name):
    with pytest.raises(ConfigError, match=name):
        calculator_table(**({"available_gib": 8.0} | kw))


def test_widget_builds_and_redraws():
    box = memory_calculator(model="llama-3.2-1b", method="lora", available_gib=16.0)
    out = box.output
    first = out.value
    assert "<table" in first and "llama-3.2-1b, lora" in first
    assert box.controls["params_b"].disabled            # only used for the custom size
    box.controls["method"].value = "full"
    assert out.value != first and "llama-3.2-1b, full" in out.value
    box.controls["model"].value = CUSTOM
    assert not box.controls["params_b"].disabled and "B (Llama-like shape)" in out.value
    before = out.value
    box.controls["params_b"].value = 30.0
    assert out.value != before


def test_widget_shows_bad_input_as_a_message():
    box = memory_calculator(available_gib=16.0)
    box.controls["seq_len"].value = 0
    assert "seq_len=0" in box.output.value and "<table" not in box.output.value
    box.controls["seq_len"].value = 128                   # and it recovers
    assert "<table" in box.output.value


# ------------------------------------------------------------------------------ template playground
def test_template_tokens_are_what_encode_trains(tiny_tokenizer):
    r = template_tokens(tiny_tokenizer, PLAYGROUND_TEMPLATE, PLAYGROUND_ROW, max_seq_len=48)
    example = templates.encode(PLAYGROUND_TEMPLATE, tiny_tokenizer, PLAYGROUND_ROW, 48)
    assert [t for t, _ in r["tokens"]] == tiny_tokenizer.convert_ids_to_tokens(example["input_ids"])
    assert [on for _, on in r["tokens"]] == [lab != -100 for lab in example["labels"]]
    assert r["text"].endswith(PLAYGROUND_ROW["output"] + tiny_tokenizer.eos_token)   # EOS once, at the end
    assert r["text"].count(tiny_tokenizer.eos_token) == PLAYGROUND_TEMPLATE.count("</s>") + 1
    assert r["n_masked"] > 0 and r["n_trained"] > 0 and r["tokens"][-1] == (tiny_tokenizer.eos_token, True)
    assert not any(on for _, on in r["tokens"][:r["n_masked"]])                  # the prompt comes first
    short = template_tokens(tiny_tokenizer, max_seq_len=5)
    assert len(short["tokens"]) == 5 and short["truncated"] == len(r["tokens"]) - 5


def test_playground_builds_and_redraws(tiny_tokenizer):
    box = template_playground(tiny_tokenizer)
    out = box.output
    first = out.value
    assert "training text" in first and "lab-token-trained" in first and "lab-token-masked" in first
    assert set(box.controls) == {"template", "field:input", "field:output", "max_seq_len"}
    box.controls["template"].value = "User: {input}\nAssistant: {output}"
    assert out.value != first and "User: What does the word gloomy mean?\nAssistant: It means sad." in out.value
    before = out.value
    box.controls["field:output"].value = "It means very sad indeed."
    assert out.value != before and "very sad indeed" in out.value
    box.controls["max_seq_len"].value = 4
    assert "cut by max_seq_len" in out.value


@pytest.mark.parametrize("template,words", [
    ("User: {question}\nAssistant: {output}", ["DataError", "['question']", "input", "output"]),
    ("Answer: {output}", ["ConfigError", "prompt field"]),
    ("User: {input\nAssistant: {output}", ["ValueError"]),
    ("User: {input} }} } {output}", ["ValueError", "Single '}'"]),
    ("<|user|> {input}</s><|assistant|> {output}</s></s>", ["DataError", "EOS"]),
])
def test_playground_shows_a_bad_template_in_one_line(tiny_tokenizer, template, words):
    box = template_playground(tiny_tokenizer)
    box.controls["template"].value = template
    shown = html.unescape(box.output.value)
    assert "lab-error" in shown and "lab-token" not in shown and "Traceback" not in shown
    assert shown.count("\n") == 0 and all(w in shown for w in words), shown
    box.controls["template"].value = PLAYGROUND_TEMPLATE                     # and it recovers
    assert "lab-token-trained" in box.output.value
