"""Load and split a fine-tuning dataset: JSON (a list of records), JSONL, CSV or a hub name.

Every problem names the file, the line and the field, and says how to fix it. Files are only ever
opened for reading (``"rb"``): nothing in the user's data is modified, a BOM or a bad byte included.
Checking rows that parsed (fields, duplicates, leakage, labels, lengths) is ``data.validation``'s job.

The path a dataset takes::

    records = read_records("qa.jsonl")                 # strict parse, line numbers kept
    report = validation.validate(records, required={"input": str, "output": str}, tokenizer=tok, max_seq_len=128)
    report.raise_for_errors()                            # errors stop; warnings stay in the report
    splits, counts = split(records.to_dataset(), validation=0.15, label_field=None, seed=0)
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pandas as pd
from sklearn.model_selection import train_test_split

from labhelpers.errors import DataError
from labhelpers.models.presets import hub_offline, hub_reachable

FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "true/false", list: "list", dict: "object",
              type(None): "null"}


def type_name(value) -> str:
    """The JSON name of a value's type ("string", "integer", ...), for messages."""
    return TYPE_NAMES.get(type(value), type(value).__name__)


# ----------------------------------------------------------------------------------------- reading
@dataclass
class Records:
    """Rows of one file with the line each row starts on (1-based), for messages that name a line."""

    source: str
    rows: list[dict]
    lines: list[int]
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for row in self.rows:
            cols.update(dict.fromkeys(row))
        return list(cols)

    def record_number(self, i: int) -> int | None:
        """Row ``i``'s 1-based record number where its line holds other records too (a JSON array written
        on one line), else None: there the line alone names the row."""
        if not hasattr(self, "_per_line"):
            self._per_line = Counter(self.lines)
        return i + 1 if self._per_line[self.lines[i]] > 1 else None

    def place(self, i: int) -> str:
        """``line N``, or ``line N, record K`` where the line alone does not name the row."""
        k = self.record_number(i)
        return f"line {self.lines[i]}" + (f", record {k}" if k else "")

    def where(self, i: int) -> str:
        return f"{self.source}:{self.place(i)}"

    def to_dataset(self):
        """The rows as a ``datasets.Dataset`` (columns in first-seen order)."""

        cols = self.columns
        return datasets.Dataset.from_dict({c: [row.get(c) for row in self.rows] for c in cols})


def _line_at(data: bytes | str, offset: int) -> int:
    return data.count(b"\n" if isinstance(data, bytes) else "\n", 0, offset) + 1


