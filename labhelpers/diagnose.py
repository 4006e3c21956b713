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

from .errors import ConfigError, DataError

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
        import pandas as pd

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


# --------------------------------------------------------------------------------------------- main
def diagnose(rows, tokenizer, *, template: str | None = None, chat_fields: tuple[str, str] | None = None,
             encoded=None, inference_prompt: str | Callable[[dict], str] | None = None,
             inference_add_special_tokens: bool = False, max_seq_len: int | None = None, method: str = "lora",
             learning_rate: float | None = None, max_steps: int | None = None, batch_size: int | None = None,
             gradient_accumulation_steps: int = 1, label_field: str | None = None,
             imbalance_ratio: float = 3.0) -> Diagnosis:
    """Check training data and settings for the usual causes of poor results; see the module docstring.

    rows: the training rows (list of dicts, ``datasets.Dataset`` or ``data.Records``: its line numbers
      are used in evidence).
    template / chat_fields: how training text is made: a text template (``finetune.texts``, e.g.
      ``"<|user|> {input}</s><|assistant|> {output}"``) or ``(prompt_field, answer_field)`` for the
      tokenizer's chat template (``templates.chat_texts``). One of them, or neither with ``encoded`` only.
    encoded: the tokenized examples the Trainer gets (dicts with input_ids and labels), one per row; EOS,
      masking and truncation are checked on them. Without it, rows are encoded the course's way.
    inference_prompt: the prompt you generate from, as a ``{field}`` template or a function row -> text;
      tokenized like ``generation.generate_answers`` (``inference_add_special_tokens``, default False).
    max_seq_len: the length examples are cut to; method, learning_rate, max_steps, batch_size,
      gradient_accumulation_steps: the training settings; label_field: the class column, for balance.
    """
    from . import data as data_mod
    from .config import check_int
    from .methods import METHODS

    if template is not None and chat_fields is not None:
        raise ConfigError("pass template= (a text template) or chat_fields= (the tokenizer's chat template), "
                          "not both: training used one format")
    if chat_fields is not None and (isinstance(chat_fields, str) or len(chat_fields) != 2):
        raise ConfigError(f"chat_fields={chat_fields!r} must be (prompt_field, answer_field), e.g. ('phrase', 'tone')")
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not one of {list(METHODS)}")
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

    recs = data_mod.as_records(rows, "rows")
    if not recs.rows:
        raise DataError("rows is empty: pass the training rows")
    n = len(recs)
    diag = Diagnosis()
    fmt = template is not None or chat_fields is not None

    # The training prompt/full text of every row, and the untruncated encoding the course would make.
    prompts: list[str] = []
    full_lens: list[int] = []
    prompt_lens: list[int] = []
    built: list[dict] = []
    if fmt:
        from .finetune import texts
        from .templates import chat_texts, tokenize_example

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
            ex = tokenize_example(tokenizer, prompt, full, max_length=10**9)
            prompts.append(prompt)
            prompt_lens.append(ex["labels"].count(-100))
            full_lens.append(len(ex["input_ids"]))
            built.append({k: v[:max_seq_len] if max_seq_len else v for k, v in ex.items()})

    if encoded is not None:
        examples = [dict(e) for e in encoded]
        if len(examples) != n:
            raise ConfigError(f"encoded has {len(examples)} examples but rows has {n}: pass one encoded example "
                              "per row, in the same order")
        for i, e in enumerate(examples):
            if "input_ids" not in e:
                raise ConfigError(f"encoded[{i}] has no 'input_ids' (keys: {sorted(e)}): pass tokenized examples")
    else:
        examples = built if fmt else None

    # -------------------------------------------------------------------------------- prompt format
    if inference_prompt is None:
        diag.skipped["prompt_mismatch"] = "pass inference_prompt= (and template= or chat_fields=)"
    else:
        diag.checked.append("prompt_mismatch")
        from .templates import render_template

        bad, first = [], None
        for i, row in enumerate(recs.rows):
            infer = (inference_prompt(row) if callable(inference_prompt)
                     else render_template(inference_prompt, row, recs.where(i)))
            if infer == prompts[i] and not inference_add_special_tokens:
                continue  # same text, same tokens (training tokenizes without added specials)
            t_ids = tokenizer(prompts[i], add_special_tokens=False)["input_ids"]
            i_ids = tokenizer(infer, add_special_tokens=inference_add_special_tokens)["input_ids"]
            if t_ids != i_ids:
                bad.append(recs.lines[i])
                if first is None:
                    first = (prompts[i], infer, t_ids, i_ids)
        if bad:
            train, infer, t_ids, i_ids = first
            at = _first_difference(train, infer)
            k = _first_difference(t_ids, i_ids)
            hint = _mismatch_hint(train, infer, t_ids, i_ids, tokenizer)
            diag.findings.append(Finding(
                "prompt_mismatch", "error",
                "the prompt at inference differs from the prompt part of the training text"
                + (f": {hint}" if hint else ""),
                {"rows": f"{len(bad)} of {n} ({_rows_text(bad, recs.source)})",
                 "training prompt": repr(train), "inference prompt": repr(infer),
                 "first difference": (f"character {at}: training {_around(train, at)} vs inference {_around(infer, at)}"
                                      if train != infer else "the texts are equal; their tokens differ"),
                 "first different token": f"position {k}: training {_token_at(tokenizer, t_ids, k)} "
                                          f"vs inference {_token_at(tokenizer, i_ids, k)}"},
                "build inference prompts with the same function that built the training prompts (e.g. "
                "templates.chat_texts(tokenizer, prompt)[0] or finetune.texts(template, tokenizer, row)[0]), "
                "and tokenize them with add_special_tokens=False when the text already holds BOS"))

    # ----------------------------------------------------------------------------- labels and EOS
    truncated: list[bool] = [False] * n
    if max_seq_len is not None and fmt:
        truncated = [fl > max_seq_len for fl in full_lens]
    elif max_seq_len is not None and examples is not None:
        # Without the untruncated text: an example at the cap that does not end in EOS was cut.
        eos_id = tokenizer.eos_token_id
        truncated = [len(e["input_ids"]) >= max_seq_len and e["input_ids"][-1] != eos_id for e in examples]

    if examples is None:
        for code in ("no_eos", "labels_unmasked", "labels_all_masked"):
            diag.skipped[code] = "pass encoded= (the tokenized examples) or template= / chat_fields="
    else:
        diag.checked += ["labels_unmasked", "labels_all_masked"]
        from .templates import IGNORE_INDEX

        unmasked, all_masked, no_labels, no_eos = [], [], 0, []
        trained_prompt_tokens = None
        eos_id = tokenizer.eos_token_id
        for i, e in enumerate(examples):
            labels = e.get("labels")
            if labels is None:  # a collator such as DataCollatorForLanguageModeling copies input_ids
                no_labels += 1
                labels = list(e["input_ids"])
            labels = list(labels)
            trained = [lab for lab in labels if lab != IGNORE_INDEX]
            if not trained:
                all_masked.append(recs.lines[i])
                continue
            # The prompt comes first, so its tokens (all of them when the prompt is known) must be masked.
            head = labels[:prompt_lens[i]] if fmt else labels[:1]
            n_trained = sum(lab != IGNORE_INDEX for lab in head)
            if n_trained:
                unmasked.append(recs.lines[i])
                if trained_prompt_tokens is None:
                    trained_prompt_tokens = (n_trained, len(head))
            # Truncated examples lost their EOS to the cut; answers_truncated reports those.
            if eos_id is not None and not truncated[i] and trained[-1] != eos_id:
                no_eos.append(recs.lines[i])
        if unmasked:
            ev = {"rows": f"{len(unmasked)} of {n} ({_rows_text(unmasked, recs.source)})",
                  "first such row": f"{trained_prompt_tokens[0]} of its {trained_prompt_tokens[1]} prompt token(s) "
                                    "are trained"}
            if no_labels:
                ev["no 'labels' key"] = f"{no_labels} example(s): the collator will train every token"
            diag.findings.append(Finding(
                "labels_unmasked", "warning",
                "prompt tokens are not masked in the labels: the loss trains the model to write prompts, and "
                "the answer's few tokens weigh little in it",
                ev, "set the prompt's labels to -100 (templates.tokenize_example(..., response_only=True)); "
                    "ignore this only if you mean to train on the whole text"))
        if all_masked:
            diag.findings.append(Finding(
                "labels_all_masked", "error",
                "examples with every label -100: nothing in them is trained (the loss is 0 or NaN for them)",
                {"rows": f"{len(all_masked)} of {n} ({_rows_text(all_masked, recs.source)})"},
                "mask only the prompt's tokens (labels[:len(prompt_ids)] = -100), and make sure max_seq_len "
                "leaves room for the answer"))
        if eos_id is None:
            diag.skipped["no_eos"] = "the tokenizer has no eos_token"
        else:
            diag.checked.append("no_eos")
            if no_eos:
                diag.findings.append(Finding(
                    "no_eos", "error" if len(no_eos) > n / 2 else "warning",
                    f"examples whose trained tokens do not end with EOS {tokenizer.eos_token!r}: the model never "
                    "learns to stop, and generates until max_new_tokens (endless generation)",
                    {"rows": f"{len(no_eos)} of {n} ({_rows_text(no_eos, recs.source)})"},
                    "end every answer with EOS exactly once (templates.with_single_eos, or tokenize_example which "
                    "adds it); if pad_token is eos_token, collate with DataCollatorForSeq2Seq: "
                    "DataCollatorForLanguageModeling sets every pad-id label, the EOS too, to -100"))

    # ------------------------------------------------------------------------------- truncation
    if max_seq_len is None or examples is None:
        diag.skipped["answers_truncated"] = "pass max_seq_len= and template= / chat_fields= (or encoded=)"
    else:
        diag.checked.append("answers_truncated")
        # Exact lengths of the course's encoding (data.validate estimates them from the rendered text).
        cut = [recs.lines[i] for i in range(n) if truncated[i]]
        if cut:
            ev = {"rows": f"{len(cut)} of {n} ({_rows_text(cut, recs.source)})", "max_seq_len": max_seq_len}
            if full_lens:
                lost = [full_lens[i] - max_seq_len for i in range(n) if truncated[i]]
                gone = sum(prompt_lens[i] >= max_seq_len for i in range(n) if truncated[i])
                ev["tokens cut"] = f"{min(lost)}-{max(lost)} per row; {gone} row(s) lose the whole answer"
                ev["longest example"] = f"{max(full_lens)} tokens"
            diag.findings.append(Finding(
                "answers_truncated", "error" if len(cut) > n / 2 else "warning",
                "examples longer than max_seq_len: the cut removes the end of the answer and its EOS, so the "
                "model learns cut-off answers that do not stop",
                ev, f"raise max_seq_len to at least {max(full_lens) if full_lens else 'the longest example'}, "
                    "or shorten/drop the long rows"))

    # ---------------------------------------------------------------------------- training settings
    if learning_rate is None:
        diag.skipped["lr_out_of_range"] = "pass learning_rate= (and method=)"
    else:
        diag.checked.append("lr_out_of_range")
        low, high = LR_RANGES.get(method, LR_RANGES["lora"])
        if learning_rate < low / LR_FAR or learning_rate > high * LR_FAR:
            too = "low: the weights barely move and the loss stays flat" if learning_rate < low else \
                  "high: the loss jumps or diverges and the model forgets what it knew"
            diag.findings.append(Finding(
                "lr_out_of_range", "error",
                f"learning_rate={learning_rate:g} is far outside the usual range for {method} ({low:g}-{high:g}): too {too}",
                {"method": method, "learning_rate": learning_rate, "typical range": f"{low:g}-{high:g}",
                 "flagged beyond": f"{low / LR_FAR:g}-{high * LR_FAR:g}"},
                f"use a rate in {low:g}-{high:g} for {method} (a little above it for tiny models) and adjust by "
                "factors of 2-3 while watching the loss curve"))

    if max_steps is None or batch_size is None:
        diag.skipped["too_few_steps"] = "pass max_steps= and batch_size="
    else:
        diag.checked.append("too_few_steps")
        n_train = len(examples) if examples is not None else n
        seen = max_steps * batch_size * gradient_accumulation_steps
        epochs = seen / n_train
        if max_steps < MIN_STEPS or epochs < MIN_EPOCHS:
            why = (f"only {max_steps} optimizer steps (fewer than {MIN_STEPS})" if max_steps < MIN_STEPS
                   else f"{epochs:.2f} passes over the data: {n_train - min(seen, n_train)} of {n_train} rows are never seen")
            need = max(MIN_STEPS, -(-n_train * MIN_EPOCHS // (batch_size * gradient_accumulation_steps)))
            diag.findings.append(Finding(
                "too_few_steps", "warning", f"too little training for the data: {why}",
                {"steps": max_steps, "rows per step": batch_size * gradient_accumulation_steps,
                 "rows seen": seen, "training rows": n_train, "epochs": round(epochs, 2)},
                f"train for at least {int(need)} steps (one pass, and {MIN_STEPS} steps at least); 1-3 passes "
                "are usual for a small dataset"))

    # ------------------------------------------------------------------------------------- labels
    if label_field is None:
        diag.skipped["label_imbalance"] = "pass label_field= (the class column)"
    else:
        if label_field not in recs.columns:
            raise ConfigError(f"label_field={label_field!r} is not a column (columns: {', '.join(recs.columns)})")
        diag.checked.append("label_imbalance")
        # data.validate owns the balance rules (imbalance_ratio, labels with a single example).
        report = data_mod.validate(recs, label_field=label_field, imbalance_ratio=imbalance_ratio)
        found = [i for i in report.issues if i.kind in ("imbalance", "rare_label")]
        if found:
            counts = report.label_counts
            diag.findings.append(Finding(
                "label_imbalance", "warning",
                f"labels of {label_field!r} are out of balance: the model learns to answer the common label",
                {"label counts": counts, "largest / smallest": f"{max(counts.values()) / min(counts.values()):.1f} "
                 f"(flagged above {imbalance_ratio:g})", "details": "; ".join(i.message for i in found)},
                "collect more rows of the rare labels, or oversample them (or undersample the common ones); "
                "score with macro F1, which accuracy on imbalanced data hides"))
    return diag


def diagnose_config(config, tokenizer=None, **kwargs) -> Diagnosis:
    """``diagnose`` a YAML run config (path or ``RunConfig``): its training file(s), template, max_seq_len,
    learning rate, steps, batch size and label field; ``kwargs`` (e.g. ``inference_prompt``) are passed on."""
    from .finetune import _read_all
    from .runconfig import RunConfig, load_config

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
    ta = cfg.training_args
    settings = dict(template=cfg.text_template, max_seq_len=cfg.max_seq_len, method="lora",
                    learning_rate=ta["learning_rate"], max_steps=ta["max_steps"],
                    batch_size=ta["per_device_train_batch_size"],
                    gradient_accumulation_steps=ta["gradient_accumulation_steps"],
                    label_field=cfg.lab["label_field"])
    settings.update(kwargs)
    return diagnose(_read_all(cfg.train_files), tokenizer, **settings)
