"""Why are my results poor? Check a dataset + tokenizer + template + training settings for the usual causes.

Each check names one cause of poor fine-tuning results, with its evidence (counts, row numbers, the
first difference) and the fix::

    d = diagnose(rows, tokenizer, chat_fields=("phrase", "tone"), encoded=train_examples,
                 inference_prompt=lambda r: templates.chat_texts(tokenizer, r["phrase"])[0],
                 max_seq_len=64, method="lora", learning_rate=1e-3, max_steps=300, batch_size=8,
                 label_field="tone")
    print(d)            # one block per finding; d.ok is True when nothing is flagged
    d.to_frame()        # one row per finding

Codes: ``prompt_mismatch``, ``no_eos``, ``labels_unmasked``, ``labels_all_masked``, ``lr_out_of_range``,
``too_few_steps``, ``answers_truncated``, ``label_imbalance``. A check whose inputs were not given is
listed in ``Diagnosis.skipped`` (with what to pass), so "nothing flagged" never hides "nothing checked".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
from transformers import AutoTokenizer

from labhelpers.checks import check_choice, check_int
from labhelpers.constants import METHODS
from labhelpers.data.records import Records, as_records, read_all
from labhelpers.data.runconfig import RunConfig, load_config
from labhelpers.data.templates import IGNORE_INDEX, chat_texts, eos_end, render_template, texts, tokenize_example
from labhelpers.data.validation import validate
from labhelpers.errors import ConfigError, DataError

CODES = ("prompt_mismatch", "no_eos", "labels_unmasked", "labels_all_masked", "lr_out_of_range",
         "too_few_steps", "answers_truncated", "label_imbalance")

#: Typical learning rates per method. Adapters (LoRA/QLoRA) train a few new weights from a zero start
#: and take 1e-5..1e-3 (the tiny course model trains well up to 5e-3); full fine-tuning moves every
#: pretrained weight, so the same step sizes wreck what the model knew: 1e-6..1e-4. (IA)^3 learns one
#: scale per activation around 1.0 and needs much larger steps (the course uses 0.1).
LR_RANGES = {"lora": (1e-5, 1e-3), "qlora": (1e-5, 1e-3), "full": (1e-6, 1e-4), "ia3": (1e-3, 1e-1)}
#: Only rates more than this factor outside the typical range are flagged: "far outside" means an order
#: of magnitude, the distance at which training stalls (too low) or diverges/forgets (too high), while
#: small models legitimately sit a little above the range (the course's 2e-3..5e-3 for LoRA).
LR_FAR = 10.0
#: Fewer optimizer steps than this are flagged whatever the data size: a LoRA adapter starts as a no-op
#: (B = 0) and Adam moves each weight by about one learning rate per step, so a run needs tens of steps
#: to change the output at all; the course's shortest good run has 60.
MIN_STEPS = 30
#: Fewer than this many passes over the data is flagged: below one pass some rows are never seen, and
#: small datasets need 1-3 passes for LoRA (the course's runs do 1.5-3).
MIN_EPOCHS = 1.0
_SHOWN = 5  # row numbers listed in evidence


@dataclass
class Finding:
    """One flagged problem: what it is (``message``), the ``evidence`` and the ``fix``."""

    code: str
    severity: str  # "error": this alone ruins results; "warning": likely hurts them
    message: str
    evidence: dict
    fix: str

    def __str__(self) -> str:
        ev = "\n".join(f"    {k}: {v}" for k, v in self.evidence.items())
        return f"[{self.severity}] {self.code}: {self.message}\n{ev}\n  Fix: {self.fix}"


@dataclass
class Diagnosis:
    """What ``diagnose`` found; ``ok`` is True when nothing was flagged."""

    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # code -> what to pass to run it

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def __getitem__(self, code: str) -> Finding:
        for f in self.findings:
            if f.code == code:
                return f
        raise KeyError(f"{code!r} was not flagged (flagged: {self.codes})")

    def to_frame(self):
        return pd.DataFrame([[f.code, f.severity, f.message, "; ".join(f"{k}: {v}" for k, v in f.evidence.items()),
                              f.fix] for f in self.findings],
                            columns=["code", "severity", "message", "evidence", "fix"])

    def __str__(self) -> str:
        head = (f"{len(self.findings)} problem(s) found" if self.findings else "no problems found") + \
               f" ({len(self.checked)} checks ran)"
        parts = [head] + [str(f) for f in self.findings]
        if self.skipped:
            parts.append("not checked: " + "; ".join(f"{c} ({why})" for c, why in self.skipped.items()))
        return "\n".join(parts)


# ------------------------------------------------------------------------------------------ helpers
def _rows_text(lines: list[int], source: str) -> str:
    shown = ", ".join(map(str, lines[:_SHOWN]))
    more = f" (+{len(lines) - _SHOWN} more)" if len(lines) > _SHOWN else ""
    return f"{source} line(s) {shown}{more}"


def _first_difference(a: str, b: str) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _around(text: str, i: int, width: int = 18) -> str:
    return repr(("..." if i > width else "") + text[max(0, i - width): i + width])


def _token_at(tokenizer, ids: list[int], k: int) -> str:
    return repr(tokenizer.convert_ids_to_tokens(ids[k])) if k < len(ids) else "(the end)"


def _mismatch_hint(train: str, infer: str, train_ids: list[int], infer_ids: list[int], tokenizer) -> str:
    """Name the usual cause of a prompt difference (BOS, trailing space, role markers), or ''."""
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    if bos_id is not None and train_ids[:1] == [bos_id] and infer_ids[:1] != [bos_id]:
        return f"the inference prompt lacks the BOS token {bos!r} every training example starts with"
    if bos_id is not None and infer_ids[:2] == [bos_id, bos_id] and train_ids[:2] != [bos_id, bos_id]:
        return (f"the inference prompt starts with BOS twice: the text holds {bos!r} and "
                "add_special_tokens=True adds another")
    if train.rstrip() == infer.rstrip():
        return ("only the trailing whitespace differs: training put the space before the answer in the answer, "
                "so a trailing space at inference is a token the model never saw there")
    markers = re.compile(r"<\|[^|]*\|>|\b[A-Z][a-z]+:")  # <|user|>-style tags and "User:"-style labels
    tm, im = markers.findall(train), markers.findall(infer)
    if tm != im:
        return f"the role markers differ: training uses {tm}, inference {im}"
    return ""


# ------------------------------------------------------------------------------------------ inputs
def _validate_arguments(template, chat_fields, method, learning_rate, max_seq_len, max_steps, batch_size,
                        gradient_accumulation_steps, inference_prompt) -> None:
    """ConfigError for the first argument of ``diagnose`` that is wrong on its own, before any work."""
    if template is not None and chat_fields is not None:
        raise ConfigError("pass template= (a text template) or chat_fields= (the tokenizer's chat template), "
                          "not both: training used one format")
    if chat_fields is not None and (isinstance(chat_fields, str) or len(chat_fields) != 2):
        raise ConfigError(f"chat_fields={chat_fields!r} must be (prompt_field, answer_field), e.g. ('phrase', 'tone')")
    check_choice("method", method, METHODS)
    if learning_rate is not None and (isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float))
                                      or learning_rate <= 0):
        raise ConfigError(f"learning_rate={learning_rate!r} must be a number > 0, e.g. 1e-3 for LoRA")
    for name, value in (("max_seq_len", max_seq_len), ("max_steps", max_steps), ("batch_size", batch_size)):
        if value is not None:
            check_int(name, value, low=1)
    check_int("gradient_accumulation_steps", gradient_accumulation_steps, low=1)
    if inference_prompt is not None and not callable(inference_prompt) and not isinstance(inference_prompt, str):
        raise ConfigError(f"inference_prompt={inference_prompt!r} must be a '{{field}}' template or a function "
                          "row -> prompt text")
    if inference_prompt is not None and template is None and chat_fields is None:
        raise ConfigError("inference_prompt needs the training format to compare with: pass template= or "
                          "chat_fields= as well")


def _encoded_examples(encoded, n: int) -> list[dict]:
    """The given tokenized examples as dicts, one per row, each with input_ids."""
    examples = [dict(e) for e in encoded]
    if len(examples) != n:
        raise ConfigError(f"encoded has {len(examples)} examples but rows has {n}: pass one encoded example "
                          "per row, in the same order")
    for i, e in enumerate(examples):
        if "input_ids" not in e:
            raise ConfigError(f"encoded[{i}] has no 'input_ids' (keys: {sorted(e)}): pass tokenized examples")
    return examples


@dataclass
class _Built:
    """Every row in the training format: its prompt, the untruncated encoding's lengths, the example as cut."""

    prompts: list[str]
    prompt_lens: list[int]
    full_lens: list[int]
    examples: list[dict]


