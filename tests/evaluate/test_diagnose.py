"""labhelpers.evaluate.diagnose: one test per flagged problem (it must be flagged, alone), and no false positives on
the course's own data and settings (notebook 02's tone run, configs/qa_lora.yaml)."""

import pytest

from labhelpers.data import records, templates
from labhelpers.errors import ConfigError, DataError
from labhelpers.evaluate.diagnose import CODES, Diagnosis, diagnose, diagnose_config
from labhelpers.paths import BASE_MODEL_DIR, DATA_DIR, REPO_ROOT

QA_CONFIG = REPO_ROOT / "configs" / "qa_lora.yaml"
QA_TEMPLATE = "<|user|> {input}</s><|assistant|> {output}"


@pytest.fixture(scope="module")
def tok():
    """The embedded model's tokenizer: the course's own data can then be checked (loads in milliseconds)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(BASE_MODEL_DIR)


@pytest.fixture(scope="module")
def tone():
    return records.read_records(DATA_DIR / "tone" / "train.jsonl")


@pytest.fixture(scope="module")
def few(tone):
    """The first 200 tone rows (balanced enough), for the checks that do not depend on the data's size."""
    return records.Records(tone.source, tone.rows[:200], tone.lines[:200])


@pytest.fixture(scope="module")
def qa():
    return records.read_records(DATA_DIR / "qa" / "train.jsonl")


def encode_tone(tok, row, **kw):
    """Notebook 02's encoding: the chat template, response-only labels, EOS once."""
    return templates.tokenize_example(tok, *templates.chat_texts(tok, row["phrase"], row["tone"]), max_length=64, **kw)


@pytest.fixture(scope="module")
def tone_encoded(tok, tone):
    return [encode_tone(tok, r) for r in tone.rows]


@pytest.fixture(scope="module")
def few_encoded(tone_encoded):
    return tone_encoded[:200]


def tone_prompt(tok):
    return lambda row: templates.chat_texts(tok, row["phrase"])[0]


def diagnose_tone(tok, tone, encoded, **overrides):
    """Notebook 02's settings: lr 1e-3, 300 steps, batch 8; any of them overridden."""
    kw = dict(chat_fields=("phrase", "tone"), encoded=encoded, inference_prompt=tone_prompt(tok), max_seq_len=64,
              method="lora", learning_rate=1e-3, max_steps=300, batch_size=8, label_field="tone")
    kw.update(overrides)
    return diagnose(tone, tok, **kw)


# ----------------------------------------------------------------------------- no false positives
def test_course_tone_run_is_clean(tok, tone, tone_encoded):
    d = diagnose_tone(tok, tone, tone_encoded)
    assert d.ok and d.codes == [], str(d)
    assert sorted(d.checked) == sorted(CODES) and not d.skipped  # clean because checked, not because skipped
    assert "no problems found (8 checks ran)" in str(d)
    assert d.to_frame().empty


def test_course_qa_config_is_clean(tok):
    # The inference prompt finetune.answers uses, as a user would write it by hand.
    d = diagnose_config(QA_CONFIG, tok, inference_prompt="<s><|user|> {input}</s><|assistant|>")
    assert d.codes == [], str(d)
    assert set(d.skipped) == {"label_imbalance"}  # the config has no label field


def test_text_template_without_encoded_is_clean(tok, qa):
    # Rows encoded the course's way (templates.texts + tokenize_example): EOS, masks and lengths are right.
    d = diagnose(qa, tok, template=QA_TEMPLATE, max_seq_len=96, learning_rate=3e-3, max_steps=120, batch_size=8)
    assert d.codes == [], str(d)
    assert {"no_eos", "labels_unmasked", "labels_all_masked", "answers_truncated"} <= set(d.checked)


def test_course_rates_and_schedules_of_other_notebooks_are_clean(tok, tone, qa):
    # Notebook 01: full 2e-4, ia3 0.1; notebook 03: qlora 5e-3, 60 steps x batch 1 x accumulation 16 on
    # train[:640]; notebook 04: 100 steps x 8 on the 300 Q&A rows.
    for method, lr in (("full", 2e-4), ("ia3", 1e-1), ("qlora", 5e-3)):
        assert diagnose(qa, tok, method=method, learning_rate=lr).codes == []
    assert diagnose(tone.rows[:640], tok, method="qlora", learning_rate=5e-3, max_steps=60, batch_size=1,
                    gradient_accumulation_steps=16).codes == []
    assert diagnose(qa, tok, learning_rate=3e-3, max_steps=100, batch_size=8).codes == []


