import pytest

from labhelpers.errors import ModelError
from labhelpers.models.presets import PRESETS, preset_for, resolve_model
from labhelpers.paths import BASE_MODEL_DIR


def test_resolve():
    assert resolve_model("") == resolve_model("tiny") == str(BASE_MODEL_DIR)
    assert resolve_model("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_local_folder_needs_config(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path)


@pytest.mark.parametrize("name", ["./models/mine", "/no/such/dir", "justaword"])
def test_missing_paths_are_named(name):
    with pytest.raises(ModelError, match=name.strip("./")):
        resolve_model(name)


def test_presets_cover_the_real_models():
    ids = {p.path for p in PRESETS.values()}
    for hub_id in ["HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-0.5B-Instruct",
                   "meta-llama/Llama-3.2-1B-Instruct", "microsoft/Phi-3.5-mini-instruct"]:
        assert hub_id in ids
        assert preset_for(hub_id).path == hub_id
    for p in PRESETS.values():
        assert "{phrase}" in p.tone_template and "{tone}" in p.tone_template and p.target_modules
