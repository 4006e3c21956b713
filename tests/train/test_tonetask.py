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


def test_scores_line_up_answers_with_their_rows(tmp_path, tiny_tokenizer, monkeypatch):
    """Known answers, so a score that compared an answer with another row's tone would show: row 1 is joy,
    row 2 fear; answering (fear, joy) is 0 right, (joy, joy) 1 of 2, (joy, 'blue') 1 right and 1 unparseable."""
    from labhelpers.train import tonetask

    rows = [{"phrase": "I was glad.", "tone": "joy"}, {"phrase": "We were scared.", "tone": "fear"}]
    _write(tmp_path, {"train": rows, "validation": rows, "test": rows})
    task = ToneTask(tiny_tokenizer, n_test=2, data_dir=tmp_path)
    for given, accuracy, unparseable in ((["fear", "joy"], 0.0, 0.0), (["joy", "joy"], 0.5, 0.0),
                                         (["joy", "blue sky"], 0.5, 0.5), (["joy", "fear"], 1.0, 0.0)):
        monkeypatch.setattr(tonetask, "generate_answers", lambda *a, given=given, **k: list(given))
        answers, scores = task.evaluate(model=None)
        assert answers == given
        assert (scores["accuracy"], scores["unparseable"]) == (accuracy, unparseable), (given, scores)