# ------------------------------------------------------------------------- one test per problem
@pytest.mark.parametrize("inference, hint", [
    ("<|user|> {phrase}</s><|assistant|>", "lacks the BOS token"),                   # hand-written, no <s>
    ("<s><|user|> {phrase}</s><|assistant|> ", "trailing whitespace"),               # space after the tag
    ("<s>User: {phrase}\nAssistant:", "role markers differ"),                        # the chapter's format
    ("<s><|user|> {phrase}<|assistant|>", ""),                                       # </s> after the turn lost
])
def test_prompt_mismatch(tok, few, few_encoded, inference, hint):
    d = diagnose_tone(tok, few, few_encoded, inference_prompt=inference)
    assert d.codes == ["prompt_mismatch"], str(d)
    f = d["prompt_mismatch"]
    assert f.severity == "error" and hint in f.message
    assert f.evidence["rows"].startswith(f"{len(few)} of {len(few)}")
    assert "first difference" in f.evidence and f.fix


def test_prompt_mismatch_double_bos(tok, few, few_encoded):
    # Right text, but tokenized with add_special_tokens=True: the tokenizer adds a second BOS.
    d = diagnose_tone(tok, few, few_encoded, inference_add_special_tokens=True)
    assert d.codes == ["prompt_mismatch"] and "BOS twice" in d["prompt_mismatch"].message


def test_no_eos(tok, few, few_encoded):
    # The usual mistake: tokenizer(prompt + answer) without appending EOS.
    cut = [{k: v[:-1] for k, v in e.items()} for e in few_encoded]
    assert all(e["input_ids"][-1] != tok.eos_token_id for e in cut)
    d = diagnose_tone(tok, few, cut)
    assert d.codes == ["no_eos"], str(d)
    assert d["no_eos"].severity == "error" and "endless generation" in d["no_eos"].message


def test_no_eos_in_some_rows_names_them(tok, few, few_encoded):
    enc = list(few_encoded)
    enc[4] = {k: v[:-1] for k, v in enc[4].items()}
    d = diagnose_tone(tok, few, enc)
    assert d.codes == ["no_eos"] and d["no_eos"].severity == "warning"
    assert d["no_eos"].evidence["rows"].startswith("1 of 200") and "line(s) 5" in d["no_eos"].evidence["rows"]


def test_labels_unmasked(tok, few):
    enc = [encode_tone(tok, r, response_only=False) for r in few.rows]
    d = diagnose_tone(tok, few, enc)
    assert d.codes == ["labels_unmasked"], str(d)
    assert "prompt token(s) are trained" in d["labels_unmasked"].evidence["first such row"]


def test_labels_missing_count_as_unmasked(tok, few, few_encoded):
    enc = [{k: v for k, v in e.items() if k != "labels"} for e in few_encoded]
    d = diagnose_tone(tok, few, enc)
    assert d.codes == ["labels_unmasked"] and "no 'labels' key" in d["labels_unmasked"].evidence


def test_labels_all_masked(tok, few, few_encoded):
    enc = [dict(e, labels=[templates.IGNORE_INDEX] * len(e["labels"])) for e in few_encoded]
    d = diagnose_tone(tok, few, enc)
    assert d.codes == ["labels_all_masked"], str(d)
    assert d["labels_all_masked"].severity == "error"


@pytest.mark.parametrize("method, lr", [("lora", 0.1), ("lora", 1e-8), ("full", 5e-3), ("qlora", 2e-2)])
def test_lr_out_of_range(tok, few, few_encoded, method, lr):
    d = diagnose_tone(tok, few, few_encoded, method=method, learning_rate=lr)
    assert d.codes == ["lr_out_of_range"], str(d)
    assert d["lr_out_of_range"].evidence["method"] == method


def test_lr_range_depends_on_the_method(tok, qa):
    assert diagnose(qa, tok, method="lora", learning_rate=5e-3).codes == []       # course's QLoRA/LoRA rate
    assert diagnose(qa, tok, method="full", learning_rate=5e-3).codes == ["lr_out_of_range"]
    assert diagnose(qa, tok, method="ia3", learning_rate=5e-3).codes == []


@pytest.mark.parametrize("steps, batch, why", [(50, 8, "passes over the data"), (20, 64, "optimizer steps")])
def test_too_few_steps(tok, tone, tone_encoded, steps, batch, why):
    # 50 x 8 = 400 of 800 rows seen; 20 x 64 = 1280 rows seen but only 20 updates.
    d = diagnose_tone(tok, tone, tone_encoded, max_steps=steps, batch_size=batch)
    assert d.codes == ["too_few_steps"], str(d)
    assert why in d["too_few_steps"].message and d["too_few_steps"].evidence["training rows"] == 800


