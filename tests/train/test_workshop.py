"""The per-model workshop table: every notebook, both shipped models, "auto" resolved or refused by name."""

import inspect
import re

import pytest

from labhelpers.errors import ConfigError
from labhelpers.models.presets import PRESETS
from labhelpers.paths import NOTEBOOKS_DIR, REAL_MODEL_DIR
from labhelpers.train import workshop

TINY_PATH = PRESETS["tiny"].path
NOTEBOOKS = sorted(p.stem[:2] for p in NOTEBOOKS_DIR.glob("0*.py"))


def test_every_notebook_with_a_schedule_has_both_shipped_models():
    # 00 trains nothing; every other notebook has a schedule for both models the course ships.
    assert sorted(workshop.WORKSHOP) == [n for n in NOTEBOOKS if n != "00"]
    for notebook, models in workshop.WORKSHOP.items():
        assert set(models) == {workshop.TINY, workshop.SMOLLM2}, notebook
        for model, e in models.items():
            assert set(e) == {"steps", "bars"} and e["steps"] and e["bars"], (notebook, model)
            for name, v in e["steps"].items():
                ok = 0 < v < 1 if name == "learning_rate" else isinstance(v, int) and v >= 1
                assert ok, (notebook, model, name, v)


def test_each_step_parameter_is_a_notebook_parameter_set_to_auto():
    # The table and the notebooks' parameters cells name the same things: a renamed parameter fails here.
    for notebook, models in workshop.WORKSHOP.items():
        source = next(NOTEBOOKS_DIR.glob(f"{notebook}_*.py")).read_text(encoding="utf-8")
        for name in models[workshop.TINY]["steps"]:
            assert re.search(rf'^{name} = "auto"', source, re.M), (notebook, name)
        for name in models[workshop.TINY]["bars"]:
            assert name in source, (notebook, name)


def test_the_real_model_resolves_to_its_key_from_the_folder_and_the_hub_id():
    assert workshop.model_key(TINY_PATH) == "tiny"
    assert workshop.model_key(str(REAL_MODEL_DIR)) == "smollm2-135m"
    assert workshop.model_key(PRESETS["smollm2-135m"].path) == "smollm2-135m"
    assert workshop.model_key("Qwen/Qwen2.5-0.5B-Instruct") is None


def test_auto_steps_resolve_per_model_and_numbers_pass_through():
    assert workshop.steps("02", TINY_PATH, max_steps="auto") == {"max_steps": 300}
    assert workshop.steps("02", str(REAL_MODEL_DIR), max_steps="auto") == {"max_steps": 30}
    assert workshop.steps("02", TINY_PATH, max_steps=7) == {"max_steps": 7}


def test_auto_steps_on_an_unknown_model_name_the_parameter_and_the_fix():
    with pytest.raises(ConfigError, match=r"max_steps='auto'.*-p max_steps"):
        workshop.steps("02", "Qwen/Qwen2.5-0.5B-Instruct", max_steps="auto")
    with pytest.raises(ConfigError, match="notebook '42'"):
        workshop.steps("42", TINY_PATH, max_steps="auto")


def test_bars_apply_only_at_the_measured_schedule_or_longer():
    assert workshop.bar("04", TINY_PATH, "min_margin", "auto", {"qa_steps": 100, "task_steps": 150})["qa"] == 0.5
    assert workshop.bar("04", TINY_PATH, "min_margin", "auto", {"qa_steps": 100, "task_steps": 149}) is None
    assert workshop.bar("04", "Qwen/Qwen2.5-0.5B-Instruct", "min_margin", "auto", {}) is None
    assert workshop.bar("04", TINY_PATH, "min_margin", 0.1, {}) == 0.1


def test_describe_says_which_bars_apply_or_why_none():
    assert "smollm2-135m" in workshop.describe("02", str(REAL_MODEL_DIR))
    assert "no measured bars" in workshop.describe("02", "Qwen/Qwen2.5-0.5B-Instruct")
    assert inspect.getdoc(workshop)


def test_a_schedule_setting_that_is_not_a_step_count_keeps_the_bars_only_at_its_measured_value():
    measured = {"overfit_rows": 16, "overfit_steps": 60, "eval_steps": 10, "poor_steps": 60}
    assert workshop.bar("07", TINY_PATH, "check_effects", "auto", measured) is True
    assert workshop.bar("07", TINY_PATH, "check_effects", "auto", {**measured, "overfit_steps": 90}) is True
    # more rows overfit less, so a larger value is not "at least as good": no bar
    assert workshop.bar("07", TINY_PATH, "check_effects", "auto", {**measured, "overfit_rows": 32}) is None
    assert workshop.bar("07", TINY_PATH, "check_effects", "auto", {**measured, "eval_steps": 20}) is None


def test_effect_bars_are_the_models_own_or_the_tiny_models():
    real = workshop.effect_bars("07", workshop.PRESETS[workshop.SMOLLM2].path)
    assert real["imbalance_gain"] is None and real["remedy_min_gain"]["lower alpha"] == 0.1
    assert workshop.effect_bars("07", "Qwen/Qwen2.5-0.5B-Instruct") == workshop.effect_bars("07", TINY_PATH)
    # every per-remedy table names the same six remedies the notebook trains
    for key in (workshop.TINY, workshop.SMOLLM2):
        assert len(workshop.WORKSHOP["07"][key]["bars"]["remedy_min_gain"]) == 6
