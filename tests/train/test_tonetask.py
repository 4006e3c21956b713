import json

from labhelpers.evaluate.metrics import UNPARSEABLE, parse_label
from labhelpers.train.tonetask import ToneTask


def _write(tmp_path, rows_by_split):
    for split, rows in rows_by_split.items():
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_tone_task_encodes_and_scores(tmp_path, tiny_tokenizer, tiny_model):
    rows = [{"phrase": "I was glad.", "tone": "joy"}, {"phrase": "We were scared.", "tone": "fear"}]
    _write(tmp_path, {"train": rows, "validation": rows, "test": rows})
    task = ToneTask(tiny_tokenizer, n_test=2, data_dir=tmp_path)
    assert len(task.test) == 2 and task.prompts[0].endswith("<|assistant|>")
    assert set(task.train.column_names) == {"input_ids", "attention_mask", "labels"}
    assert task.train is task.train  # tokenized once
    answers, scores = task.evaluate(tiny_model)
    assert len(answers) == 2
    # The scores are those of the answers as parse_label reads them: a first word that names no tone is
    # unparseable (and wrong), never guessed.
    preds = [parse_label(a, task.labels) for a in answers]
    truth = [r["tone"] for r in rows]
    assert scores["accuracy"] == sum(p == t for p, t in zip(preds, truth)) / 2
    assert scores["unparseable"] == sum(p == UNPARSEABLE for p in preds) / 2
