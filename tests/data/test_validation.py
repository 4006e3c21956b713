"""labhelpers.data.validation: every kind of bad data gets its own issue naming file, line and field."""

import json

import pytest

from labhelpers.data import records, validation
from labhelpers.errors import DataError

GOOD = [{"input": f"Where does Anna live {i}?", "output": f"Near the park {i}."} for i in range(20)]


def _write(tmp_path, name, content):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    return p


def _jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


# Kinds found by validate: (rows, validate kwargs, kind, line, field)
def _val(rows, **kw):
    recs = records.Records("d.jsonl", rows, list(range(1, len(rows) + 1)))
    return validation.validate(recs, **kw)


def test_missing_field():
    rows = GOOD[:3] + [{"input": "x?"}]
    rep = _val(rows, required={"input": str, "output": str})
    (e,) = rep.errors
    assert (e.kind, e.line, e.field) == ("missing_field", 4, "output")
    with pytest.raises(DataError, match=r"d.jsonl:line 4: field 'output' required field is missing"):
        rep.raise_for_errors()


def test_wrong_type():
    rows = GOOD[:3] + [{"input": "x?", "output": ["a", "b"]}]
    (e,) = _val(rows, required={"input": str, "output": str}).errors
    assert (e.kind, e.line, e.field) == ("wrong_type", 4, "output") and "expected string" in e.message


def test_empty_value_and_control_characters():
    rows = GOOD[:2] + [{"input": "   ", "output": "ok"}, {"input": "bell\x07", "output": "ok"}]
    rep = _val(rows, required={"input": str, "output": str})
    assert [(e.kind, e.line, e.field) for e in rep.errors] == [("empty_value", 3, "input"),
                                                               ("control_char", 4, "input")]


def test_exact_and_near_duplicates_are_warnings():
    rows = GOOD[:3] + [dict(GOOD[1]), {"input": GOOD[2]["input"].upper(), "output": GOOD[2]["output"] + "!"}]
    rep = _val(rows, required=["input", "output"])
    assert rep.ok
    assert [(w.kind, w.line) for w in rep.warnings] == [("duplicate", 4), ("near_duplicate", 5)]
    assert "line 2" in rep.warnings[0].message and "line 3" in rep.warnings[1].message


def test_train_test_leakage(tmp_path):
    test = records.read_records(_write(tmp_path, "test.jsonl", _jsonl([GOOD[7], {"input": "q", "output": "a"}])))
    rep = _val(GOOD, required=["input", "output"], others={"test": test})
    (e,) = rep.errors
    assert e.kind == "leakage" and e.line == 8 and "test.jsonl:line 1" in e.message


def test_unknown_template_field_lists_columns():
    rep = _val(GOOD, template="User: {question}\nAssistant: {output}")
    (e,) = rep.errors
    assert e.kind == "template_field" and e.field == "question" and "input, output" in e.message


def test_label_with_one_example_and_imbalance():
    rows = [{"text": f"t{i}", "label": "a"} for i in range(10)] + [{"text": "u", "label": "b"}]
    rep = _val(rows, label_field="label")
    kinds = {(w.kind, w.line) for w in rep.warnings}
    assert ("rare_label", 11) in kinds and ("imbalance", None) in kinds
    assert rep.label_counts == {"a": 10, "b": 1}
    with pytest.raises(DataError, match=r"row 11: field 'label': label 'b' has only 1 example"):
        records.split(records.Records("d.jsonl", rows, list(range(1, 12))), validation=0.2, label_field="label")


def test_over_long_rows_counted(tiny_tokenizer):
    rows = GOOD[:5] + [{"input": "Anna walked " * 60, "output": "far"}]
    rep = _val(rows, required=["input", "output"], tokenizer=tiny_tokenizer, max_seq_len=40,
               template="<|user|> {input}</s><|assistant|> {output}")
    assert rep.n_truncated() == 1 and [w.line for w in rep.warnings if w.kind == "too_long"] == [6]
    assert rep.summary()["truncated_rows"] == 1 and len(rep.token_lengths) == 6
    assert len(rep.to_frame()) == len(rep.issues)


def test_clean_data_has_no_issues():
    rep = _val(GOOD, required={"input": str, "output": str})
    assert rep.issues == [] and rep.ok


def test_exercise_checker_for_error_lines():
    from labhelpers.course.exercises import check_error_lines

    rows = GOOD[:4] + [{"input": "x?"}, dict(GOOD[0])]
    rep = _val(rows, required=["input", "output"])
    assert check_error_lines(None, rep).ok is None
    assert check_error_lines([5], rep).ok is True
    fb = check_error_lines([5, 6], rep)
    assert fb.ok is False and "warning" in fb.message
    assert check_error_lines([], rep).ok is False
    assert check_error_lines("5", rep).ok is False




def test_a_json_array_on_one_line_names_each_bad_record_by_number(tmp_path):
    rows = GOOD[:3] + [{"input": "x?"}, {"input": "y?", "output": ""}] + [GOOD[0]]
    path = _write(tmp_path, "one_line.json", json.dumps(rows))   # json.dumps writes one line
    report = validation.validate(records.read_records(path), required={"input": str, "output": str})
    text = [str(issue) for issue in report.issues]
    assert any("one_line.json:line 1, record 4: field 'output'" in t for t in text), text
    assert any("one_line.json:line 1, record 5: field 'output'" in t for t in text), text
    assert any("line 1, record 6:" in t and "duplicate of line 1, record 1" in t for t in text), text


def test_one_record_per_line_keeps_line_numbers_alone(tmp_path):
    path = _write(tmp_path, "d.jsonl", _jsonl(GOOD[:3] + [{"input": "x?"}]))
    (issue,) = validation.validate(records.read_records(path), required={"input": str, "output": str}).issues
    assert str(issue).endswith("d.jsonl:line 4: field 'output' required field is missing (row has: input). "
                               'Fix: add "output" to this record, or drop the record'), str(issue)


def test_a_non_object_in_a_one_line_array_names_its_record(tmp_path):
    path = _write(tmp_path, "bad.json", json.dumps([GOOD[0], GOOD[1], ["not", "a", "record"]]))
    with pytest.raises(DataError, match=r"bad\.json:line 1, record 3: record is"):
        records.read_records(path)
