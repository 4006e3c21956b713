"""Validate a fine-tuning dataset before training: a Report of Issues, each naming file, line and field, with its fix.

Reading (``records.read_records``) stops at data that cannot be parsed; ``validate`` checks rows that parsed
but would train badly, and collects every problem instead of stopping at the first::

    recs = records.read_records("qa.jsonl")
    report = validate(recs, required={"input": str, "output": str}, tokenizer=tok, max_seq_len=128)
    report.raise_for_errors()                            # errors stop; warnings stay in the report
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd

from labhelpers.data.records import TYPE_NAMES, Records, as_records, type_name
from labhelpers.data.templates import template_fields
from labhelpers.errors import DataError

#: Control characters that are ordinary whitespace in text; every other one (category Cc) is flagged.
_ALLOWED_CONTROL = {"\n", "\t", "\r"}


@dataclass
class Issue:
    level: str  # "error" or "warning"
    kind: str
    source: str
    line: int | None
    field: str | None
    message: str
    fix: str
    record: int | None = None  # 1-based, where the line holds several records (a one-line JSON array)

    def __str__(self) -> str:
        where = self.source + (f":line {self.line}" if self.line is not None else "")
        where += f", record {self.record}" if self.record is not None else ""
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


def _type_label(want: type) -> str:
    return TYPE_NAMES.get(want, want.__name__)


# ------------------------------------------------------------------------------------------ checks
def _check_template(recs: Records, template: str, columns: list[str]) -> list[Issue]:
    """The first template placeholder the data has no column for."""
    unknown = [f for f in template_fields(template) if f not in columns]
    if not unknown:
        return []
    return [Issue("error", "template_field", recs.source, None, unknown[0],
                  f"template {template!r} uses {{{unknown[0]}}} but the data has no such column "
                  f"(columns: {', '.join(columns)})",
                  "rename the placeholder to one of the columns, or rename the column")]


def _numbered(issues: list[Issue], record: int | None) -> list[Issue]:
    """The issues with their record number set (None where the line alone names the row)."""
    for issue in issues:
        issue.record = record
    return issues


def _check_required(row: dict, required: dict[str, type | None], source: str, line: int) -> list[Issue]:
    """Required fields of one row that are missing, null or of the wrong type."""
    found = []
    for name, want in required.items():
        if name not in row or row[name] is None:
            found.append(Issue("error", "missing_field", source, line, name,
                               f"required field is {'null' if name in row else 'missing'} "
                               f"(row has: {', '.join(row) or 'nothing'})",
                               f"add \"{name}\" to this record, or drop the record"))
            continue
        value = row[name]
        # bool is a subclass of int, but true/false is no count or class id.
        if want is not None and not (isinstance(value, want) and not (want is int and isinstance(value, bool))):
            found.append(Issue("error", "wrong_type", source, line, name,
                               f"is {type_name(value)} ({str(value)[:30]!r}), expected {_type_label(want)}",
                               f"write the value as a {_type_label(want)}" + (" (in quotes)" if want is str else "")))
    return found


def _check_values(row: dict, source: str, line: int) -> list[Issue]:
    """Text values of one row that are blank or hold control characters."""
    found = []
    for name, value in row.items():
        if not isinstance(value, str):
            continue
        if not value.strip():
            found.append(Issue("error", "empty_value", source, line, name,
                               "is empty or only whitespace", "fill it in, or drop the record"))
        bad = sorted({c for c in value if unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROL})
        if bad:
            found.append(Issue("error", "control_char", source, line, name,
                               f"holds control character(s) {', '.join(repr(c) for c in bad)}",
                               "remove them (often pasted from a terminal or a PDF)"))
    return found


def _check_duplicates(recs: Records, keys: list[str]) -> list[Issue]:
    """Rows repeating an earlier row exactly, or up to case, punctuation and spaces."""
    found = []
    exact: dict[tuple, int] = {}
    near: dict[tuple, int] = {}
    for i, row in enumerate(recs.rows):
        ek = tuple(str(row.get(f)) for f in keys)
        nk = _row_key(row, keys)
        if ek in exact:
            found += _numbered([Issue("warning", "duplicate", recs.source, recs.lines[i], None,
                                      f"exact duplicate of {recs.place(exact[ek])}",
                                      "drop one copy: duplicates weigh some examples double and can leak into "
                                      "validation")], recs.record_number(i))
        elif nk in near:
            found += _numbered([Issue("warning", "near_duplicate", recs.source, recs.lines[i], None,
                                      f"near duplicate of {recs.place(near[nk])} (same text ignoring case, "
                                      "punctuation, spaces)",
                                      "keep one, unless the difference matters")], recs.record_number(i))
        exact.setdefault(ek, i)
        near.setdefault(nk, i)
    return found


def _check_leakage(recs: Records, other: Records, other_name: str, keys: list[str]) -> list[Issue]:
    """Rows that also occur (as near duplicates) in another set, e.g. the test set."""
    first: dict[tuple, int] = {}
    for j, row in enumerate(other.rows):
        first.setdefault(_row_key(row, keys), j)
    found = []
    for i, row in enumerate(recs.rows):
        j = first.get(_row_key(row, keys))
        if j is not None:
            found += _numbered([Issue("error", "leakage", recs.source, recs.lines[i], None,
                                      f"also in {other.where(j)} ({other_name}): the model would be "
                                      "scored on an example it trained on", "remove it from one of the two sets")],
                               recs.record_number(i))
    return found


def _check_labels(recs: Records, label_field: str, columns: list[str], min_per_label: int,
                  imbalance_ratio: float) -> tuple[dict[str, int], list[Issue]]:
    """``(label counts, issues)``: a label column that is missing, labels too rare to learn, imbalance."""
    if label_field not in columns:
        return {}, [Issue("error", "missing_field", recs.source, None, label_field,
                          f"label field is not a column (columns: {', '.join(columns)})",
                          "set label_field to a column")]
    counts = Counter(str(lab) for lab in (row.get(label_field) for row in recs.rows) if lab is not None)
    first_line: dict[str, int] = {}
    for row, line in zip(recs.rows, recs.lines):
        first_line.setdefault(str(row.get(label_field)), line)
    found = [Issue("warning", "rare_label", recs.source, first_line[lab], label_field,
                   f"label {lab!r} has only {n} example(s): it cannot be learned, nor split "
                   "into train and validation", "add examples of it, or merge/drop the label")
             for lab, n in counts.items() if n < min_per_label]
    if counts and max(counts.values()) > imbalance_ratio * min(counts.values()):
        found.append(Issue("warning", "imbalance", recs.source, None, label_field,
                           f"labels out of balance: {dict(counts.most_common())}",
                           "collect more of the rare labels, or weight/oversample them"))
    return dict(counts.most_common()), found


def _default_render(template: str | None, keys: list[str]) -> Callable[[dict], str]:
    """The text whose tokens are counted: the template filled in, else the key fields joined."""
    if template is not None:
        fields = template_fields(template)
        return lambda row: template.format(**{k: row[k] for k in fields})
    return lambda row: " ".join(str(row.get(f, "")) for f in keys)


def _check_lengths(recs: Records, tokenizer, render: Callable[[dict], str],
                   max_seq_len: int | None) -> tuple[list[int], list[Issue]]:
    """``(token length of every row, issues)``: rows over ``max_seq_len`` tokens would be truncated."""
    lengths, found = [], []
    for i, row in enumerate(recs.rows):
        try:
            n = len(tokenizer(render(row), add_special_tokens=True)["input_ids"]) + 1  # + EOS
        except (KeyError, TypeError, ValueError, IndexError):
            n = 0  # a row that cannot be rendered (a field missing) gets no length rather than stopping the report
        lengths.append(n)
        if max_seq_len and n > max_seq_len:
            found += _numbered([Issue("warning", "too_long", recs.source, recs.lines[i], None,
                                      f"{n} tokens, over max_seq_len={max_seq_len}: it would be truncated (the "
                                      "answer's end and EOS lost)", "raise max_seq_len, shorten the text, or drop "
                                      "the row")], recs.record_number(i))
    return lengths, found


# -------------------------------------------------------------------------------------------- main
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
    req = dict.fromkeys(required, None) if isinstance(required, (list, tuple)) else dict(required or {})
    columns = recs.columns
    keys = key_fields or [f for f in req if f in columns] or columns

    if template is not None:
        report.issues += _check_template(recs, template, columns)
    # One row's problems stay together, so the report reads row by row.
    for i, (row, line) in enumerate(zip(recs.rows, recs.lines)):
        found = _check_required(row, req, recs.source, line) + _check_values(row, recs.source, line)
        report.issues += _numbered(found, recs.record_number(i))
    report.issues += _check_duplicates(recs, keys)
    for other_name, other in (others or {}).items():
        report.issues += _check_leakage(recs, as_records(other, other_name), other_name, keys)
    if label_field is not None:
        report.label_counts, found = _check_labels(recs, label_field, columns, min_per_label, imbalance_ratio)
        report.issues += found
    if tokenizer is not None:
        if render is None:
            # With errors so far (a missing field, say), the template may not render: count the key fields.
            render = _default_render(template if not report.errors else None, keys)
        report.token_lengths, found = _check_lengths(recs, tokenizer, render, max_seq_len)
        report.issues += found
    return report
