"""labhelpers.data: every kind of bad data gets its own message naming file, line and field; files stay untouched."""

import hashlib
import json

import pytest

from labhelpers import data
from labhelpers.errors import DataError

GOOD = [{"input": f"Where does Anna live {i}?", "output": f"Near the park {i}."} for i in range(20)]


def _write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


def _jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def untouched():
    """Files registered here must be byte-identical when the test ends."""
    seen = {}
    yield lambda p: seen.setdefault(p, _sha(p)) and p
    for p, sha in seen.items():
        assert _sha(p) == sha, f"{p} was modified"


# Kinds that stop at reading: (file name, bytes, expected fragments of the message)
READ_ERRORS = {
    "empty file": ("e.jsonl", b"", ["e.jsonl", "empty"]),
    "not a list": ("obj.json", '{"input": "a", "output": "b"}', ["obj.json:line 1", "top level is object", ".jsonl"]),
    "truncated json line": ("t.jsonl", _jsonl(GOOD[:2]) + '{"input": "Where is', ["t.jsonl:line 3", "cut off"]),
    "truncated json list": ("t.json", json.dumps(GOOD[:2], indent=1)[:-3], ["t.json:line", "truncated"]),
    "bom": ("b.jsonl", b"\xef\xbb\xbf" + _jsonl(GOOD[:2]).encode(), ["b.jsonl:line 1", "byte-order mark"]),
    "non utf8": ("n.jsonl", _jsonl(GOOD[:2]).encode() + b'{"input": "caf\xe9", "output": "x"}\n',
                 ["n.jsonl:line 3", "not valid UTF-8", "column 15"]),
    "mixed types": ("m.jsonl", _jsonl(GOOD[:3] + [{"input": 7, "output": "x"}]),
                    ["m.jsonl:line 4", "'input'", "mixed types", "line 1"]),
    "ragged csv": ("r.csv", "input,output\nhello,world\n\"a, b\",c\nonly,two,three\n",
                   ["r.csv:line 4", "3 values", "2 columns", "ragged"]),
    "record not an object": ("s.json", '[{"input": "a", "output": "b"},\n "just text"]',
                             ["s.json:line 2", "record is string"]),
}


@pytest.mark.parametrize("kind", sorted(READ_ERRORS))
def test_read_errors_name_where(tmp_path, untouched, kind):
    name, content, fragments = READ_ERRORS[kind]
    p = untouched(_write(tmp_path, name, content))
    with pytest.raises(DataError) as err:
        data.read_records(p)
    msg = str(err.value)
    for frag in fragments:
        assert frag in msg, f"{kind}: {frag!r} not in {msg!r}"
    assert "Fix" in msg or "fix" in msg.lower() or "use " in msg


def test_each_read_error_message_is_distinct(tmp_path):
    msgs = set()
    for kind, (name, content, _) in READ_ERRORS.items():
        with pytest.raises(DataError) as err:
            data.read_records(_write(tmp_path, name, content))
        msgs.add(str(err.value).split(":", 2)[-1][:40])
    assert len(msgs) == len(READ_ERRORS)


def test_bom_can_be_skipped_without_changing_the_file(tmp_path, untouched):
    p = untouched(_write(tmp_path, "b.jsonl", b"\xef\xbb\xbf" + _jsonl(GOOD[:2]).encode()))
    recs = data.read_records(p, allow_bom=True)
    assert recs.rows[0]["input"] == GOOD[0]["input"] and "byte-order mark" in recs.warnings[0]
    assert p.read_bytes().startswith(b"\xef\xbb\xbf")


def test_loads_json_jsonl_csv_and_datasets_style(tmp_path, untouched):
    j = untouched(_write(tmp_path, "a.json", json.dumps(GOOD, indent=2)))
    jl = untouched(_write(tmp_path, "a.jsonl", _jsonl(GOOD)))
    c = untouched(_write(tmp_path, "a.csv", "input,output\n" + "".join(f'"{r["input"]}","{r["output"]}"\n' for r in GOOD)))
    for p in (j, jl, c):
        ds = data.load(p)
        assert ds.column_names == ["input", "output"] and len(ds) == 20 and ds[3] == GOOD[3]
    ds = data.load("json", data_files=str(jl))
    assert len(ds) == 20
    dd = data.load("json", data_files={"train": str(jl), "test": str(j)})
    assert set(dd) == {"train", "test"}
    assert len(data.load("csv", data_files=[str(c), str(c)])) == 40
    rec = data.read_records(j)
    assert rec.lines[:3] == [2, 6, 10], "each record's starting line is kept"


