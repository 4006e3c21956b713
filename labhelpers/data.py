"""Load, validate and split a fine-tuning dataset: JSON (a list of records), JSONL, CSV or a hub name.

Every problem names the file, the line and the field, and says how to fix it. Files are only ever
opened for reading (``"rb"``): nothing in the user's data is modified, a BOM or a bad byte included.

The path a dataset takes::

    records = read_records("qa.jsonl")                 # strict parse, line numbers kept
    report = validate(records, required={"input": str, "output": str}, tokenizer=tok, max_seq_len=128)
    report.raise_for_errors()                            # errors stop; warnings stay in the report
    splits, counts = split(records.to_dataset(), validation=0.15, label_field=None, seed=0)
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import DataError
from .templates import template_fields

FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "true/false", list: "list", dict: "object",
              type(None): "null"}
_ALLOWED_CONTROL = {"\n", "\t", "\r"}


def _tname(value) -> str:
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

    def where(self, i: int) -> str:
        return f"{self.source}:line {self.lines[i]}"

    def to_dataset(self):
        """The rows as a ``datasets.Dataset`` (columns in first-seen order)."""
        import datasets

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


def _check_record(obj, source: str, line: int) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{source}:line {line}: record is {_tname(obj)} ({str(obj)[:40]!r}), expected an object "
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
        raise DataError(f"{source}:line {_line_at(text, i)}: the top level is {_tname(top)}, expected a list of "
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
        rows.append(_check_record(obj, source, line))
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
        raise DataError(f"{source}:line 1: header has {'empty column names at positions ' + str(blank) if blank else ''}"
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
            t = float if isinstance(value, int) and not isinstance(value, bool) and seen.get(key, (None,))[0] is float else type(value)
            if key not in seen:
                seen[key] = (t, line)
            elif seen[key][0] is not t and not (seen[key][0] is int and t is float):
                first_t, first_line = seen[key]
                raise DataError(f"{source}:line {line}: field {key!r} is {TYPE_NAMES.get(t, t.__name__)} "
                                f"({str(value)[:40]!r}) but line {first_line} has a {TYPE_NAMES.get(first_t, first_t.__name__)} "
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
    import datasets

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
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 - the hub raises many types; one clear line instead
        raise DataError(f"could not load {name!r} ({type(err).__name__}: {str(err)[:200]}). It is neither a local "
                        "file (.json/.jsonl/.csv) nor a dataset reachable on the hub from this machine.") from None


def _load_many(files, fmt, allow_bom):
    import datasets

    files = [files] if isinstance(files, (str, Path)) else list(files)
    parts = [read_records(f, fmt=fmt if fmt else None, allow_bom=allow_bom).to_dataset() for f in files]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def as_records(data, source: str = "dataset") -> Records:
    """Records from a Records, a ``datasets.Dataset`` or a list of dicts (rows numbered from 1)."""
    if isinstance(data, Records):
        return data
    rows = data.to_list() if hasattr(data, "to_list") else list(data)
    return Records(source, rows, list(range(1, len(rows) + 1)))


# -------------------------------------------------------------------------------------- validation
@dataclass
class Issue:
    level: str  # "error" or "warning"
    kind: str
    source: str
    line: int | None
    field: str | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.source + (f":line {self.line}" if self.line is not None else "")
        fld = f" field {self.field!r}" if self.field else ""
        return f"{where}:{fld} {self.message}. Fix: {self.fix}"


@dataclass
class Report:
    """What validate found: issues (errors stop training, warnings inform), token lengths, label counts."""

    n_rows: int
    issues: list[Issue] = field(default_factory=list)
    token_lengths: list[int] = field(default_factory=list)
    max_seq_len: int | None = None
    label_counts: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def kinds(self) -> set[str]:
        return {i.kind for i in self.issues}

    def n_truncated(self) -> int:
        return sum(n > self.max_seq_len for n in self.token_lengths) if self.max_seq_len else 0

    def raise_for_errors(self) -> None:
        """DataError listing every error (first 10), each with file, line, field and fix."""
        if self.errors:
            shown = "\n  ".join(str(e) for e in self.errors[:10])
            more = f"\n  ... and {len(self.errors) - 10} more" if len(self.errors) > 10 else ""
            raise DataError(f"{len(self.errors)} data error(s):\n  {shown}{more}")

    def to_frame(self):
        import pandas as pd

        cols = ["level", "kind", "source", "line", "field", "message", "fix"]
        return pd.DataFrame([[getattr(i, c) for c in cols] for i in self.issues], columns=cols)

    def summary(self) -> dict:
        out = {"rows": self.n_rows, "errors": len(self.errors), "warnings": len(self.warnings)}
        if self.token_lengths:
            s = sorted(self.token_lengths)
            out.update(tokens_min=s[0], tokens_median=s[len(s) // 2], tokens_max=s[-1],
                       truncated_rows=self.n_truncated())
        return out

    def plot_lengths(self, ax=None):
        """Histogram of token lengths with the max_seq_len line."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 2.8))
        ax.hist(self.token_lengths, bins=30, color="#4c72b0")
        if self.max_seq_len:
            ax.axvline(self.max_seq_len, color="#c44e52", ls="--", label=f"max_seq_len {self.max_seq_len}")
            ax.legend()
        ax.set_xlabel("tokens per example")
        ax.set_ylabel("rows")
        return ax


