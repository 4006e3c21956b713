"""labhelpers.train.losses: the contrastive loss and the class-weighted cross-entropy against hand computations,
the pair and subset builders, class_index surviving the Trainer, and one short real contrastive run."""

import math
from collections import Counter

import pytest
import torch

from labhelpers.data.templates import IGNORE_INDEX
from labhelpers.train import losses


# ------------------------------------------------------------------------------------ contrastive
def test_contrastive_loss_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    label = torch.tensor([1, 0, 0, 1])
    # cosine distances 1, 1 - 1/sqrt(2), 1, 0 (length must not matter)
    d = [1.0, 1 - 1 / math.sqrt(2), 1.0, 0.0]
    expected = (d[0] ** 2 + max(0.0, 0.5 - d[1]) ** 2 + max(0.0, 0.5 - d[2]) ** 2 + d[3] ** 2) / 4
    assert losses.contrastive_loss(a, b, label, margin=0.5).item() == pytest.approx(expected, abs=1e-6)
    # A dissimilar pair beyond the margin costs nothing; a similar one at distance 0 neither.
    assert losses.contrastive_loss(a[2:], b[2:], torch.tensor([0, 1]), margin=0.5).item() == pytest.approx(0, abs=1e-7)
    # Inside a larger margin the orthogonal dissimilar pair does cost (1.5 - 1)^2.
    assert losses.contrastive_loss(a[2:3], b[2:3], torch.tensor([0]), margin=1.5).item() == pytest.approx(0.25)


def test_contrastive_loss_pulls_similar_and_pushes_dissimilar():
    a = torch.tensor([[1.0, 0.2]], requires_grad=True)
    b = torch.tensor([[0.6, 1.0]])
    for label, sign in ((1, 1), (0, -1)):
        a.grad = None
        losses.contrastive_loss(a, b, torch.tensor([label]), margin=1.5).backward()
        step = a.detach() - 0.1 * a.grad
        closer = torch.cosine_similarity(step, b) > torch.cosine_similarity(a.detach(), b)
        assert bool(closer) == (sign == 1), label


def test_the_chapters_loss_is_euclidean_with_label_zero_for_similar():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[3.0, 4.0], [0.6, 0.8], [3.0, 4.0]])   # Euclidean distances 5, 1, 5
    # label 0 (similar): d^2; label 1 (dissimilar): max(0, margin - d)^2 (torch adds eps 1e-6 to d, hence abs=1e-4)
    assert losses.chapter_contrastive_loss(a[:1], b[:1], torch.tensor([0])).item() == pytest.approx(25.0, abs=1e-4)
    inside = losses.chapter_contrastive_loss(a[1:2], b[1:2], torch.tensor([1]), margin=1.5)
    assert inside.item() == pytest.approx(0.25, abs=1e-4)
    # past the margin a dissimilar pair costs nothing, which is what notebook 08 measures on real embeddings
    assert losses.chapter_contrastive_loss(a[2:], b[2:], torch.tensor([1])).item() == 0.0


def test_pair_distances_split_by_label(tiny_model_dir, tiny_tokenizer):
    encoder, _ = losses.load_encoder(tiny_model_dir, lora=False)
    pairs = losses.make_pairs(losses.read_tone_rows("test"), 20, seed=1)
    d = losses.pair_distances(encoder, tiny_tokenizer, pairs)
    n_similar = sum(int(p["label"]) == 1 for p in pairs)
    for metric in ("euclidean", "cosine"):
        assert len(d[metric]["similar"]) == n_similar and len(d[metric]["dissimilar"]) == len(pairs) - n_similar
    assert all(0 <= v <= 2 for v in d["cosine"]["similar"] + d["cosine"]["dissimilar"])
    assert max(d["euclidean"]["dissimilar"]) > 2   # the scale a Euclidean margin of 1.0 misses


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert losses.mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


ROWS = [{"phrase": f"{t} phrase {i}", "tone": t} for t in ("joy", "sad", "fear") for i in range(5)]


def test_make_pairs_balanced_deterministic_without_self_pairs():
    tone = {r["phrase"]: r["tone"] for r in ROWS}
    pairs = losses.make_pairs(ROWS, 41, seed=3)
    assert len(pairs) == 41 and sum(p["label"] for p in pairs) == 20
    assert all(p["a"] != p["b"] for p in pairs)
    assert all((tone[p["a"]] == tone[p["b"]]) == (p["label"] == 1) for p in pairs)
    assert len({frozenset((p["a"], p["b"])) for p in pairs}) == 41  # no pair twice, either way round
    assert losses.make_pairs(ROWS, 41, seed=3) == pairs
    assert losses.make_pairs(ROWS, 41, seed=4) != pairs
    assert {p["label"] for p in pairs[:10]} == {0, 1}  # shuffled, not all similar first
    with pytest.raises(ValueError, match="distinct"):
        losses.make_pairs(ROWS, 2 * 31, seed=0)  # 3 tones x C(5, 2) = 30 similar pairs exist
    with pytest.raises(ValueError, match="one class"):
        losses.make_pairs(ROWS[:5], 4, seed=0)


