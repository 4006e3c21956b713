"""Running ORT GenAI folders: adapters switch in one process and match PyTorch PeftModel each time."""

import shutil

import onnx_artefacts as art
import pytest

from labhelpers.deploy.onnx_infer import GenAIModel, optimum_generate, parity
from labhelpers.errors import ConfigError, ModelError


@pytest.fixture(scope="session")
def served(base, root):
    """The runtime-adapter folder with adapters A and B loaded (1 thread: the machine is shared)."""
    model = GenAIModel(art.genai_runtime(base, root), threads=1)
    for name, path in art.onnx_adapters(base, root).items():
        model.load_adapter(path, name)
    return model


def test_switching_adapters_matches_peft_every_time(base, root, served):
    reference = art.peft_tokens(base, root)
    assert len({reference[None], reference["A"], reference["B"]}) == 3, "adapters must change the outputs"
    model_id = id(served.model)
    for name in ("A", "B", None, "A", None, "B"):
        got = tuple(tuple(served.generate_tokens(p, art.NEW_TOKENS, adapter=name)) for p in art.chat_prompts(base))
        assert got == reference[name], f"adapter {name}"
    assert id(served.model) == model_id  # switching never reloaded the base


def test_generate_and_stream_give_the_pytorch_text(base, root, served):
    tok = art.tokenizer(base)
    for i, prompt in enumerate(art.chat_prompts(base)):
        expected = art.visible(tok.decode(art.peft_tokens(base, root)["B"][i], skip_special_tokens=True))
        assert expected
        answer = served.generate(prompt, art.NEW_TOKENS, adapter="B")
        assert art.visible(answer) == expected
        pieces = list(served.stream(prompt, art.NEW_TOKENS, adapter="B"))
        assert len(pieces) > 1 and "".join(pieces).strip() == answer


def test_chat_prompt_and_encode_match_transformers(base, served):
    tok = art.tokenizer(base)
    text = served.chat_prompt("  the cat sat  ")
    assert text == tok.apply_chat_template([{"role": "user", "content": "  the cat sat  "}], tokenize=False,
                                           add_generation_prompt=True)
    assert text.startswith("<s>")  # og's encode adds no BOS: the template must write it
    assert served.encode(text) == tok(text, add_special_tokens=False)["input_ids"]


def test_optimum_generate_returns_the_pytorch_answers(base, root, tmp_path):
    merged = art.merged_a(base, root)
    folder = art.optimum_export(base, root)
    tok = art.tokenizer(str(merged))
    expected = [tok.decode(t, skip_special_tokens=True).strip() for t in art.pytorch_tokens(str(merged))]
    prompts = list(art.chat_prompts(base))
    assert optimum_generate(folder, None, prompts, art.NEW_TOKENS) == expected
    # Batched with left padding: the same answers, prompts of different lengths in one batch.
    assert len({len(tok(p)["input_ids"]) for p in prompts}) > 1
    assert optimum_generate(folder, None, prompts, art.NEW_TOKENS, batch_size=len(prompts)) == expected
    with pytest.raises(ModelError, match="does not exist"):
        optimum_generate(tmp_path / "nope", tok, ["x"], 2)


def test_parity_reports_first_difference():
    assert parity([1, 2, 3], [1, 2, 3]) == {"match": True, "first_diff": None, "same": 3, "compared": 3,
                                            "agreement": 1.0}
    p = parity([1, 2, 3, 4], [1, 9, 3, 4])
    assert not p["match"] and p["first_diff"] == 1 and p["agreement"] == 0.75
    short = parity([1, 2, 3], [1, 2])
    assert not short["match"] and short["first_diff"] == 2 and short["agreement"] == pytest.approx(2 / 3)


def test_folder_errors_are_clear(base, root, tmp_path):
    with pytest.raises(ModelError, match="does not exist.*build_genai"):
        GenAIModel(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no genai_config.json"):
        GenAIModel(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(art.genai_runtime(base, root), broken)
    (broken / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="damaged"):
        GenAIModel(broken, threads=1)


def test_adapter_errors_are_clear(base, root, served, tmp_path):
    with pytest.raises(ModelError, match="not found.*write_onnx_adapter"):
        served.load_adapter(tmp_path / "missing.onnx_adapter", "C")
    with pytest.raises(ModelError, match="another base.*expects"):
        served.load_adapter(art.foreign_onnx_adapter(base, root), "C")
    assert "C" not in served.adapters
    with pytest.raises(ModelError, match="no adapter named 'C'.*'A', 'B'"):
        served.generate(art.chat_prompts(base)[0], 2, adapter="C")
    plain = GenAIModel(art.genai_plain(base, root), threads=1)
    with pytest.raises(ModelError, match="no LoRA inputs.*runtime_adapters=True"):
        plain.load_adapter(art.onnx_adapters(base, root)["A"], "A")
    with pytest.raises(ConfigError, match="max_new_tokens=0"):
        served.generate(art.chat_prompts(base)[0], 0)
