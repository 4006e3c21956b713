import pytest

from labhelpers.errors import ConfigError, ModelError
from labhelpers.train.config import TrainConfig, accuracy_bar


def test_defaults_resolve_to_the_embedded_model():
    from labhelpers.paths import BASE_MODEL_DIR

    assert TrainConfig().model_path == str(BASE_MODEL_DIR)


@pytest.mark.parametrize("kw, word", [
    ({"method": "lorra"}, "method"),
    ({"max_steps": -5}, "max_steps"),
    ({"max_steps": 2.5}, "max_steps"),
    ({"lora_r": 0}, "lora_r"),
    ({"learning_rate": 0}, "learning_rate"),
    ({"learning_rate": "1e-3"}, "learning_rate"),
    ({"lora_dropout": 1.0}, "lora_dropout"),
    ({"target_modules": []}, "target_modules"),
    ({"batch_size": True}, "batch_size"),
])
def test_bad_values_are_named(kw, word):
    with pytest.raises(ConfigError, match=word):
        TrainConfig(**kw)


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no such folder"):
        TrainConfig(model_name=str(tmp_path / "nope"))


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        TrainConfig.from_dict({"learning_rat": 1e-3}, source="run.yaml")


def test_accuracy_bar():
    assert accuracy_bar("auto", TrainConfig()) == 0.90
    assert accuracy_bar("auto", TrainConfig(max_steps=20)) is None
    assert accuracy_bar(0.5, TrainConfig(max_steps=20)) == 0.5
    assert accuracy_bar(None, TrainConfig()) is None
    with pytest.raises(ConfigError, match="min_accuracy"):
        accuracy_bar(2, TrainConfig())