def _build(recs: Records, tokenizer, template: str | None, chat_fields: tuple[str, str] | None,
           max_seq_len: int | None) -> _Built:
    """Encode every row the course's way (``templates.texts`` or ``chat_texts``, then ``tokenize_example``)."""
    built = _Built([], [], [], [])
    for i, row in enumerate(recs.rows):
        where = recs.where(i)
        if template is not None:
            prompt, full = texts(template, tokenizer, row, where)
        else:
            missing = [f for f in chat_fields if f not in row]
            if missing:
                raise DataError(f"{where}: chat_fields {missing} not in the row (columns: {sorted(row)}); "
                                "set chat_fields to (prompt column, answer column)")
            prompt, full = chat_texts(tokenizer, str(row[chat_fields[0]]), str(row[chat_fields[1]]))
        # Untruncated, so that the lengths tell how much max_seq_len cuts.
        ex = tokenize_example(tokenizer, prompt, full, max_length=10**9)
        built.prompts.append(prompt)
        built.prompt_lens.append(ex["labels"].count(IGNORE_INDEX))
        built.full_lens.append(len(ex["input_ids"]))
        built.examples.append({k: v[:max_seq_len] if max_seq_len else v for k, v in ex.items()})
    return built


def _truncated(built: _Built | None, examples: list[dict] | None, max_seq_len: int | None, tokenizer,
               n: int) -> list[bool]:
    """Which examples ``max_seq_len`` cuts: exactly from the untruncated lengths when the format is known."""
    if max_seq_len is None:
        return [False] * n
    if built is not None:
        return [fl > max_seq_len for fl in built.full_lens]
    if examples is not None:
        # Without the untruncated text: an example at the cap that does not end in EOS was cut.
        return [len(e["input_ids"]) >= max_seq_len and eos_end(e["input_ids"], tokenizer) is None
                for e in examples]
    return [False] * n


