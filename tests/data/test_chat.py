import json
import re

import pytest

from labhelpers.data import chat
from labhelpers.data import templates as T
from labhelpers.data.records import Records, read_records
from labhelpers.errors import ConfigError, DataError


def turn(role, content):
    return {"role": role, "content": content}


GOOD = [turn("system", "Name the tone."), turn("user", "what a day"), turn("assistant", "joy"),
        turn("user", "oh no"), turn("assistant", "sad")]


@pytest.mark.parametrize("messages, expected", [
    ([turn("user", "hi"), turn("robot", "joy")], r"turn 2: unknown role 'robot'; use one of system, user, assistant"),
    ([turn("assistant", "joy")], "turn 1: the conversation starts with the assistant"),
    ([turn("user", "a"), turn("user", "b"), turn("assistant", "c")], "turn 2: two user turns in a row"),
    ([turn("user", "a"), turn("assistant", "b"), turn("assistant", "c")], "turn 3: two assistant turns in a row"),
    ([turn("user", "a"), turn("system", "s"), turn("assistant", "b")], "turn 2: a system turn may only come first"),
    ([turn("user", "a"), turn("assistant", "  ")], r"turn 2 \(assistant\): 'content' is empty"),
    ([turn("user", "a"), turn("assistant", 3)], r"turn 2 \(assistant\): 'content' must be a string, not integer"),
    ([turn("user", "a")], r"turn 1 \(user\) ends the conversation: add the assistant's answer"),
    ([turn("system", "s")], "no user or assistant turn"),
    ([turn("user", "a"), "joy"], "turn 2 is string"),
    ("hello", "must be a non-empty list"),
    ([], "must be a non-empty list"),
])
def test_each_bad_conversation_is_named_by_turn(messages, expected):
    assert chat.conversation_problem(GOOD) is None
    assert chat.conversation_problem(GOOD[1:]) is None   # the system turn is optional
    problem = chat.conversation_problem(messages)
    assert problem is not None
    assert re.search(expected, problem), problem


def test_a_file_lists_every_bad_record_by_line_and_record(tmp_path):
    path = tmp_path / "chats.jsonl"
    rows = [{"messages": GOOD}, {"messages": [turn("user", "a")]}, {"text": "x"},
            {"messages": [turn("user", "a"), turn("bot", "b")]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    chat.check_messages(Records(str(path), rows[:1], [1]))   # a good file passes
    with pytest.raises(DataError) as err:
        chat.check_messages(read_records(path))
    text = str(err.value)
    assert text.startswith(f"3 conversation(s) in {path} cannot train")
    assert f"{path}:line 2, record 2: turn 1 (user) ends the conversation" in text
    assert f"{path}:line 3, record 3: no 'messages' field (its fields: ['text'])" in text
    assert f"{path}:line 4, record 4: turn 2: unknown role 'bot'" in text
    # a JSON array on one line: the line is the same, the record number tells the rows apart
    one_line = tmp_path / "chats.json"
    one_line.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"chats.json:line 1, record 4: turn 2: unknown role"):
        chat.check_messages(read_records(one_line))


def real_tokenizer():
    from transformers import AutoTokenizer

    from labhelpers.paths import REAL_MODEL_DIR

    return AutoTokenizer.from_pretrained(REAL_MODEL_DIR)


@pytest.mark.parametrize("model", ["tiny", "smollm2"])
def test_marked_template_trains_what_the_prompt_answer_split_trains(tiny_tokenizer, model):
    """The mask under assistant_only_loss equals notebook 02's labels on one turn, and covers every answer
    (with its end-of-turn) but no system or user token on two."""
    tok = tiny_tokenizer if model == "tiny" else real_tokenizer()
    assert not chat.has_generation_markers(tok.chat_template)   # the shipped templates carry none
    marked = chat.training_chat_template(tok)
    assert chat.has_generation_markers(marked)
    ids, mask = chat.assistant_mask(tok, GOOD[1:3], marked)
    example = T.tokenize_example(tok, *T.chat_texts(tok, "what a day", "joy"), max_length=64)
    assert ids == example["input_ids"]
    assert mask == [int(label != T.IGNORE_INDEX) for label in example["labels"]]
    ids, mask = chat.assistant_mask(tok, GOOD, marked)
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert trained.replace(" ", "").replace("\n", "") == "joy" + tok.eos_token + "sad" + tok.eos_token
    assert "tone" not in trained and "what" not in trained


def test_unknown_template_is_refused_with_the_way_out(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    with pytest.raises(ConfigError, match="no {% generation %} markers.*prompt/completion dataset"):
        chat.training_chat_template(tok)
    tok.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        chat.training_chat_template(tok)