def _decode(raw: bytes, source: str, allow_bom: bool) -> tuple[str, list[str]]:
    warnings = []
    if raw.startswith(b"\xef\xbb\xbf"):
        if not allow_bom:
            raise DataError(f"{source}:line 1: the file starts with a UTF-8 byte-order mark (BOM, bytes EF BB BF), "
                            "which JSON parsers and CSV headers trip over (the first column would be named "
                            "'\\ufeff...'). Fix: save the file as 'UTF-8' without BOM, or pass allow_bom=True "
                            "to skip it (the file itself is not changed).")
        raw = raw[3:]
        warnings.append(f"{source}:line 1: skipped a UTF-8 byte-order mark (BOM)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = _line_at(raw, err.start)
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        bad = raw[err.start:err.start + 4]
        raise DataError(f"{source}:line {line}: byte {bad[:1].hex().upper()} at column {col} is not valid UTF-8 "
                        f"(the file is probably Latin-1/Windows-1252; bytes {bad!r}). Fix: re-save it as UTF-8, "
                        "e.g. `iconv -f cp1252 -t utf-8 in > out`.") from None
    return text, warnings


def _check_record(obj, source: str, line: int, record: int | None = None) -> dict:
    if not isinstance(obj, dict):
        at = f"line {line}" + (f", record {record}" if record else "")
        raise DataError(f"{source}:{at}: record is {type_name(obj)} ({str(obj)[:40]!r}), expected an object "
                        'like {"input": "...", "output": "..."}. Fix: wrap each row in {...} with named fields.')
    return obj


def _parse_json_list(text: str, source: str) -> tuple[list[dict], list[int]]:
    dec = json.JSONDecoder()
    ws = re.compile(r"\s*")
    i = ws.match(text, 0).end()
    if text[i:i + 1] != "[":
        try:
            top = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{source}:line {err.lineno}: not valid JSON ({err.msg}, column {err.colno}). "
                            "Fix: check quotes, commas and brackets there.") from None
        hint = (" If each line is one record, name the file .jsonl." if isinstance(top, dict) else "")
        raise DataError(f"{source}:line {_line_at(text, i)}: the top level is {type_name(top)}, expected a list of "
                        f'records [{{"input": ..., "output": ...}}, ...].{hint} Fix: put the records in [ ].')
    rows, lines = [], []
    i = ws.match(text, i + 1).end()
    if text[i:i + 1] == "]":
        return rows, lines
    while True:
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as err:
            cut = " (the file looks truncated)" if err.pos >= len(text.rstrip()) else ""
            raise DataError(f"{source}:line {err.lineno}: not valid JSON{cut} ({err.msg}, column {err.colno}) in "
                            f"record {len(rows) + 1}. Fix: check quotes, commas and brackets there.") from None
        line = _line_at(text, i)
        rows.append(_check_record(obj, source, line, len(rows) + 1))
        lines.append(line)
        i = ws.match(text, end).end()
        ch = text[i:i + 1]
        if ch == "]":
            rest = text[i + 1:].strip()
            if rest:
                raise DataError(f"{source}:line {_line_at(text, i + 1 + text[i + 1:].index(rest[0]))}: extra text "
                                "after the closing ']'. Fix: delete it, or merge it into the list.")
            return rows, lines
        if ch != ",":
            what = "the file ends" if not ch else f"found {ch!r}"
            raise DataError(f"{source}:line {_line_at(text, i)}: expected ',' or ']' after record {len(rows)} but "
                            f"{what} (truncated file?). Fix: complete the list and close it with ']'.")
        i = ws.match(text, i + 1).end()


def _parse_jsonl(text: str, source: str) -> tuple[list[dict], list[int]]:
    rows, lines = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            cut = "Unterminated" in err.msg or err.pos >= len(line.rstrip())
            trunc = " (the line looks cut off)" if cut else ""
            raise DataError(f"{source}:line {n}: not valid JSON{trunc}: {err.msg} (column {err.colno}). "
                            "Fix: each line must hold one complete JSON object.") from None
        rows.append(_check_record(obj, source, n))
        lines.append(n)
    return rows, lines


def _parse_csv(text: str, source: str) -> tuple[list[dict], list[int]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as err:
        raise DataError(f"{source}:line 1: CSV header cannot be read ({err})") from None
    if not header or not any(h.strip() for h in header):
        raise DataError(f"{source}:line 1: no CSV header; the first line must name the columns, e.g. input,output")
    blank = [i + 1 for i, h in enumerate(header) if not h.strip()]
    dup = [h for h, c in Counter(header).items() if c > 1]
    if blank or dup:
        raise DataError(f"{source}:line 1: header has "
                        f"{'empty column names at positions ' + str(blank) if blank else ''}"
                        f"{'repeated names ' + str(dup) if dup else ''}. Fix: give every column a unique name.")
    rows, lines = [], []
    start = reader.line_num + 1
    try:
        for values in reader:
            if not values or (len(values) == 1 and not values[0].strip()):
                start = reader.line_num + 1
                continue
            if len(values) != len(header):
                raise DataError(f"{source}:line {start}: {len(values)} values but the header has {len(header)} "
                                f"columns ({', '.join(header)}) (ragged row). Fix: quote values that contain "
                                "commas (\"a, b\") or add the missing values.")
            rows.append(dict(zip(header, values)))
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{source}:line {reader.line_num}: CSV cannot be parsed ({err}). Fix: check the quotes "
                        "on that line.") from None
    return rows, lines