def test_pair_collator_batches_both_sides_in_the_template(tiny_tokenizer):
    pairs = [{"a": "I was glad.", "b": "We were scared today.", "label": 0}, {"a": "x", "b": "y", "label": 1}]
    batch = losses.PairCollator(tiny_tokenizer, template="{} feel")(pairs)
    assert batch["input_ids"].shape[0] == 4 and batch["labels"].tolist() == [0.0, 1.0]
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    first = tiny_tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    second_side = tiny_tokenizer.decode(batch["input_ids"][2], skip_special_tokens=True)
    assert first == "I was glad. feel" and second_side == "We were scared today. feel"


def test_contrastive_trainer_loss_is_the_pooled_embeddings_loss(tiny_model_dir, tiny_tokenizer, tmp_path):
    import datasets
    from transformers import AutoModel, TrainingArguments

    model = AutoModel.from_pretrained(tiny_model_dir)
    pairs = [{"a": "I was glad.", "b": "We were scared today.", "label": 0},
             {"a": "She was happy.", "b": "He was glad.", "label": 1}]
    ds, collator = datasets.Dataset.from_list(pairs), losses.PairCollator(tiny_tokenizer)

    def args(**kw):
        return TrainingArguments(output_dir=str(tmp_path), max_steps=1, use_cpu=True, report_to="none",
                                 save_strategy="no", disable_tqdm=True, **kw)

    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        losses.ContrastiveTrainer(model=model, args=args(), train_dataset=ds, data_collator=collator)
    trainer = losses.ContrastiveTrainer(model=model, args=args(remove_unused_columns=False), margin=0.7,
                                        train_dataset=ds, data_collator=collator)
    batch = collator(pairs)
    with torch.no_grad():
        got = trainer.compute_loss(model, batch)
        texts = [losses.EMBED_TEMPLATE.format(t) for t in ("I was glad.", "She was happy.", "We were scared today.",
                                                           "He was glad.")]
        emb = losses.embed_texts(model, tiny_tokenizer, texts, template="{}")
    expected = losses.contrastive_loss(emb[:2], emb[2:], torch.tensor([0, 1]), margin=0.7)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


def test_short_contrastive_run_separates_held_out_pairs_better_than_the_base():
    """The real embedded model, 40 steps: tones of unseen feeling words and frames pull apart."""
    train = losses.make_pairs(losses.read_tone_rows("train"), 640, seed=0)
    held_out = losses.make_pairs(losses.read_tone_rows("test"), 200, seed=1)
    model, tok = losses.load_encoder(seed=0)
    base = losses.pair_separation(model, tok, held_out)  # fresh LoRA (B = 0) is the base model
    info = losses.train_contrastive(model, tok, train, steps=40, batch_size=16, seed=0)
    trained = losses.pair_separation(model, tok, held_out)
    assert info["losses"][-1] < info["losses"][0]
    assert trained["gap"] > base["gap"] + 0.15, (base, trained)
    assert trained["auc"] > max(base["auc"] + 0.2, 0.85), (base, trained)


# ------------------------------------------------------------------------------ class-weighted CE
def test_imbalanced_subset_keeps_others_and_a_share_of_the_minority():
    rows = [{"phrase": f"p{t}{i}", "tone": t} for i in range(100) for t in ("joy", "sad", "fear", "surprise")]
    sub = losses.imbalanced_subset(rows, "fear", 0.05, seed=0)
    counts = Counter(r["tone"] for r in sub)
    assert counts == {"joy": 100, "sad": 100, "surprise": 100, "fear": 16}  # 16 / 316 = 5.1 %
    assert sub == [r for r in rows if r in sub]  # original order
    assert losses.imbalanced_subset(rows, "fear", 0.05, seed=0) == sub
    assert losses.imbalanced_subset(rows, "fear", 0.05, seed=1) != sub
    assert Counter(r["tone"] for r in losses.imbalanced_subset(rows, "fear", 0.001))["fear"] == 1
    with pytest.raises(ValueError):
        losses.imbalanced_subset(rows, "anger", 0.05)


def test_class_weights_inverse_frequency_with_mean_one_per_example():
    labels = ["a"] * 6 + ["b"] * 2
    w = losses.class_weights(labels)
    assert w == pytest.approx({"a": 8 / 12, "b": 2.0})
    assert sum(w[label] for label in labels) / len(labels) == pytest.approx(1.0)
    assert losses.class_weights(["a", "b"]) == {"a": 1.0, "b": 1.0}
    assert losses.class_weights(labels, classes=("b", "a", "c")) == pytest.approx({"b": 2.0, "a": 8 / 12, "c": 0.0})
    with pytest.raises(ValueError, match="not in classes"):
        losses.class_weights(labels, classes=("a",))


def _lm_batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 5], [IGNORE_INDEX, 1, 2, IGNORE_INDEX]])
    return logits, labels


