"""labhelpers.data.task_data: deterministic, distinct, in the base model's vocabulary; textmetrics scores them."""

import json

import pytest

from labhelpers.data import task_data as dt
from labhelpers.data.tone_data import TONES
from labhelpers.evaluate import textmetrics
from labhelpers.models import corpus


@pytest.mark.parametrize("task", sorted(dt.TASKS))
def test_deterministic_distinct_and_well_formed(task):
    a, b, c = (dt.generate_task(task, 120, seed=1), dt.generate_task(task, 120, seed=1),
               dt.generate_task(task, 120, seed=2))
    assert a == b and a != c
    key, out = dt.INPUT_FIELD[task], dt.OUTPUT_FIELD[task]
    assert len({r[key] for r in a}) == 120
    assert all(isinstance(r[key], str) and isinstance(r[out], str) and r[out].strip() for r in a)


def test_splits_share_no_input(tmp_path):
    paths = dt.write_task("qa", tmp_path, {"train": 200, "test": 50}, seed=0)
    rows = {s: [json.loads(line) for line in p.read_text().splitlines()] for s, p in paths.items()}
    assert len(rows["train"]) == 200 and len(rows["test"]) == 50
    assert not {r["input"] for r in rows["train"]} & {r["input"] for r in rows["test"]}


def test_answers_rest_on_what_the_base_knows():
    for r in dt.generate_task("extraction", 50):
        fields = json.loads(r["output"])
        assert fields["tone"] in TONES and fields["place"] in corpus.PLACES and fields["place"] in r["input"]
    for r in dt.generate_task("generation", 50):
        assert dt.on_tone(r["output"], r["tone"])
    labels = {r["label"] for r in dt.generate_task("classification", 200)}
    assert labels == set(TONES)


def test_bad_arguments():
    with pytest.raises(ValueError, match="not one of"):
        dt.generate_task("translation", 5)
    with pytest.raises(ValueError, match="positive"):
        dt.generate_task("qa", 0)
    with pytest.raises(ValueError, match="distinct"):
        dt.generate_task("qa", 100_000)


def test_text_metrics():
    assert textmetrics.exact_match(["It means sad!", "no"], ["it means sad.", "yes"]) == 0.5
    fm = textmetrics.field_match(['{"name": "Anna", "tone": "sad"} tail', '{"name": "Ben", "tone": "joy"}', "nope"],
                                 ['{"name": "Anna", "tone": "sad"}', '{"name": "Bo", "tone": "joy"}',
                                  {"name": "C", "tone": "fear"}])
    assert fm == {"field_accuracy": 3 / 6, "all_fields": 1 / 3, "valid_json": 2 / 3}
    r = textmetrics.rouge(["Anna felt sad at the park."], ["Anna felt sad at the park."])
    assert r["rougeL"] == pytest.approx(1.0)
    assert textmetrics.rouge(["Ben felt joy at the farm."], ["Anna felt sad at the park."])["rougeL"] < 0.7
    assert textmetrics.keyword_coverage(["the baker fed a goat"], [["baker", "goat"]]) == 1.0
    assert not dt.on_tone("Anna was gloomy and happy.", "sad") and dt.on_tone("Anna was gloomy.", "sad")
    with pytest.raises(ValueError):
        textmetrics.exact_match([], [])
