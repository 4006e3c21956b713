from labhelpers.data.templates import chat_texts
from labhelpers.evaluate.generation import generate_answers


def test_batched_generation_matches_one_by_one(tiny_model, tiny_tokenizer):
    prompts = [chat_texts(tiny_tokenizer, p)[0] for p in ["I was glad.", "We were all very nervous today.", "Hm."]]
    batched = generate_answers(tiny_model, tiny_tokenizer, prompts, max_new_tokens=5, batch_size=3)
    single = [generate_answers(tiny_model, tiny_tokenizer, [p], max_new_tokens=5)[0] for p in prompts]
    assert batched == single  # left padding must not change any answer
    assert tiny_tokenizer.padding_side == "right"  # restored
    assert all(isinstance(a, str) for a in batched)