def test_weighted_loss_with_unit_weights_is_the_models_own_loss(tiny_model, tiny_tokenizer):
    ids = tiny_tokenizer(["I was glad today.", "We were scared."], padding=True, return_tensors="pt")
    labels = ids["input_ids"].masked_fill(ids["attention_mask"] == 0, IGNORE_INDEX)
    labels[:, :3] = IGNORE_INDEX  # a "prompt" the loss skips
    with torch.no_grad():
        out = tiny_model(**ids, labels=labels)
    assert losses.weighted_lm_loss(out.logits, labels, torch.ones(2)).item() == pytest.approx(out.loss.item(), rel=1e-5)


def test_weighted_loss_weights_each_examples_answer_tokens():
    logits, labels = _lm_batch()
    token_ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1),
                                                 ignore_index=IGNORE_INDEX, reduction="none").view(2, 3)
    first, second = token_ce[0, 1:].sum(), token_ce[1, :2].sum()  # 2 answer tokens each (after the shift)
    plain = (first + second) / 4
    assert losses.weighted_lm_loss(logits, labels, torch.ones(2)).item() == pytest.approx(plain.item(), rel=1e-6)
    got = losses.weighted_lm_loss(logits, labels, torch.tensor([3.0, 0.5]))
    assert got.item() == pytest.approx(((3 * first + 0.5 * second) / 4).item(), rel=1e-6)
    # Divided by the token count, not the weights: a uniform weight 2 doubles the loss.
    assert losses.weighted_lm_loss(logits, labels, torch.full((2,), 2.0)).item() == pytest.approx(2 * plain.item())
    assert losses.weighted_lm_loss(logits, labels, torch.ones(2), num_items_in_batch=8).item() == pytest.approx(
        plain.item() / 2)
    # A weight-0 example gets no gradient at all.
    logits.requires_grad_(True)
    losses.weighted_lm_loss(logits, labels, torch.tensor([1.0, 0.0])).backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0


def _class_dataset(tiny_tokenizer):
    import datasets

    from labhelpers.data.templates import chat_texts, tokenize_example

    rows = [("I was glad.", "joy", 0), ("We were scared.", "fear", 2), ("She was stunned.", "surprise", 3),
            ("He was gloomy.", "sad", 1)] * 2
    feats = []
    for phrase, tone, idx in rows:
        prompt, full = chat_texts(tiny_tokenizer, phrase, tone)
        feats.append({**tokenize_example(tiny_tokenizer, prompt, full, max_length=64), "class_index": idx})
    return datasets.Dataset.from_list(feats)


def test_weighted_trainer_keeps_class_index_through_the_collator(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, TrainingArguments

    ds = _class_dataset(tiny_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    weights = [1.0, 2.0, 3.0, 4.0]

    def args(**kw):
        return TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, use_cpu=True,
                                 report_to="none", save_strategy="no", disable_tqdm=True, seed=0, **kw)

    collator = losses.ClassIndexCollator(tiny_tokenizer)
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        losses.WeightedLossTrainer(model=model, args=args(), train_dataset=ds, data_collator=collator,
                                   class_weights=weights)
    trainer = losses.WeightedLossTrainer(model=model, args=args(remove_unused_columns=False), train_dataset=ds,
                                         data_collator=collator, class_weights=weights)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["class_index"].dtype == torch.long and batch["class_index"].shape == (4,)
    # Each row keeps its own class (the loader shuffles): match rows by their unpadded ids.
    by_ids = {tuple(r["input_ids"]): r["class_index"] for r in ds}
    for ids, mask, idx in zip(batch["input_ids"], batch["attention_mask"], batch["class_index"]):
        assert by_ids[tuple(ids[mask.bool()].tolist())] == idx.item()
    assert set(batch) == {"input_ids", "attention_mask", "labels", "class_index"}
    assert (batch["labels"] == IGNORE_INDEX).any()  # padded labels are ignored, not trained on pad
    # The Trainer's loss is the class-weighted one for this very batch.
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        expected = losses.weighted_lm_loss(logits, batch["labels"], torch.tensor(weights)[batch["class_index"]])
        got = trainer.compute_loss(model, dict(batch))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert got.item() != pytest.approx(losses.weighted_lm_loss(logits, batch["labels"], torch.ones(4)).item(), rel=1e-3)
    assert trainer.train().global_step == 2
    with pytest.raises(KeyError, match="remove_unused_columns"):
        collator([{k: v for k, v in ds[0].items() if k != "class_index"}])


def test_class_report_singles_out_the_minority():
    y = ["joy", "joy", "sad", "fear", "surprise", "surprise"]
    p = ["joy", "joy", "sad", "fear", "surprise", "joy"]
    r = losses.class_report(y, p, minority="surprise")
    assert r["minority_recall"] == r["recall_surprise"] == 0.5
    assert r["minority_f1"] == pytest.approx(2 / 3) and r["recall_joy"] == 1.0 and r["accuracy"] == pytest.approx(5 / 6)
