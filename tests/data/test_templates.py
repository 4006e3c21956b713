import pytest

from labhelpers.data import templates as T
from labhelpers.errors import DataError


def test_render_template_fills_fields():
    assert T.render_template("<|user|> {phrase}</s><|assistant|> {tone}", {"phrase": "Hi.", "tone": "joy"}) \
        == "<|user|> Hi.</s><|assistant|> joy"
    assert T.template_fields("{a} and {b}") == ["a", "b"]


def test_unknown_field_lists_the_columns():
    with pytest.raises(DataError, match=r"\['phrase'\].*columns are \['text', 'tone'\]"):
        T.render_template("{phrase} -> {tone}", {"text": "x", "tone": "joy"}, where="train.jsonl line 3")


def test_with_single_eos():
    assert T.with_single_eos("a joy", "</s>") == "a joy</s>"
    assert T.with_single_eos("a joy</s>", "</s>") == "a joy</s>"
    # EOS inside the prompt part does not count for the answer.
    assert T.with_single_eos("<s>q</s> joy", "</s>", start=len("<s>q</s>")) == "<s>q</s> joy</s>"
    with pytest.raises(DataError, match="2 times"):
        T.with_single_eos("joy</s></s>", "</s>")


def test_chat_template_emits_bos_and_matches_the_text_template(tiny_tokenizer):
    prompt, full = T.chat_texts(tiny_tokenizer, "I was thrilled.", "joy")
    assert prompt == "<s><|user|> I was thrilled.</s><|assistant|>"
    assert full == "<s><|user|> I was thrilled.</s><|assistant|> joy</s>"
    assert full.startswith(prompt)
    assert T.chat_texts(tiny_tokenizer, "x")[1] is None


def test_response_only_labels(tiny_tokenizer):
    prompt, full = T.chat_texts(tiny_tokenizer, "We were stunned.", "surprise")
    ex = T.tokenize_example(tiny_tokenizer, prompt, full)
    n_prompt = len(tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert ex["input_ids"][0] == tiny_tokenizer.bos_token_id  # exactly one BOS, from the template
    assert ex["input_ids"].count(tiny_tokenizer.bos_token_id) == 1
    assert ex["labels"][:n_prompt] == [T.IGNORE_INDEX] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["input_ids"][-1] == tiny_tokenizer.eos_token_id
    shown = T.show_trained_tokens(tiny_tokenizer, ex)
    assert [t for t, on in shown if on][-1] == "</s>"
    full_labels = T.tokenize_example(tiny_tokenizer, prompt, full, response_only=False)["labels"]
    assert T.IGNORE_INDEX not in full_labels


def test_prompt_boundary_and_length_are_checked(tiny_tokenizer):
    # The prompt ends inside a word the full text tokenizes differently: the mask would be wrong.
    with pytest.raises(DataError, match="prefix"):
        T.tokenize_example(tiny_tokenizer, "<s>the mark", "<s>the market</s>")
    with pytest.raises(DataError, match="max_length=3"):
        T.tokenize_example(tiny_tokenizer, "<s>a", "<s>a b c d</s>", max_length=3)


def test_chat_texts_needs_a_chat_template(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    with pytest.raises(DataError, match="no chat template"):
        T.chat_texts(tok, "x", "y")


def test_chat_text_template_writes_rows_as_the_chat_template_does(tiny_tokenizer):
    from labhelpers.deploy.olive import TONE_TEXT_TEMPLATE

    template = T.chat_text_template(tiny_tokenizer, "phrase", "tone")
    assert template == "<s><|user|> {phrase}</s><|assistant|> {tone}</s>" == TONE_TEXT_TEMPLATE
    row = {"phrase": "We were {stunned}.", "tone": "surprise"}   # braces in the data stay as they are
    assert T.render_template(template, row) == T.chat_texts(tiny_tokenizer, row["phrase"], row["tone"])[1]
    with pytest.raises(DataError, match="answer_field='my tone'"):
        T.chat_text_template(tiny_tokenizer, "phrase", "my tone")


def test_chat_text_template_escapes_braces_of_the_chat_format(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    # A format with literal braces (JSON-like), as some chat templates have.
    tok.chat_template = ("{% for m in messages %}{{ '{' + m['role'] + '}' }}{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '{assistant}' }}{% endif %}")
    template = T.chat_text_template(tok, "q", "a")
    assert template == "{{user}}{q}{{assistant}}{a}"
    assert template.format(q="hi", a="yo") == "{user}hi{assistant}yo"


def test_chat_text_template_refuses_a_format_whose_prompt_is_not_a_prefix(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    # Drops the generation tag once the answer is there: training text and inference prompt would differ.
    tok.chat_template = ("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<gen>{% endif %}")
    with pytest.raises(DataError, match="prefix"):
        T.chat_text_template(tok, "q", "a")


@pytest.mark.parametrize("model", ["tiny", "smollm2"])
def test_without_eos_cuts_the_final_eos_and_what_follows(tiny_tokenizer, model):
    """The tiny Llama ends an answer with </s>; SmolLM2's ChatML with <|im_end|> and a newline."""
    from transformers import AutoTokenizer

    from labhelpers.paths import REAL_MODEL_DIR

    tok = tiny_tokenizer if model == "tiny" else AutoTokenizer.from_pretrained(REAL_MODEL_DIR)
    ex = T.tokenize_example(tok, *T.chat_texts(tok, "what a day", "joy"), max_length=64)
    end = T.eos_end(ex["input_ids"], tok)
    assert ex["input_ids"][end] == tok.eos_token_id
    assert len(ex["input_ids"]) - end == (1 if model == "tiny" else 2)  # ChatML's "\n" after <|im_end|>
    cut = T.without_eos(ex, tok)
    assert tok.eos_token_id not in cut["labels"][-3:] and T.eos_end(cut["input_ids"], tok) is None
    assert {k: len(v) for k, v in cut.items()} == {k: end for k in ex}
    assert tok.decode(cut["input_ids"]).endswith("joy")
    with pytest.raises(DataError, match="does not end with EOS"):
        T.without_eos(cut, tok)
