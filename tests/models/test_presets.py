import json

import pytest

from labhelpers.errors import ModelError
from labhelpers.models import presets
from labhelpers.models.presets import MANIFEST_NAME, PRESETS, PRODUCER, preset_for, resolve_model
from labhelpers.paths import BASE_MODEL_DIR, REAL_MODEL_DIR

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
def no_local_copy(tmp_path, monkeypatch):
    """smollm2-135m with no converted folder, nothing in the hub cache, and the hub reachable."""
    folder = tmp_path / "smollm2-135m-instruct"
    monkeypatch.setitem(presets.LOCAL_BUILDS, "smollm2-135m", folder)
    monkeypatch.setattr(presets, "hub_cached", lambda repo_id, cache_dir=None: False)
    monkeypatch.setattr(presets, "hub_reachable", lambda timeout=3.0: True)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    return folder


def _write_ours(folder, size_ok=True):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / MANIFEST_NAME).write_text(json.dumps({
        "written_by": PRODUCER, "files": {"config.json": {"bytes": 2 if size_ok else 99}}}))


def test_resolve(no_local_copy):
    assert resolve_model("") == resolve_model("tiny") == str(BASE_MODEL_DIR)
    assert resolve_model("smollm2-135m") == SMOL
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_smollm2_prefers_the_converted_folder(no_local_copy):
    _write_ours(no_local_copy)
    assert resolve_model("smollm2-135m") == str(no_local_copy)
    assert preset_for(str(no_local_copy)) is PRESETS["smollm2-135m"]
    assert presets.LOCAL_BUILDS["smollm2-135m"] != REAL_MODEL_DIR  # the fixture kept the real folder out


@pytest.mark.parametrize("kind", ["incomplete", "foreign"])
def test_smollm2_ignores_folders_that_are_not_a_complete_build(no_local_copy, kind):
    if kind == "incomplete":
        _write_ours(no_local_copy, size_ok=False)
    else:
        no_local_copy.mkdir()
        (no_local_copy / "config.json").write_text("{}")
    assert resolve_model("smollm2-135m") == SMOL


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "unreachable"])
def test_smollm2_offline_without_the_folder_says_make_real_model(no_local_copy, monkeypatch, how):
    if how == "unreachable":
        monkeypatch.setattr(presets, "hub_reachable", lambda timeout=3.0: False)
    else:
        monkeypatch.setenv(how, "1")
    with pytest.raises(ModelError, match="make real-model") as info:
        resolve_model("smollm2-135m")
    message = str(info.value)
    assert "\n" not in message and str(no_local_copy) in message and SMOL in message
    monkeypatch.setattr(presets, "hub_cached", lambda repo_id, cache_dir=None: repo_id == SMOL)
    assert resolve_model("smollm2-135m") == SMOL  # a cached download works offline


def test_hub_cached_reads_the_cache(tmp_path):
    snap = tmp_path / "models--org--name" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (tmp_path / "models--org--name" / "refs").mkdir()
    (tmp_path / "models--org--name" / "refs" / "main").write_text("abc")
    (snap / "config.json").write_text("{}")
    assert not presets.hub_cached("org/name", cache_dir=tmp_path)  # no weights yet
    (snap / "model.safetensors").write_bytes(b"x")
    assert presets.hub_cached("org/name", cache_dir=tmp_path)


def test_hub_reachable_is_false_when_no_connection_opens(monkeypatch):
    def refuse(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(presets.socket, "create_connection", refuse)
    presets.hub_reachable.cache_clear()
    try:
        assert presets.hub_reachable() is False
    finally:
        presets.hub_reachable.cache_clear()


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