def normalize_text(text: str) -> str:
    """Lower case, punctuation removed, spaces collapsed: two rows with the same key are near duplicates."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _row_key(row: dict, fields: list[str]) -> tuple:
    return tuple(normalize_text(row.get(f, "")) for f in fields)


def validate(data, required: dict[str, type] | list[str] | None = None, *, label_field: str | None = None,
             template: str | None = None, tokenizer=None, max_seq_len: int | None = None,
             render: Callable[[dict], str] | None = None, others: dict | None = None,
             key_fields: list[str] | None = None, min_per_label: int = 2, imbalance_ratio: float = 3.0) -> Report:
    """Check a dataset before training; returns a Report (call ``raise_for_errors`` to stop on errors).

    Errors: missing required fields, wrong types, empty/whitespace values, control characters,
    template placeholders the data lacks, rows of this set that also occur in ``others`` (leakage).
    Warnings: exact and near duplicates, labels with fewer than ``min_per_label`` rows or out of
    balance, rows longer than ``max_seq_len`` tokens (they would be truncated).

    ``required`` maps field -> type (``str``, ``int``, ...) or lists field names (any type).
    ``others``: ``{"test": records_or_dataset, ...}`` to check for train/test leakage.
    ``key_fields``: the fields compared for duplicates/leakage (default: the required fields).
    """
    recs = as_records(data)
    report = Report(n_rows=len(recs), max_seq_len=max_seq_len)
    add = report.issues.append
    req = dict.fromkeys(required, None) if isinstance(required, (list, tuple)) else dict(required or {})
    columns = recs.columns

    if template is not None:
        unknown = [f for f in template_fields(template) if f not in columns]
        if unknown:
            add(Issue("error", "template_field", recs.source, None, unknown[0],
                      f"template {template!r} uses {{{unknown[0]}}} but the data has no such column "
                      f"(columns: {', '.join(columns)})",
                      "rename the placeholder to one of the columns, or rename the column"))

    for i, row in enumerate(recs.rows):
        line = recs.lines[i]
        for name, want in req.items():
            if name not in row or row[name] is None:
                add(Issue("error", "missing_field", recs.source, line, name,
                          f"required field is {'null' if name in row else 'missing'} (row has: {', '.join(row) or 'nothing'})",
                          f"add \"{name}\" to this record, or drop the record"))
                continue
            value = row[name]
            if want is not None and not (isinstance(value, want) and not (want is int and isinstance(value, bool))):
                add(Issue("error", "wrong_type", recs.source, line, name,
                          f"is {_tname(value)} ({str(value)[:30]!r}), expected {TYPE_NAMES.get(want, want.__name__)}",
                          f"write the value as a {TYPE_NAMES.get(want, want.__name__)}"
                          + (" (in quotes)" if want is str else "")))
        for name, value in row.items():
            if isinstance(value, str):
                if not value.strip():
                    add(Issue("error", "empty_value", recs.source, line, name,
                              "is empty or only whitespace", "fill it in, or drop the record"))
                bad = sorted({c for c in value if unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROL})
                if bad:
                    add(Issue("error", "control_char", recs.source, line, name,
                              f"holds control character(s) {', '.join(repr(c) for c in bad)}",
                              "remove them (often pasted from a terminal or a PDF)"))

    keys = key_fields or [f for f in req if f in columns] or columns
    exact: dict[tuple, int] = {}
    near: dict[tuple, int] = {}
    for i, row in enumerate(recs.rows):
        ek = tuple(str(row.get(f)) for f in keys)
        nk = _row_key(row, keys)
        if ek in exact:
            add(Issue("warning", "duplicate", recs.source, recs.lines[i], None,
                      f"exact duplicate of line {recs.lines[exact[ek]]}",
                      "drop one copy: duplicates weigh some examples double and can leak into validation"))
        elif nk in near:
            add(Issue("warning", "near_duplicate", recs.source, recs.lines[i], None,
                      f"near duplicate of line {recs.lines[near[nk]]} (same text ignoring case, punctuation, spaces)",
                      "keep one, unless the difference matters"))
        exact.setdefault(ek, i)
        near.setdefault(nk, i)

    for other_name, other in (others or {}).items():
        orec = as_records(other, other_name)
        okeys = {}
        for j, row in enumerate(orec.rows):
            okeys.setdefault(_row_key(row, keys), j)
        for i, row in enumerate(recs.rows):
            j = okeys.get(_row_key(row, keys))
            if j is not None:
                add(Issue("error", "leakage", recs.source, recs.lines[i], None,
                          f"also in {orec.source}:line {orec.lines[j]} ({other_name}): the model would be scored "
                          "on an example it trained on", f"remove it from one of the two sets"))

    if label_field is not None:
        if label_field not in columns:
            add(Issue("error", "missing_field", recs.source, None, label_field,
                      f"label field is not a column (columns: {', '.join(columns)})", "set label_field to a column"))
        else:
            labels = [row.get(label_field) for row in recs.rows]
            counts = Counter(str(l) for l in labels if l is not None)
            report.label_counts = dict(counts.most_common())
            first_line = {}
            for row, line in zip(recs.rows, recs.lines):
                first_line.setdefault(str(row.get(label_field)), line)
            for lab, n in counts.items():
                if n < min_per_label:
                    add(Issue("warning", "rare_label", recs.source, first_line[lab], label_field,
                              f"label {lab!r} has only {n} example(s): it cannot be learned, nor split "
                              "into train and validation", "add examples of it, or merge/drop the label"))
            if counts and max(counts.values()) > imbalance_ratio * min(counts.values()):
                add(Issue("warning", "imbalance", recs.source, None, label_field,
                          f"labels out of balance: {dict(counts.most_common())}",
                          "collect more of the rare labels, or weight/oversample them"))

    if tokenizer is not None:
        if render is None and template is not None and not report.errors:
            def render(row, _t=template):
                return _t.format(**{k: row[k] for k in template_fields(_t)})
        if render is None:
            def render(row):
                return " ".join(str(row.get(f, "")) for f in keys)
        for i, row in enumerate(recs.rows):
            try:
                n = len(tokenizer(render(row), add_special_tokens=True)["input_ids"]) + 1  # + EOS
            except (KeyError, TypeError, ValueError, IndexError):
                n = 0
            report.token_lengths.append(n)
            if max_seq_len and n > max_seq_len:
                add(Issue("warning", "too_long", recs.source, recs.lines[i], None,
                          f"{n} tokens, over max_seq_len={max_seq_len}: it would be truncated (the answer's end and "
                          "EOS lost)", "raise max_seq_len, shorten the text, or drop the row"))
    return report


# ------------------------------------------------------------------------------------------ splits
def split(dataset, validation: float = 0.15, label_field: str | None = None, seed: int = 0,
          source: str = "dataset"):
    """``(DatasetDict(train, validation), counts)``: seeded, stratified by ``label_field`` if given.

    ``validation`` is the fraction held out (the chapter's best practice: 0.10-0.20). ``counts`` is a
    DataFrame of rows per label (or in total) per split.
    """
    import datasets
    import pandas as pd
    from sklearn.model_selection import train_test_split

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
            raise DataError(f"{source}: label_field {label_field!r} is not a column ({', '.join(dataset.column_names)})")
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