def test_unknown_hub_name_offline_is_one_clear_error():
    with pytest.raises(DataError, match="neither a local file"):
        data.load("no-such-org/no-such-dataset-xyz")


# Kinds found by validate: (rows, validate kwargs, kind, line, field)
def _val(rows, **kw):
    recs = data.Records("d.jsonl", rows, list(range(1, len(rows) + 1)))
    return data.validate(recs, **kw)


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
    test = data.read_records(_write(tmp_path, "test.jsonl", _jsonl([GOOD[7], {"input": "q", "output": "a"}])))
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
        data.split(data.Records("d.jsonl", rows, list(range(1, 12))), validation=0.2, label_field="label")


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


def test_stratified_seeded_split_with_counts():
    rows = [{"text": f"t{i}", "label": lab} for i, lab in enumerate(["a"] * 60 + ["b"] * 30 + ["c"] * 10)]
    ds = data.Records("d", rows, list(range(1, 101))).to_dataset()
    s1, counts = data.split(ds, validation=0.2, label_field="label", seed=3)
    s2, _ = data.split(ds, validation=0.2, label_field="label", seed=3)
    s3, _ = data.split(ds, validation=0.2, label_field="label", seed=4)
    assert len(s1["validation"]) == 20 and s1["validation"]["text"] == s2["validation"]["text"]
    assert s1["validation"]["text"] != s3["validation"]["text"]
    assert counts.loc["a", "validation"] == 12 and counts.loc["b", "validation"] == 6 and counts.loc["c", "validation"] == 2
    assert counts.loc["total", "train"] == 80
    assert not set(s1["train"]["text"]) & set(s1["validation"]["text"])


def test_split_refuses_tiny_data_and_bad_fraction():
    ds = data.Records("two.json", GOOD[:2], [2, 6]).to_dataset()
    with pytest.raises(DataError, match="validation set would be empty"):
        data.split(ds, validation=0.15)
    with pytest.raises(DataError, match="fraction"):
        data.split(ds, validation=15)


def test_exercise_checker_for_error_lines():
    from labhelpers.exercises import check_error_lines

    rows = GOOD[:4] + [{"input": "x?"}, dict(GOOD[0])]
    rep = _val(rows, required=["input", "output"])
    assert check_error_lines(None, rep).ok is None
    assert check_error_lines([5], rep).ok is True
    fb = check_error_lines([5, 6], rep)
    assert fb.ok is False and "warning" in fb.message
    assert check_error_lines([], rep).ok is False
    assert check_error_lines("5", rep).ok is False


def test_oversample_balances_labels_without_changing_the_input():
    rows = [{"t": "a", "i": i} for i in range(7)] + [{"t": "b", "i": 10}, {"t": "b", "i": 11}, {"t": "c", "i": 20}]
    before = json.dumps(rows)
    out = data.oversample(rows, "t", seed=3)
    assert json.dumps(rows) == before
    counts = {lab: sum(r["t"] == lab for r in out) for lab in "abc"}
    assert counts == {"a": 7, "b": 7, "c": 7}
    b_counts = sorted(sum(r["i"] == i for r in out) for i in (10, 11))
    assert b_counts == [3, 4]  # 7 = 2 x 3 + 1: whole repeats, then the remainder without replacement
    assert sorted(r["i"] for r in out if r["t"] == "a") == list(range(7))  # the largest label is kept as is
    assert out == data.oversample(rows, "t", seed=3) and out != data.oversample(rows, "t", seed=4)
    assert [r["t"] for r in out[:7]] != ["a"] * 7  # shuffled, not grouped by label
    out[0]["t"] = "changed"
    assert "changed" not in json.dumps(rows)  # copies, not the caller's dicts


def test_oversample_names_the_row_without_a_label():
    with pytest.raises(DataError, match=r"rows\.jsonl:line 2: field 't' is missing"):
        data.oversample(data.Records("rows.jsonl", [{"t": "a"}, {"x": 1}], [1, 2]), "t")
    with pytest.raises(DataError, match="no rows"):
        data.oversample([], "t")