def _labels(example: dict) -> list[int]:
    """The labels the loss sees: without a "labels" key, collators such as DataCollatorForLanguageModeling
    copy input_ids."""
    labels = example.get("labels")
    return list(example["input_ids"] if labels is None else labels)


# ------------------------------------------------------------------------------------------ checks
# Each check returns its findings (an empty list: checked, nothing flagged) or, when its inputs were not
# given, the note for Diagnosis.skipped saying what to pass.
_NEEDS_EXAMPLES = "pass encoded= (the tokenized examples) or template= / chat_fields="


def _check_prompt_mismatch(recs: Records, tokenizer, built: _Built | None, inference_prompt,
                           add_special_tokens: bool) -> list[Finding] | str:
    """Rows whose inference prompt tokenizes differently from the prompt part of their training text."""
    if inference_prompt is None:
        return "pass inference_prompt= (and template= or chat_fields=)"
    prompts = built.prompts  # _validate_arguments made sure the training format is given
    bad, first = [], None
    for i, row in enumerate(recs.rows):
        infer = (inference_prompt(row) if callable(inference_prompt)
                 else render_template(inference_prompt, row, recs.where(i)))
        if infer == prompts[i] and not add_special_tokens:
            continue  # same text, same tokens (training tokenizes without added specials)
        t_ids = tokenizer(prompts[i], add_special_tokens=False)["input_ids"]
        i_ids = tokenizer(infer, add_special_tokens=add_special_tokens)["input_ids"]
        if t_ids != i_ids:
            bad.append(recs.lines[i])
            if first is None:
                first = (prompts[i], infer, t_ids, i_ids)
    if not bad:
        return []
    train, infer, t_ids, i_ids = first
    at = _first_difference(train, infer)
    k = _first_difference(t_ids, i_ids)
    hint = _mismatch_hint(train, infer, t_ids, i_ids, tokenizer)
    return [Finding(
        "prompt_mismatch", "error",
        "the prompt at inference differs from the prompt part of the training text" + (f": {hint}" if hint else ""),
        {"rows": f"{len(bad)} of {len(recs)} ({_rows_text(bad, recs.source)})",
         "training prompt": repr(train), "inference prompt": repr(infer),
         "first difference": (f"character {at}: training {_around(train, at)} vs inference {_around(infer, at)}"
                              if train != infer else "the texts are equal; their tokens differ"),
         "first different token": f"position {k}: training {_token_at(tokenizer, t_ids, k)} "
                                  f"vs inference {_token_at(tokenizer, i_ids, k)}"},
        "build inference prompts with the same function that built the training prompts (e.g. "
        "templates.chat_texts(tokenizer, prompt)[0] or templates.texts(template, tokenizer, row)[0]), "
        "and tokenize them with add_special_tokens=False when the text already holds BOS")]


