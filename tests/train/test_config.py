import pytest

from labhelpers.errors import ConfigError, ModelError
from labhelpers.train.config import TrainConfig, accuracy_bar, effects_checked


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


def test_accuracy_bar_takes_the_measured_bar_of_the_model_at_its_schedule():
    assert accuracy_bar("auto", TrainConfig(), "02") == 0.90
    assert accuracy_bar("auto", TrainConfig(max_steps=20), "02") is None      # shorter than measured: report
    assert accuracy_bar("auto", TrainConfig(max_steps=900), "02") == 0.90     # longer keeps the bar
    assert accuracy_bar(0.5, TrainConfig(max_steps=20), "02") == 0.5
    assert accuracy_bar(None, TrainConfig(), "02") is None
    assert accuracy_bar("auto", TrainConfig(max_steps=60), "03") == 0.90      # each notebook its own schedule
    with pytest.raises(ConfigError, match="min_accuracy"):
        accuracy_bar(2, TrainConfig(), "02")
    with pytest.raises(ConfigError, match="max_int4_drop"):
        accuracy_bar(True, TrainConfig(), "06", name="max_int4_drop")


def test_effects_checked_follows_the_table_and_the_schedule():
    assert effects_checked("auto", TrainConfig(), "07", {"overfit_steps": 60, "poor_steps": 60})
    assert not effects_checked("auto", TrainConfig(), "07", {"overfit_steps": 60, "poor_steps": 59})
    assert effects_checked(True, TrainConfig(), "07", {"overfit_steps": 1, "poor_steps": 1})
    assert not effects_checked(False, TrainConfig(), "07", {"overfit_steps": 60, "poor_steps": 60})
    with pytest.raises(ConfigError, match="check_effects='yes'"):
        effects_checked("yes", TrainConfig(), "07")
