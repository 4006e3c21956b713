"""Chat-format data: ``messages`` conversations checked turn by turn, and chat templates that mark the
assistant's tokens for TRL's ``assistant_only_loss``.

A conversation is ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``: an optional system turn
first, then user and assistant turns taking turns, ending with the assistant (the answer training learns).
"""

from __future__ import annotations

import re

from trl.chat_template_utils import get_training_chat_template

from labhelpers.data.records import Records, type_name
from labhelpers.errors import ConfigError, DataError

ROLES = ("system", "user", "assistant")
#: a bad file lists this many conversations' problems, then stops (the rest are usually the same mistake)
MAX_LISTED = 10


def conversation_problem(messages) -> str | None:
    """What is wrong with one conversation (naming the turn, 1-based), or None when it trains."""
    if not isinstance(messages, list) or not messages:
        return (f"'messages' must be a non-empty list of {{\"role\": ..., \"content\": ...}} turns, "
                f"not {type_name(messages)}")
    previous = None   # the last user/assistant role seen
    for k, turn in enumerate(messages, 1):
        if not isinstance(turn, dict):
            return f"turn {k} is {type_name(turn)}: write it as {{\"role\": ..., \"content\": ...}}"
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            return f"turn {k}: unknown role {role!r}; use one of {', '.join(ROLES)}"
        if not isinstance(content, str):
            return f"turn {k} ({role}): 'content' must be a string, not {type_name(content)}"
        if not content.strip():
            return f"turn {k} ({role}): 'content' is empty; write the text or drop the turn"
        if role == "system":
            if k != 1:
                return f"turn {k}: a system turn may only come first"
            continue
        if role == previous:
            return f"turn {k}: two {role} turns in a row; join them, or put the other role's turn between them"
        if previous is None and role == "assistant":
            return f"turn {k}: the conversation starts with the assistant; a user turn must come first"
        previous = role
    if previous is None:
        return "no user or assistant turn: add the question (user) and the answer (assistant)"
    if previous != "assistant":
        return f"turn {len(messages)} (user) ends the conversation: add the assistant's answer after it"
    return None


def check_messages(recs: Records, field: str = "messages") -> None:
    """Raise one ``DataError`` listing every bad conversation in ``recs`` by file, line, record and turn."""
    problems = []
    for i, row in enumerate(recs.rows):
        if field not in row:
            problem = f"no '{field}' field (its fields: {sorted(row)})"
        else:
            problem = conversation_problem(row[field])
        if problem:
            k = recs.record_number(i) or i + 1
            problems.append(f"{recs.source}:line {recs.lines[i]}, record {k}: {problem}")
    if problems:
        more = f"\n... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise DataError(f"{len(problems)} conversation(s) in {recs.source} cannot train:\n"
                        + "\n".join(problems[:MAX_LISTED]) + more)


# ----------------------------------------------------------------------------------------- templates
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")
# The course's two chat formats, each turn written by one expression; the patch wraps the assistant's text and
# its end-of-turn in {% generation %} so the mask is exactly what notebook 02's prompt/answer split trains.
_CHATML_TURN = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
_CHATML_MARKED = ("{% if message['role'] == 'assistant' %}{{'<|im_start|>assistant\n'}}{% generation %}"
                  "{{message['content'] + '<|im_end|>' + '\n'}}{% endgeneration %}{% else %}" + _CHATML_TURN
                  + "{% endif %}")
_TINY_TURN = "<|{{ message['role'] }}|> {{ message['content'] | trim }}{{ eos_token }}"
_TINY_MARKED = ("{% if message['role'] == 'assistant' %}<|assistant|>{% generation %} {{ message['content'] | trim }}"
                "{{ eos_token }}{% endgeneration %}{% else %}" + _TINY_TURN + "{% endif %}")
_PATCHES = ((_CHATML_TURN, _CHATML_MARKED), (_TINY_TURN, _TINY_MARKED))
_PROBE = [{"role": "system", "content": "Name the tone."}, {"role": "user", "content": "what a day"},
          {"role": "assistant", "content": "joy"}, {"role": "user", "content": "oh no"},
          {"role": "assistant", "content": "sad"}]


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and _GENERATION.search(template) is not None


def training_chat_template(tokenizer) -> str:
    """``tokenizer``'s chat template with ``{% generation %}`` around each assistant answer.

    TRL's ``assistant_only_loss=True`` trains only the tokens inside those markers, and TRL adds them itself
    only to templates it knows (Llama 3, Qwen 2.5, ...), not to SmolLM2's or the tiny Llama's. The patched
    template renders the same text as the original (checked here on a probe conversation).
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ConfigError("this tokenizer has no chat template: train on a text template instead")
    if has_generation_markers(template):
        return template
    patched = next((template.replace(turn, marked) for turn, marked in _PATCHES if turn in template), None)
    if patched is None:
        try:   # TRL's own training templates (Llama 3, Qwen, Gemma, Phi...)
            patched = get_training_chat_template(tokenizer)
        except ValueError as err:
            raise ConfigError(f"{tokenizer.name_or_path}: its chat template has no {{% generation %}} markers and "
                              "neither the course nor TRL knows how to add them. Write them around the assistant's "
                              "content, or use a prompt/completion dataset (its loss skips the prompt without "
                              f"markers). ({err})") from None
    same = (tokenizer.apply_chat_template(_PROBE, tokenize=False)
            == tokenizer.apply_chat_template(_PROBE, tokenize=False, chat_template=patched))
    if not same:
        raise ConfigError(f"{tokenizer.name_or_path}: the marked chat template renders different text from the "
                          "original; mark the template by hand")
    return patched


def assistant_mask(tokenizer, messages: list[dict], chat_template: str | None = None) -> tuple[list[int], list[int]]:
    """``(input_ids, mask)`` of one conversation, the mask 1 on the tokens ``assistant_only_loss`` trains."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                        chat_template=chat_template or training_chat_template(tokenizer))
    return list(out["input_ids"]), list(out["assistant_masks"])
