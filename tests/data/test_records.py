"""labhelpers.data.records: every kind of unreadable data gets its own message naming file and line; files stay
untouched; splits are seeded and stratified."""

import hashlib
import json

import pytest

from labhelpers.data import records
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
        records.read_records(p)
    msg = str(err.value)
    for frag in fragments:
        assert frag in msg, f"{kind}: {frag!r} not in {msg!r}"
    assert "Fix" in msg or "fix" in msg.lower() or "use " in msg


def test_each_read_error_message_is_distinct(tmp_path):
    msgs = set()
    for kind, (name, content, _) in READ_ERRORS.items():
        with pytest.raises(DataError) as err:
            records.read_records(_write(tmp_path, name, content))
        msgs.add(str(err.value).split(":", 2)[-1][:40])
    assert len(msgs) == len(READ_ERRORS)


def test_bom_can_be_skipped_without_changing_the_file(tmp_path, untouched):
    p = untouched(_write(tmp_path, "b.jsonl", b"\xef\xbb\xbf" + _jsonl(GOOD[:2]).encode()))
    recs = records.read_records(p, allow_bom=True)
    assert recs.rows[0]["input"] == GOOD[0]["input"] and "byte-order mark" in recs.warnings[0]
    assert p.read_bytes().startswith(b"\xef\xbb\xbf")


def test_loads_json_jsonl_csv_and_datasets_style(tmp_path, untouched):
    j = untouched(_write(tmp_path, "a.json", json.dumps(GOOD, indent=2)))
    jl = untouched(_write(tmp_path, "a.jsonl", _jsonl(GOOD)))
    csv_rows = "".join(f'"{r["input"]}","{r["output"]}"\n' for r in GOOD)
    c = untouched(_write(tmp_path, "a.csv", "input,output\n" + csv_rows))
    for p in (j, jl, c):
        ds = records.load(p)
        assert ds.column_names == ["input", "output"] and len(ds) == 20 and ds[3] == GOOD[3]
    ds = records.load("json", data_files=str(jl))
    assert len(ds) == 20
    dd = records.load("json", data_files={"train": str(jl), "test": str(j)})
    assert set(dd) == {"train", "test"}
    assert len(records.load("csv", data_files=[str(c), str(c)])) == 40
    rec = records.read_records(j)
    assert rec.lines[:3] == [2, 6, 10], "each record's starting line is kept"


def test_unknown_hub_name_offline_is_one_clear_error(monkeypatch):
    # No hub from here: the error comes at once (it took 23 s of datasets' retries before) and names the fixes.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(records, "hub_reachable", lambda: False)
    with pytest.raises(DataError, match="not a local file .* hub cannot be reached.*HF_HUB_OFFLINE=1"):
        records.load("no-such-org/no-such-dataset-xyz")


def test_a_hub_failure_is_one_clear_error(monkeypatch):
    # Whatever datasets raises for a hub name (here as it does offline: datasets' own retries take 20 s, so
    # its call is replaced), the learner gets one DataError that says what the name is not.
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'no-such-org/no-such-dataset-xyz' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(records.datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"could not load 'no-such-org/no-such-dataset-xyz' \(ConnectionError: "
                                        r"Couldn't reach.*neither a local file"):
        records.load("no-such-org/no-such-dataset-xyz")


def test_stratified_seeded_split_with_counts():
    rows = [{"text": f"t{i}", "label": lab} for i, lab in enumerate(["a"] * 60 + ["b"] * 30 + ["c"] * 10)]
    ds = records.Records("d", rows, list(range(1, 101))).to_dataset()
    s1, counts = records.split(ds, validation=0.2, label_field="label", seed=3)
    s2, _ = records.split(ds, validation=0.2, label_field="label", seed=3)
    s3, _ = records.split(ds, validation=0.2, label_field="label", seed=4)
    assert len(s1["validation"]) == 20 and s1["validation"]["text"] == s2["validation"]["text"]
    assert s1["validation"]["text"] != s3["validation"]["text"]
    assert counts.loc["a", "validation"] == 12 and counts.loc["b", "validation"] == 6
    assert counts.loc["c", "validation"] == 2
    assert counts.loc["total", "train"] == 80
    assert not set(s1["train"]["text"]) & set(s1["validation"]["text"])


def test_split_refuses_tiny_data_and_bad_fraction():
    ds = records.Records("two.json", GOOD[:2], [2, 6]).to_dataset()
    with pytest.raises(DataError, match="validation set would be empty"):
        records.split(ds, validation=0.15)
    with pytest.raises(DataError, match="fraction"):
        records.split(ds, validation=15)


def test_oversample_balances_labels_without_changing_the_input():
    rows = [{"t": "a", "i": i} for i in range(7)] + [{"t": "b", "i": 10}, {"t": "b", "i": 11}, {"t": "c", "i": 20}]
    before = json.dumps(rows)
    out = records.oversample(rows, "t", seed=3)
    assert json.dumps(rows) == before
    counts = {lab: sum(r["t"] == lab for r in out) for lab in "abc"}
    assert counts == {"a": 7, "b": 7, "c": 7}
    b_counts = sorted(sum(r["i"] == i for r in out) for i in (10, 11))
    assert b_counts == [3, 4]  # 7 = 2 x 3 + 1: whole repeats, then the remainder without replacement
    assert sorted(r["i"] for r in out if r["t"] == "a") == list(range(7))  # the largest label is kept as is
    assert out == records.oversample(rows, "t", seed=3) and out != records.oversample(rows, "t", seed=4)
    assert [r["t"] for r in out[:7]] != ["a"] * 7  # shuffled, not grouped by label
    out[0]["t"] = "changed"
    assert "changed" not in json.dumps(rows)  # copies, not the caller's dicts


def test_oversample_names_the_row_without_a_label():
    with pytest.raises(DataError, match=r"rows\.jsonl:line 2: field 't' is missing"):
        records.oversample(records.Records("rows.jsonl", [{"t": "a"}, {"x": 1}], [1, 2]), "t")
    with pytest.raises(DataError, match="no rows"):
        records.oversample([], "t")