def _check_labels_masked(recs: Records, examples: list[dict] | None, built: _Built | None) -> list[Finding] | str:
    """Examples that train on their prompt (labels_unmasked) or on nothing at all (labels_all_masked)."""
    if examples is None:
        return _NEEDS_EXAMPLES
    n = len(recs)
    unmasked, all_masked, no_labels = [], [], 0
    trained_prompt_tokens = None
    for i, e in enumerate(examples):
        no_labels += e.get("labels") is None
        labels = _labels(e)
        if all(lab == IGNORE_INDEX for lab in labels):
            all_masked.append(recs.lines[i])
            continue
        # The prompt comes first, so its tokens (all of them when the prompt is known) must be masked.
        head = labels[:built.prompt_lens[i]] if built is not None else labels[:1]
        n_trained = sum(lab != IGNORE_INDEX for lab in head)
        if n_trained:
            unmasked.append(recs.lines[i])
            if trained_prompt_tokens is None:
                trained_prompt_tokens = (n_trained, len(head))
    found = []
    if unmasked:
        ev = {"rows": f"{len(unmasked)} of {n} ({_rows_text(unmasked, recs.source)})",
              "first such row": f"{trained_prompt_tokens[0]} of its {trained_prompt_tokens[1]} prompt token(s) "
                                "are trained"}
        if no_labels:
            ev["no 'labels' key"] = f"{no_labels} example(s): the collator will train every token"
        found.append(Finding(
            "labels_unmasked", "warning",
            "prompt tokens are not masked in the labels: the loss trains the model to write prompts, and "
            "the answer's few tokens weigh little in it",
            ev, "set the prompt's labels to -100 (templates.tokenize_example(..., response_only=True)); "
                "ignore this only if you mean to train on the whole text"))
    if all_masked:
        found.append(Finding(
            "labels_all_masked", "error",
            "examples with every label -100: nothing in them is trained (the loss is 0 or NaN for them)",
            {"rows": f"{len(all_masked)} of {n} ({_rows_text(all_masked, recs.source)})"},
            "mask only the prompt's tokens (labels[:len(prompt_ids)] = -100), and make sure max_seq_len "
            "leaves room for the answer"))
    return found


def _check_no_eos(recs: Records, tokenizer, examples: list[dict] | None,
                  truncated: list[bool]) -> list[Finding] | str:
    """Examples whose trained tokens do not end with EOS, so the model never learns to stop."""
    if examples is None:
        return _NEEDS_EXAMPLES
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        return "the tokenizer has no eos_token"
    n = len(recs)
    no_eos = []
    for i, e in enumerate(examples):
        trained = [lab for lab in _labels(e) if lab != IGNORE_INDEX]
        # All-masked examples are labels_all_masked's; truncated ones lost their EOS to the cut, and
        # answers_truncated reports those.
        if trained and not truncated[i] and eos_end(trained, tokenizer) is None:
            no_eos.append(recs.lines[i])
    if not no_eos:
        return []
    return [Finding(
        "no_eos", "error" if len(no_eos) > n / 2 else "warning",
        f"examples whose trained tokens do not end with EOS {tokenizer.eos_token!r}: the model never "
        "learns to stop, and generates until max_new_tokens (endless generation)",
        {"rows": f"{len(no_eos)} of {n} ({_rows_text(no_eos, recs.source)})"},
        "end every answer with EOS exactly once (templates.with_single_eos, or tokenize_example which "
        "adds it); if pad_token is eos_token, collate with DataCollatorForSeq2Seq: "
        "DataCollatorForLanguageModeling sets every pad-id label, the EOS too, to -100")]


