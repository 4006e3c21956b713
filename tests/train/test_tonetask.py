import json

from labhelpers.train.tonetask import ToneTask


def _write(tmp_path, rows_by_split):
    for split, rows in rows_by_split.items():
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_tone_task_encodes_and_scores(tmp_path, tiny_tokenizer, tiny_model):
    rows = [{"phrase": "I was glad.", "tone": "joy"}, {"phrase": "We were scared.", "tone": "fear"}]
    _write(tmp_path, {"train": rows, "validation": rows, "test": rows})
    task = ToneTask(tiny_tokenizer, n_test=1, data_dir=tmp_path)
    assert len(task.test) == 1 and task.prompts[0].endswith("<|assistant|>")
    assert set(task.train.column_names) == {"input_ids", "attention_mask", "labels"}
    assert task.train is task.train  # tokenized once
    answers, scores = task.evaluate(tiny_model)
    assert len(answers) == 1 and 0 <= scores["accuracy"] <= 1
    # An untrained test-size model names no tone: it must count as unparseable, not be guessed.
    assert scores["unparseable"] == 1.0 - scores["accuracy"] or scores["accuracy"] == 1.0