def test_answers_truncated(tok, qa):
    # Longer answers and a max_seq_len just above the longest prompt: most answers lose their end and EOS.
    rows = [dict(r, output=r["output"] + " It is a word for a feeling.") for r in qa.rows]
    d = diagnose(rows, tok, template=QA_TEMPLATE, max_seq_len=26, learning_rate=3e-3, max_steps=120, batch_size=8)
    assert d.codes == ["answers_truncated"], str(d)
    f = d["answers_truncated"]
    assert f.severity == "error" and "0 row(s) lose the whole answer" in f.evidence["tokens cut"]
    assert "raise max_seq_len to at least" in f.fix


def test_answers_truncated_from_encoded_only(tok, qa):
    # No template: an example at the cap that does not end in EOS was cut.
    rows = [dict(r, output=r["output"] + " It is a word for a feeling.") for r in qa.rows]
    enc = [templates.encode(QA_TEMPLATE, tok, r, max_seq_len=26) for r in rows]
    d = diagnose(rows, tok, encoded=enc, max_seq_len=26)
    assert d.codes == ["answers_truncated"], str(d)
    assert "prompt_mismatch" in d.skipped


def test_label_imbalance(tok, tone):
    rows = [r for r in tone.rows if r["tone"] == "joy"] + [r for r in tone.rows if r["tone"] != "joy"][:30]
    enc = [encode_tone(tok, r) for r in rows]
    d = diagnose_tone(tok, rows, enc)
    assert d.codes == ["label_imbalance"], str(d)
    assert d["label_imbalance"].evidence["label counts"]["joy"] == 200


# ------------------------------------------------------------------------------ report and arguments
def test_report_shapes(tok, few, few_encoded):
    d = diagnose_tone(tok, few, few_encoded, learning_rate=0.5, max_steps=5)
    assert d.codes == ["lr_out_of_range", "too_few_steps"]
    frame = d.to_frame()
    assert list(frame.columns) == ["code", "severity", "message", "evidence", "fix"] and len(frame) == 2
    text = str(d)
    assert "2 problem(s) found" in text and "Fix:" in text
    with pytest.raises(KeyError, match="not flagged"):
        d["no_eos"]
    assert isinstance(diagnose(few, tok), Diagnosis) and set(diagnose(few, tok).skipped) == set(CODES)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="sgd"), "method="),
    (dict(learning_rate="1e-3"), "learning_rate="),
    (dict(max_steps=0), "max_steps="),
    (dict(template=QA_TEMPLATE, chat_fields=("phrase", "tone")), "not both"),
    (dict(chat_fields="phrase"), "chat_fields="),
    (dict(inference_prompt="<s>{phrase}"), "inference_prompt needs"),
    (dict(encoded=[{"input_ids": [1]}]), "encoded has 1 examples"),
    (dict(label_field="label"), "label_field='label'"),
])
def test_bad_arguments_are_named(tok, tone, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        diagnose(tone, tok, **kwargs)


def test_missing_fields_name_the_row(tok, tone):
    with pytest.raises(DataError, match="line 1"):
        diagnose(tone, tok, chat_fields=("input", "output"))
    with pytest.raises(DataError, match="empty"):
        diagnose([], tok)


def test_no_eos_understands_chatml():
    """SmolLM2's answers end "<|im_end|>\\n": flagged only when <|im_end|> itself is missing."""
    from transformers import AutoTokenizer

    from labhelpers.paths import REAL_MODEL_DIR

    smol = AutoTokenizer.from_pretrained(REAL_MODEL_DIR)
    rows = [{"phrase": f"what a day number {i}", "tone": "joy" if i % 2 else "anger"} for i in range(20)]
    good = [encode_tone(smol, r) for r in rows]
    assert smol.decode(good[0]["input_ids"][-2:]) == "<|im_end|>\n"
    kw = dict(chat_fields=("phrase", "tone"), max_seq_len=64)
    assert "no_eos" not in diagnose(rows, smol, encoded=good, **kw).codes
    assert "no_eos" in diagnose(rows, smol, encoded=[templates.without_eos(e, smol) for e in good], **kw).codes
    # From the examples alone (no fields to rebuild the text), one at the length cap that ends "<|im_end|>\n"
    # is whole, not truncated; cut before its <|im_end|>, it is.
    cap = max(len(e["input_ids"]) for e in good)
    assert "answers_truncated" not in diagnose(rows, smol, encoded=good, max_seq_len=cap).codes
    cut = [{k: v[:cap - 2] for k, v in e.items()} if len(e["input_ids"]) == cap else e for e in good]
    assert "answers_truncated" in diagnose(rows, smol, encoded=cut, max_seq_len=cap - 2).codes