def _check_answers_truncated(recs: Records, max_seq_len: int | None, examples: list[dict] | None,
                             truncated: list[bool], built: _Built | None) -> list[Finding] | str:
    """Examples longer than ``max_seq_len``: the cut takes the answer's end and its EOS."""
    if max_seq_len is None or examples is None:
        return "pass max_seq_len= and template= / chat_fields= (or encoded=)"
    n = len(recs)
    # Exact lengths of the course's encoding (validation.validate estimates them from the rendered text).
    cut = [recs.lines[i] for i in range(n) if truncated[i]]
    if not cut:
        return []
    ev = {"rows": f"{len(cut)} of {n} ({_rows_text(cut, recs.source)})", "max_seq_len": max_seq_len}
    if built is not None:
        lost = [built.full_lens[i] - max_seq_len for i in range(n) if truncated[i]]
        gone = sum(built.prompt_lens[i] >= max_seq_len for i in range(n) if truncated[i])
        ev["tokens cut"] = f"{min(lost)}-{max(lost)} per row; {gone} row(s) lose the whole answer"
        ev["longest example"] = f"{max(built.full_lens)} tokens"
    return [Finding(
        "answers_truncated", "error" if len(cut) > n / 2 else "warning",
        "examples longer than max_seq_len: the cut removes the end of the answer and its EOS, so the "
        "model learns cut-off answers that do not stop",
        ev, f"raise max_seq_len to at least {max(built.full_lens) if built is not None else 'the longest example'}, "
            "or shorten/drop the long rows")]


def _check_lr_out_of_range(method: str, learning_rate: float | None) -> list[Finding] | str:
    """A learning rate an order of magnitude outside the method's usual range."""
    if learning_rate is None:
        return "pass learning_rate= (and method=)"
    low, high = LR_RANGES.get(method, LR_RANGES["lora"])
    if low / LR_FAR <= learning_rate <= high * LR_FAR:
        return []
    too = "low: the weights barely move and the loss stays flat" if learning_rate < low else \
          "high: the loss jumps or diverges and the model forgets what it knew"
    return [Finding(
        "lr_out_of_range", "error",
        f"learning_rate={learning_rate:g} is far outside the usual range for {method} ({low:g}-{high:g}): "
        f"too {too}",
        {"method": method, "learning_rate": learning_rate, "typical range": f"{low:g}-{high:g}",
         "flagged beyond": f"{low / LR_FAR:g}-{high * LR_FAR:g}"},
        f"use a rate in {low:g}-{high:g} for {method} (a little above it for tiny models) and adjust by "
        "factors of 2-3 while watching the loss curve")]