def _check_column_types(rows: list[dict], lines: list[int], source: str) -> None:
    """One type per column (null allowed): Arrow, and every later step, needs it."""
    seen: dict[str, tuple[type, int]] = {}
    for row, line in zip(rows, lines):
        for key, value in row.items():
            if value is None:
                continue
            t = type(value)
            if isinstance(value, int) and not isinstance(value, bool) and seen.get(key, (None,))[0] is float:
                t = float  # JSON writes 2.0 as 2: an integer among floats is one more number, not a new type
            if key not in seen:
                seen[key] = (t, line)
            elif seen[key][0] is not t and not (seen[key][0] is int and t is float):
                first_t, first_line = seen[key]
                raise DataError(f"{source}:line {line}: field {key!r} is {TYPE_NAMES.get(t, t.__name__)} "
                                f"({str(value)[:40]!r}) but line {first_line} has a "
                                f"{TYPE_NAMES.get(first_t, first_t.__name__)} "
                                f"there (mixed types in one column). Fix: use one type per field, e.g. quote "
                                "numbers that are labels.")
            elif seen[key][0] is int and t is float:
                seen[key] = (float, seen[key][1])


def read_records(path: str | Path, fmt: str | None = None, allow_bom: bool = False) -> Records:
    """Parse a local JSON list / JSONL / CSV file strictly, keeping each row's line number.

    Raises DataError naming file and line for: empty file, BOM (unless ``allow_bom``), bytes that
    are not UTF-8, invalid or truncated JSON, a top level that is not a list, records that are not
    objects, ragged CSV rows and columns of mixed types. The file is read once, in binary, and
    never written.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise DataError(f"{source}: no such file. Fix: check the path (relative paths start from "
                        f"{Path.cwd()}).")
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt not in ("json", "jsonl", "csv"):
        raise DataError(f"{source}: cannot tell the format from the suffix {path.suffix!r}; use .json (a list of "
                        "records), .jsonl (one record per line) or .csv, or pass fmt=")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise DataError(f"{source}: the file is empty ({len(raw)} bytes). Fix: write the records into it "
                        "(did an export step fail?)")
    text, warnings = _decode(raw, source, allow_bom)
    if fmt == "json":
        rows, lines = _parse_json_list(text, source)
    elif fmt == "jsonl":
        rows, lines = _parse_jsonl(text, source)
    else:
        rows, lines = _parse_csv(text, source)
    if not rows:
        raise DataError(f"{source}: holds no records. Fix: add at least one record.")
    _check_column_types(rows, lines, source)
    return Records(source, rows, lines, warnings)


def load(name_or_path: str | Path, data_files=None, split: str | None = "train", allow_bom: bool = False):
    """A ``datasets.Dataset`` from a local file, a ``datasets``-style name with ``data_files``, or a hub name.

    - ``load("qa.jsonl")``: one local file (JSON list, JSONL or CSV).
    - ``load("json", data_files="qa.jsonl")`` (Olive's ``--data_name json --data_files``); ``data_files``
      as a dict ``{"train": ..., "test": ...}`` gives a ``DatasetDict``.
    - ``load("org/name", split="train")``: the hub, when it is reachable.
    Local files go through ``read_records`` so errors name file and line.
    """

    name = str(name_or_path)
    if data_files is None and Path(name).suffix.lower() in FORMATS:
        return read_records(name, allow_bom=allow_bom).to_dataset()
    if name in ("json", "csv") and data_files is not None:
        fmt = {"json": None, "csv": "csv"}[name]
        if isinstance(data_files, dict):
            return datasets.DatasetDict({k: _load_many(v, fmt, allow_bom) for k, v in data_files.items()})
        return _load_many(data_files, fmt, allow_bom)
    if data_files is not None:
        raise DataError(f"data_name={name!r} with data_files: use data_name 'json' or 'csv' for local files")
    if not hub_offline() and not hub_reachable():
        # Fail in seconds, not after datasets' retries and timeouts.
        raise DataError(f"could not load {name!r}: it is not a local file (.json/.jsonl/.csv) and the Hugging Face "
                        "hub cannot be reached from this machine. Point at a local file, or set HF_HUB_OFFLINE=1 "
                        "to use a copy already in the hub cache.")
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 - the hub raises many types; one clear line instead
        raise DataError(f"could not load {name!r} ({type(err).__name__}: {str(err)[:200]}). It is neither a local "
                        "file (.json/.jsonl/.csv) nor a dataset reachable on the hub from this machine.") from None


def _load_many(files, fmt, allow_bom):
    files = [files] if isinstance(files, (str, Path)) else list(files)
    parts = [read_records(f, fmt=fmt if fmt else None, allow_bom=allow_bom).to_dataset() for f in files]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def as_records(data, source: str = "dataset") -> Records:
    """Records from a Records, a ``datasets.Dataset`` or a list of dicts (rows numbered from 1)."""
    if isinstance(data, Records):
        return data
    rows = data.to_list() if hasattr(data, "to_list") else list(data)
    return Records(source, rows, list(range(1, len(rows) + 1)))


# ------------------------------------------------------------------------------------------ splits
def split(dataset, validation: float = 0.15, label_field: str | None = None, seed: int = 0,
          source: str = "dataset"):
    """``(DatasetDict(train, validation), counts)``: seeded, stratified by ``label_field`` if given.

    ``validation`` is the fraction held out (the chapter's best practice: 0.10-0.20). ``counts`` is a
    DataFrame of rows per label (or in total) per split.
    """

    if isinstance(dataset, Records):
        source = dataset.source
        dataset = dataset.to_dataset()
    if isinstance(validation, bool) or not isinstance(validation, (int, float)) or not 0 < validation < 1:
        raise DataError(f"validation={validation!r} must be a fraction between 0 and 1 (0.1-0.2 is usual)")
    n = len(dataset)
    n_val = round(n * validation)
    if n_val < 1 or n - n_val < 1:
        raise DataError(f"{source}: {n} rows cannot be split {1 - validation:.0%}/{validation:.0%} (the validation "
                        "set would be empty). Fix: collect more data; a few hundred examples is a small dataset.")
    idx = list(range(n))
    strat = None
    if label_field is not None:
        if label_field not in dataset.column_names:
            raise DataError(f"{source}: label_field {label_field!r} is not a column "
                            f"({', '.join(dataset.column_names)})")
        strat = [str(x) for x in dataset[label_field]]
        counts = Counter(strat)
        for lab, c in counts.items():
            if c < 2:
                row = strat.index(lab) + 1
                raise DataError(f"{source}: row {row}: field {label_field!r}: label {lab!r} has only {c} example, so "
                                "a stratified split cannot put it in both train and validation. Fix: add examples "
                                "of that label or drop it.")
        if n_val < len(counts):
            n_val = len(counts)
    train_idx, val_idx = train_test_split(idx, test_size=n_val, random_state=seed, stratify=strat)
    out = datasets.DatasetDict(train=dataset.select(sorted(train_idx)), validation=dataset.select(sorted(val_idx)))
    if label_field is None:
        counts = pd.DataFrame({"rows": [len(out["train"]), len(out["validation"])]}, index=["train", "validation"])
    else:
        counts = pd.DataFrame({s: Counter(str(x) for x in out[s][label_field]) for s in out}).fillna(0).astype(int)
        counts.loc["total"] = counts.sum()
    return out, counts


def oversample(data, label_field: str, seed: int = 0, source: str = "dataset") -> list[dict]:
    """Rows with every label repeated up to the largest label's count, in a seeded shuffled order.

    The simplest fix for label imbalance in the training split (never oversample validation or test:
    the scores would count the same rows several times). Each row is repeated whole times and the
    remainder is drawn without replacement, so the rows of one label are copied equally often, give
    or take one. Returns new dicts in a new list; the input is not changed.
    """
    recs = as_records(data, source)
    if not recs.rows:
        raise DataError(f"{recs.source}: no rows to oversample")
    by_label: dict[str, list[dict]] = {}
    for i, row in enumerate(recs.rows):
        if label_field not in row or row[label_field] is None:
            raise DataError(f"{recs.where(i)}: field {label_field!r} is missing; every row needs a label to "
                            f"oversample by it (fix the row, or pass the right label_field)")
        by_label.setdefault(str(row[label_field]), []).append(row)
    rng = random.Random(seed)
    top = max(len(rows) for rows in by_label.values())
    out = []
    for rows in by_label.values():
        whole, rest = divmod(top, len(rows))
        out += rows * whole + rng.sample(rows, rest)
    rng.shuffle(out)
    return [dict(r) for r in out]


def read_all(files: list[str]) -> Records:
    """The records of several files as one (each row keeps its own file's line number)."""
    parts = [read_records(f) for f in files]
    if len(parts) == 1:
        return parts[0]
    return Records(", ".join(p.source for p in parts), [r for p in parts for r in p.rows],
                   [n for p in parts for n in p.lines])
