"""Text and chat templates, EOS handling and response-only label masking.

Two ways to turn a row into training text, both used in the course:
- Olive-style text templates with ``{field}`` placeholders (``render_template``);
- the tokenizer's own chat template (``chat_texts``), the safer default for instruct models,
  because inference then uses exactly the format training used.
"""

from __future__ import annotations

import string

from labhelpers.errors import ConfigError, DataError

IGNORE_INDEX = -100  # positions the loss skips (PyTorch's cross-entropy default)


def template_fields(template: str) -> list[str]:
    """The ``{field}`` names a template uses, in order."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def render_template(template: str, row: dict, where: str = "row") -> str:
    """Fill ``{field}`` placeholders from ``row``; an unknown field names the columns there are."""
    missing = [f for f in template_fields(template) if f not in row]
    if missing:
        raise DataError(f"{where}: template field(s) {missing} not in the data; its columns are "
                        f"{sorted(row)}. Rename the placeholder or the column.")
    return template.format(**{k: row[k] for k in template_fields(template)})


def chat_texts(tokenizer, prompt: str, answer: str | None = None, system: str | None = None) -> tuple[str, str | None]:
    """``(prompt_text, full_text)`` written by the tokenizer's chat template.

    ``prompt_text`` ends with the assistant tag (what generation starts from); ``full_text`` adds the
    answer and the end-of-turn token (what training sees). ``full_text`` is None without an answer.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("this tokenizer has no chat template; use a text template (render_template) "
                        "or a model with a chat template")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if answer is None:
        return prompt_text, None
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
    return prompt_text, full


def chat_text_template(tokenizer, prompt_field: str, answer_field: str, system: str | None = None) -> str:
    """An Olive ``--text_template`` that writes each row exactly as the tokenizer's chat template would.

    E.g. ``"<s><|user|> {phrase}</s><|assistant|> {tone}</s>"`` for the course's tiny model. Olive fills
    the template with ``str.format``, so braces the chat format itself contains are doubled. Training
    text written this way is the text ``chat_texts``/``apply_chat_template`` prompts with at inference:
    a hand-written template (the chapter's Llama-3 one has no end-of-turn token after ``{tone}``)
    teaches a format the model is never asked in, or never to stop.
    """
    for name, value in (("prompt_field", prompt_field), ("answer_field", answer_field)):
        if not isinstance(value, str) or not value.isidentifier():
            raise DataError(f"{name}={value!r} must be a column name (letters, digits, underscores)")
    marks = {prompt_field: "\x02PROMPT\x03", answer_field: "\x02ANSWER\x03"}
    prompt_text, full = chat_texts(tokenizer, marks[prompt_field], marks[answer_field], system=system)
    if not full.startswith(prompt_text) or any(full.count(m) != 1 for m in marks.values()):
        raise DataError("the tokenizer's chat template does not write the prompt as a prefix of the full "
                        "conversation (or drops the text); write the --text_template by hand for this model")
    text = full.replace("{", "{{").replace("}", "}}")
    for field, mark in marks.items():
        text = text.replace(mark, "{" + field + "}")
    return text


def with_single_eos(text: str, eos: str, start: int = 0) -> str:
    """Make ``text[start:]`` hold the EOS token exactly once, at the end if it had none.

    Without EOS the model never learns to stop (endless generation); twice, it learns to stop early.
    """
    n = text[start:].count(eos)
    if n == 0:
        return text + eos
    if n > 1:
        raise DataError(f"the answer part holds EOS {eos!r} {n} times: {text[start:]!r}; it must end once")
    return text


def tokenize_example(tokenizer, prompt_text: str, full_text: str, max_length: int = 256,
                     response_only: bool = True, add_special_tokens: bool = False) -> dict:
    """Token ids, attention mask and labels for one example.

    ``response_only`` masks the prompt's tokens with -100 so the loss is the answer's alone. The
    prompt's tokens must be a prefix of the full text's tokens; if a tokenizer merges across the
    boundary the mask would be wrong, so that raises instead.
    """
    full_text = with_single_eos(full_text, tokenizer.eos_token, start=len(prompt_text))
    ids = tokenizer(full_text, add_special_tokens=add_special_tokens)["input_ids"]
    prompt_ids = tokenizer(prompt_text, add_special_tokens=add_special_tokens)["input_ids"]
    if ids[: len(prompt_ids)] != prompt_ids:
        raise DataError(f"the prompt's tokens are not a prefix of the full text's tokens for {prompt_text!r}: "
                        "end the prompt on a token boundary (e.g. put the space before the answer "
                        "in the answer, not the prompt)")
    if len(ids) > max_length:
        raise DataError(f"example is {len(ids)} tokens, over max_length={max_length}: raise max_length or "
                        f"shorten the text ({full_text[:60]!r}...)")
    labels = list(ids)
    if response_only:
        labels[: len(prompt_ids)] = [IGNORE_INDEX] * len(prompt_ids)
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def eos_end(ids: list[int], tokenizer) -> int | None:
    """Index of the EOS that ends ``ids``, past the whitespace a chat template writes after it (ChatML ends
    a turn with ``<|im_end|>`` then a newline); None when the sequence does not end with EOS."""
    i = len(ids) - 1
    while i >= 0 and ids[i] != tokenizer.eos_token_id and not tokenizer.decode([ids[i]]).strip():
        i -= 1
    return i if i >= 0 and ids[i] == tokenizer.eos_token_id else None


def without_eos(example: dict, tokenizer) -> dict:
    """``example`` cut before its final EOS (and what the template writes after it): what training data
    looks like when the template forgets EOS, so the model never sees where an answer ends."""
    end = eos_end(example["input_ids"], tokenizer)
    if end is None:
        raise DataError("the example does not end with EOS: there is nothing to remove")
    return {k: v[:end] for k, v in example.items()}


def show_trained_tokens(tokenizer, example: dict) -> list[tuple[str, bool]]:
    """``[(token, trained?)]`` for one tokenized example: what the loss actually sees."""
    tokens = tokenizer.convert_ids_to_tokens(example["input_ids"])
    return [(t, lab != IGNORE_INDEX) for t, lab in zip(tokens, example["labels"])]


def split_template(template: str) -> tuple[str, str]:
    """``(prompt_part, answer_part)``: the answer starts at the last ``{field}``, and takes the
    whitespace before it (so " {output}" is trained the way the base model saw the words)."""
    fields = template_fields(template)
    if len(fields) < 2:
        raise ConfigError(f"text_template {template!r} needs a prompt field and, last, the response field")
    idx = template.rindex("{" + fields[-1])
    prompt = template[:idx].rstrip()
    return prompt, template[len(prompt):]


def texts(template: str, tokenizer, row: dict, where: str = "row") -> tuple[str, str]:
    """``(prompt_text, full_text)`` of one row under a text template, with BOS in front if the
    tokenizer has one and the template does not start with it."""
    prompt_t, answer_t = split_template(template)
    bos = tokenizer.bos_token or ""
    if bos and template.startswith(bos):
        bos = ""
    prompt = bos + render_template(prompt_t, row, where)
    return prompt, prompt + render_template(answer_t, row, where)


def encode(template: str, tokenizer, row: dict, max_seq_len: int, response_only: bool = True,
           where: str = "row") -> dict:
    """Token ids / mask / labels for one row (EOS once; prompt masked; truncated to ``max_seq_len``)."""
    prompt, full = texts(template, tokenizer, row, where)
    ex = tokenize_example(tokenizer, prompt, full, max_length=10**9, response_only=response_only)
    return {k: v[:max_seq_len] for k, v in ex.items()}