def _check_too_few_steps(n_train: int, max_steps: int | None, batch_size: int | None,
                         gradient_accumulation_steps: int) -> list[Finding] | str:
    """Too few optimizer steps, or less than one pass over the training rows."""
    if max_steps is None or batch_size is None:
        return "pass max_steps= and batch_size="
    per_step = batch_size * gradient_accumulation_steps
    seen = max_steps * per_step
    epochs = seen / n_train
    if max_steps >= MIN_STEPS and epochs >= MIN_EPOCHS:
        return []
    why = (f"only {max_steps} optimizer steps (fewer than {MIN_STEPS})" if max_steps < MIN_STEPS
           else f"{epochs:.2f} passes over the data: {n_train - min(seen, n_train)} of {n_train} rows are never seen")
    need = max(MIN_STEPS, -(-n_train * MIN_EPOCHS // per_step))
    return [Finding(
        "too_few_steps", "warning", f"too little training for the data: {why}",
        {"steps": max_steps, "rows per step": per_step, "rows seen": seen, "training rows": n_train,
         "epochs": round(epochs, 2)},
        f"train for at least {int(need)} steps (one pass, and {MIN_STEPS} steps at least); 1-3 passes "
        "are usual for a small dataset")]


def _check_label_imbalance(recs: Records, label_field: str | None, imbalance_ratio: float) -> list[Finding] | str:
    """Classes so uneven that answering the common one scores well."""
    if label_field is None:
        return "pass label_field= (the class column)"
    # validation.validate owns the balance rules (imbalance_ratio, labels with a single example).
    report = validate(recs, label_field=label_field, imbalance_ratio=imbalance_ratio)
    found = [i for i in report.issues if i.kind in ("imbalance", "rare_label")]
    if not found:
        return []
    counts = report.label_counts
    return [Finding(
        "label_imbalance", "warning",
        f"labels of {label_field!r} are out of balance: the model learns to answer the common label",
        {"label counts": counts, "largest / smallest": f"{max(counts.values()) / min(counts.values()):.1f} "
         f"(flagged above {imbalance_ratio:g})", "details": "; ".join(i.message for i in found)},
        "collect more rows of the rare labels, or oversample them (or undersample the common ones); "
        "score with macro F1, which accuracy on imbalanced data hides")]


# -------------------------------------------------------------------------------------------- main
def diagnose(rows, tokenizer, *, template: str | None = None, chat_fields: tuple[str, str] | None = None,
             encoded=None, inference_prompt: str | Callable[[dict], str] | None = None,
             inference_add_special_tokens: bool = False, max_seq_len: int | None = None, method: str = "lora",
             learning_rate: float | None = None, max_steps: int | None = None, batch_size: int | None = None,
             gradient_accumulation_steps: int = 1, label_field: str | None = None,
             imbalance_ratio: float = 3.0) -> Diagnosis:
    """Check training data and settings for the usual causes of poor results; see the module docstring.

    rows: the training rows (list of dicts, ``datasets.Dataset`` or ``records.Records``: its line numbers
      are used in evidence).
    template / chat_fields: how training text is made: a text template (``templates.texts``, e.g.
      ``"<|user|> {input}</s><|assistant|> {output}"``) or ``(prompt_field, answer_field)`` for the
      tokenizer's chat template (``templates.chat_texts``). One of them, or neither with ``encoded`` only.
    encoded: the tokenized examples the Trainer gets (dicts with input_ids and labels), one per row; EOS,
      masking and truncation are checked on them. Without it, rows are encoded the course's way.
    inference_prompt: the prompt you generate from, as a ``{field}`` template or a function row -> text;
      tokenized like ``generation.generate_answers`` (``inference_add_special_tokens``, default False).
    max_seq_len: the length examples are cut to; method, learning_rate, max_steps, batch_size,
      gradient_accumulation_steps: the training settings; label_field: the class column, for balance.
    """
    _validate_arguments(template, chat_fields, method, learning_rate, max_seq_len, max_steps, batch_size,
                        gradient_accumulation_steps, inference_prompt)
    recs = as_records(rows, "rows")
    if not recs.rows:
        raise DataError("rows is empty: pass the training rows")
    if label_field is not None and label_field not in recs.columns:
        raise ConfigError(f"label_field={label_field!r} is not a column (columns: {', '.join(recs.columns)})")
    n = len(recs)
    given = _encoded_examples(encoded, n) if encoded is not None else None
    fmt = template is not None or chat_fields is not None
    built = _build(recs, tokenizer, template, chat_fields, max_seq_len) if fmt else None
    examples = given if given is not None else (built.examples if fmt else None)
    truncated = _truncated(built, examples, max_seq_len, tokenizer, n)

    results = [
        (("prompt_mismatch",),
         _check_prompt_mismatch(recs, tokenizer, built, inference_prompt, inference_add_special_tokens)),
        (("labels_unmasked", "labels_all_masked"), _check_labels_masked(recs, examples, built)),
        (("no_eos",), _check_no_eos(recs, tokenizer, examples, truncated)),
        (("answers_truncated",), _check_answers_truncated(recs, max_seq_len, examples, truncated, built)),
        (("lr_out_of_range",), _check_lr_out_of_range(method, learning_rate)),
        (("too_few_steps",), _check_too_few_steps(n, max_steps, batch_size, gradient_accumulation_steps)),
        (("label_imbalance",), _check_label_imbalance(recs, label_field, imbalance_ratio)),
    ]
    diag = Diagnosis()
    for codes, result in results:
        if isinstance(result, str):
            diag.skipped.update(dict.fromkeys(codes, result))
        else:
            diag.checked += codes
            diag.findings += result
    return diag


def diagnose_config(config, tokenizer=None, **kwargs) -> Diagnosis:
    """``diagnose`` a YAML run config (path or ``RunConfig``): its training file(s), template, max_seq_len,
    learning rate, steps, batch size and label field; ``kwargs`` (e.g. ``inference_prompt``) are passed on."""

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
    cfg = cfg.for_tokenizer(tokenizer)
    ta = cfg.training_args
    settings = dict(template=cfg.text_template, max_seq_len=cfg.max_seq_len, method="lora",
                    learning_rate=ta["learning_rate"], max_steps=ta["max_steps"],
                    batch_size=ta["per_device_train_batch_size"],
                    gradient_accumulation_steps=ta["gradient_accumulation_steps"],
                    label_field=cfg.lab["label_field"])
    settings.update(kwargs)
    return diagnose(read_all(cfg.train_files), tokenizer, **settings)
