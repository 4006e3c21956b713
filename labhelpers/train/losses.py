"""The chapter's custom losses, used for real on the course's tone data.

1. A contrastive loss with a margin: phrase pairs of the same tone are pulled together, pairs of
   different tones pushed apart, on mean-pooled hidden states of the base with LoRA adapters
   (``make_pairs``, ``contrastive_loss``, ``PairCollator``, ``ContrastiveTrainer``,
   ``pair_separation``).
2. Class-weighted cross-entropy for an imbalanced train set: each example's answer tokens count
   with its class's weight (``imbalanced_subset``, ``class_weights``, ``weighted_lm_loss``,
   ``ClassIndexCollator``, ``WeightedLossTrainer``, ``class_report``).

Both trainers subclass ``transformers.Trainer`` and override ``compute_loss`` only, so the
optimizer, schedule, logging and checkpointing stay the Trainer's.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from sklearn.metrics import recall_score, roc_auc_score
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainingArguments,
    set_seed,
)

from labhelpers.data.templates import IGNORE_INDEX
from labhelpers.data.tone_data import TONES
from labhelpers.evaluate.metrics import classification_scores
from labhelpers.memory.hardware import mixed_precision_env
from labhelpers.paths import BASE_MODEL_DIR, TONE_DATA_DIR
from labhelpers.train.tonetask import ToneTask

DEFAULT_MARGIN = 0.5
#: What is embedded: the phrase, then a few words about its feeling. Causal attention lets only the
#: tokens after the feeling word see it, and mean-pooling the bare phrase averages it away (measured:
#: no separation after 60 steps); after this suffix, whose last token the base already links to the
#: tone, a short run separates the tones on held-out words.
EMBED_TEMPLATE = "{} To be like that is to feel"


def read_tone_rows(split: str, data_dir: str | Path = TONE_DATA_DIR) -> list[dict]:
    """The rows of one tone split as ``[{"phrase", "tone"}]``."""
    with open(Path(data_dir) / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------------------ contrastive
def make_pairs(rows: list[dict], n: int, seed: int = 0, text: str = "phrase", label: str = "tone") -> list[dict]:
    """``n`` pairs ``{"a", "b", "label"}``: half same-tone (label 1), half different-tone (label 0).

    Seeded and balanced (``n // 2`` similar, the rest dissimilar, shuffled); a row is never paired
    with itself, and no unordered pair repeats, so the pair count is a real count of evidence.
    """
    by_class: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_class.setdefault(r[label], []).append(i)
    classes = sorted(by_class)
    pairable = [c for c in classes if len(by_class[c]) >= 2]
    n_sim, n_dis = n // 2, n - n // 2
    if n_sim and not pairable:
        raise ValueError("no class has two rows: similar pairs are impossible")
    if n_dis and len(classes) < 2:
        raise ValueError("only one class in the rows: dissimilar pairs are impossible")
    n_rows = len(rows)
    max_sim = sum(len(v) * (len(v) - 1) // 2 for v in by_class.values())
    max_dis = n_rows * (n_rows - 1) // 2 - max_sim
    if n_sim > max_sim or n_dis > max_dis:
        raise ValueError(f"asked for {n_sim} similar / {n_dis} dissimilar pairs but these rows hold only "
                         f"{max_sim} / {max_dis} distinct ones; lower n")
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    out: list[dict] = []

    def add(i: int, j: int, y: int) -> bool:
        key = (min(i, j), max(i, j))
        if key in seen:
            return False
        seen.add(key)
        out.append({"a": rows[i][text], "b": rows[j][text], "label": y})
        return True

    while len(out) < n_sim:  # similar pairs first, so the count is theirs
        c = rng.choice(pairable)  # classes equally often, whatever their sizes
        add(*rng.sample(by_class[c], 2), 1)
    while len(out) < n_sim + n_dis:
        ca, cb = rng.sample(classes, 2)
        add(rng.choice(by_class[ca]), rng.choice(by_class[cb]), 0)
    rng.shuffle(out)
    return out


def cosine_distance(emb_a, emb_b):
    """``1 - cos(a, b)`` per row: 0 for the same direction, 2 for opposite ones."""

    return 1.0 - F.cosine_similarity(emb_a, emb_b, dim=-1)


def contrastive_loss(emb_a, emb_b, label, margin: float = DEFAULT_MARGIN):
    """Mean over pairs of ``y * d**2 + (1 - y) * max(0, margin - d)**2``, ``d`` the cosine distance.

    Similar pairs (y=1) are pulled to d=0; dissimilar ones (y=0) only cost while closer than
    ``margin``, so they are pushed apart without being driven to the far side of the sphere.
    (Hadsell et al.'s form has an extra factor 1/2; it only rescales the learning rate.)
    """
    d = cosine_distance(emb_a, emb_b)
    y = label.to(d.dtype)
    return (y * d.pow(2) + (1 - y) * (margin - d).clamp(min=0).pow(2)).mean()


def chapter_contrastive_loss(emb_a, emb_b, label, margin: float = 1.0):
    """The chapter's ``CustomContrastiveLoss``, as written: Euclidean distance, **label 0 = similar**
    (pulled together), label 1 = dissimilar (pushed beyond ``margin``)."""
    d = F.pairwise_distance(emb_a, emb_b)
    y = label.to(d.dtype)
    return ((1 - y) * d.pow(2) + y * (margin - d).clamp(min=0).pow(2)).mean()


def pair_distances(model, tokenizer, pairs: list[dict], batch_size: int = 64, template: str = EMBED_TEMPLATE) -> dict:
    """Euclidean and cosine distances of each pair's embeddings, split by label (1 = similar):
    ``{"euclidean": {"similar": [...], "dissimilar": [...]}, "cosine": {...}}``."""
    a, b = _pair_embeddings(model, tokenizer, pairs, batch_size, template)
    out = {}
    for name, d in (("euclidean", F.pairwise_distance(a, b)), ("cosine", cosine_distance(a, b))):
        values = d.tolist()
        out[name] = {kind: [v for v, p in zip(values, pairs) if int(p["label"]) == want]
                     for kind, want in (("similar", 1), ("dissimilar", 0))}
    return out


def mean_pool(hidden, attention_mask):
    """Mean of the hidden states over the real tokens: padding must not pull the average."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def embed(model, input_ids, attention_mask):
    """Mean-pooled last hidden states of a base model (``AutoModel``) or a causal LM."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:  # a *ForCausalLM returns logits; its last hidden state is the final one
        hidden = out.hidden_states[-1]
    return mean_pool(hidden, attention_mask)


class PairCollator:
    """Tokenizes both sides of a batch of pairs into one padded batch: rows ``[a_1..a_n, b_1..b_n]``.

    One forward pass for both sides halves the per-step overhead; ``labels`` holds the pair labels.
    """

    def __init__(self, tokenizer, max_length: int = 64, template: str = EMBED_TEMPLATE):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.template = template

    def __call__(self, features: list[dict]) -> dict:
        texts = [self.template.format(f["a"]) for f in features] + [self.template.format(f["b"]) for f in features]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "labels": torch.tensor([float(f["label"]) for f in features])}


class ContrastiveTrainer(Trainer):
    """A Trainer whose loss is ``contrastive_loss`` on the embeddings of a ``PairCollator`` batch.

    Needs ``remove_unused_columns=False`` (the pair columns are no arguments of the model's forward).
    """

    def __init__(self, *args, margin: float = DEFAULT_MARGIN, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.remove_unused_columns:
            raise ValueError("ContrastiveTrainer needs TrainingArguments(remove_unused_columns=False), "
                             "or the Trainer drops the pair columns before the PairCollator sees them")
        self.margin = margin
        # Our loss is a per-batch mean: the Trainer must then do the gradient-accumulation scaling.
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        emb = embed(model, inputs["input_ids"], inputs["attention_mask"])
        emb_a, emb_b = emb[: len(labels)], emb[len(labels):]
        loss = contrastive_loss(emb_a, emb_b, labels, self.margin)
        return (loss, {"emb_a": emb_a, "emb_b": emb_b}) if return_outputs else loss


def embed_texts(model, tokenizer, texts: list[str], batch_size: int = 64, max_length: int = 64,
                template: str = EMBED_TEMPLATE):
    """Embeddings of ``texts`` (one row each, put in ``template``), without gradients, in eval mode."""

    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                batch = [template.format(t) for t in texts[i:i + batch_size]]
                enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt").to(model.device)
                parts.append(embed(model, enc["input_ids"], enc["attention_mask"]))
    finally:
        model.train(was_training)
    return torch.cat(parts)


def _pair_embeddings(model, tokenizer, pairs: list[dict], batch_size: int, template: str):
    """``(a, b)``: the embeddings of each pair's two sides, every distinct text embedded once."""
    texts = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    index = {t: i for i, t in enumerate(texts)}
    emb = embed_texts(model, tokenizer, texts, batch_size, template=template)
    return emb[[index[p["a"]] for p in pairs]], emb[[index[p["b"]] for p in pairs]]


def pair_separation(model, tokenizer, pairs: list[dict], batch_size: int = 64, template: str = EMBED_TEMPLATE) -> dict:
    """How well embeddings separate similar from dissimilar pairs.

    ``sim_similar`` / ``sim_dissimilar``: mean cosine similarity of each kind; ``gap``: their
    difference; ``auc``: ROC AUC of the cosine similarity as a score for "same tone" (0.5 = chance).
    """

    labels = [int(p["label"]) for p in pairs]
    if len(set(labels)) < 2:
        raise ValueError("pair_separation needs both similar and dissimilar pairs")
    a, b = _pair_embeddings(model, tokenizer, pairs, batch_size, template)
    sims = F.cosine_similarity(a, b, dim=-1).tolist()
    sim_pos = [s for s, y in zip(sims, labels) if y == 1]
    sim_neg = [s for s, y in zip(sims, labels) if y == 0]
    mean_pos, mean_neg = sum(sim_pos) / len(sim_pos), sum(sim_neg) / len(sim_neg)
    return {"sim_similar": mean_pos, "sim_dissimilar": mean_neg, "gap": mean_pos - mean_neg,
            "auc": float(roc_auc_score(labels, sims))}


def load_encoder(model_path: str | Path = BASE_MODEL_DIR, lora: bool = True, r: int = 8, alpha: int = 32,
                 seed: int = 0):
    """``(model, tokenizer)``: the base without its LM head (``AutoModel``), with fresh LoRA adapters
    on all linear layers unless ``lora=False``. ``seed`` fixes the adapters' initialisation.

    ``alpha`` 32 (scale 4, twice the generation runs'): the contrastive loss sits on a plateau until
    the adapters route the feeling word into the pooled tokens; the larger scale gets there in
    about 30 steps instead of 50-70.
    """

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path, dtype=torch.float32)
    if lora:
        set_seed(seed)
        model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                                                 target_modules="all-linear", task_type="FEATURE_EXTRACTION"))
    return model, tokenizer


def _args(output_dir: str, steps: int, batch_size: int, lr: float, seed: int, schedule: str = "linear", **kw):
    return TrainingArguments(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch_size,
                             learning_rate=lr, lr_scheduler_type=schedule, warmup_steps=0, weight_decay=0.0,
                             logging_steps=max(1, steps // 5), save_strategy="no", seed=seed, data_seed=seed,
                             report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, **kw)


def train_contrastive(model, tokenizer, pairs: list[dict], steps: int = 40, batch_size: int = 16, lr: float = 5e-3,
                      margin: float = DEFAULT_MARGIN, seed: int = 0, template: str = EMBED_TEMPLATE,
                      schedule: str = "constant") -> dict:
    """Train ``model`` (LoRA adapters) in place on ``pairs``; returns the seconds and logged losses.

    A constant learning rate: a decaying one spends its large steps on the plateau (measured: a
    linear schedule at 3e-3 left 60 steps at chance level).
    """

    with tempfile.TemporaryDirectory() as tmp:
        with mixed_precision_env(torch.float32):   # fp32 even after a bf16 Trainer in this process
            args = _args(tmp, steps, batch_size, lr, seed, schedule, remove_unused_columns=False)
            trainer = ContrastiveTrainer(model=model, args=args, margin=margin,
                                             train_dataset=datasets.Dataset.from_list(pairs),
                                             data_collator=PairCollator(tokenizer, template=template))
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}


# ------------------------------------------------------------------------------ class-weighted CE
def imbalanced_subset(rows: list[dict], minority: str, share: float, seed: int = 0, label: str = "tone") -> list[dict]:
    """All rows of the other classes and just enough ``minority`` rows that they make ``share`` of the
    result (at least one). Seeded; the rows keep their original order."""
    if not 0 < share < 1:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    mine = [i for i, r in enumerate(rows) if r[label] == minority]
    if not mine:
        raise ValueError(f"no row of class {minority!r}")
    n_other = len(rows) - len(mine)
    k = min(len(mine), max(1, round(share * n_other / (1 - share))))
    keep = set(random.Random(seed).sample(mine, k))
    return [r for i, r in enumerate(rows) if r[label] != minority or i in keep]


def class_weights(labels: list, classes: list | tuple | None = None) -> dict:
    """Inverse-frequency weight per class, ``N / (K * n_c)``, so the mean weight over the examples is 1.

    The per-example mean of 1 keeps the loss on plain cross-entropy's scale (the learning rate keeps
    its meaning); it is scikit-learn's ``class_weight="balanced"``. A class in ``classes`` with no
    example gets weight 0 (nothing to weight).
    """
    counts = Counter(labels)
    classes = sorted(counts) if classes is None else list(classes)
    present = [c for c in classes if counts[c]]
    if not present:
        raise ValueError("no labels")
    unknown = set(counts) - set(classes)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not in classes {classes}")
    n = sum(counts.values())
    return {c: (n / (len(present) * counts[c]) if counts[c] else 0.0) for c in classes}


def weighted_lm_loss(logits, labels, example_weights, num_items_in_batch=None):
    """Causal-LM cross-entropy in which each example's answer tokens count ``example_weights[i]`` times.

    Divided by the number of answer tokens (``num_items_in_batch`` when the Trainer counts them over
    the accumulated batches), not by the sum of weights: with all weights 1 it is exactly the
    Trainer's plain loss, and a batch of majority rows is down-weighted even when it holds no
    minority row (``CrossEntropyLoss(weight=...)`` divides by the weights and would undo that).
    """

    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                ignore_index=IGNORE_INDEX, reduction="none").view(targets.shape)
    answer = targets != IGNORE_INDEX
    weighted = (per_token * example_weights.to(per_token.dtype).unsqueeze(1) * answer).sum()
    count = num_items_in_batch if num_items_in_batch is not None else answer.sum()
    return weighted / count


class ClassIndexCollator:
    """``DataCollatorForSeq2Seq`` (labels padded with -100) that carries ``class_index`` through as a tensor."""

    def __init__(self, tokenizer):
        self.inner = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)

    def __call__(self, features: list[dict]) -> dict:
        if any("class_index" not in f for f in features):
            raise KeyError("a feature has no 'class_index': was the column dropped? "
                           "Pass remove_unused_columns=False to TrainingArguments")
        index = torch.tensor([int(f["class_index"]) for f in features])
        batch = self.inner([{k: v for k, v in f.items() if k != "class_index"} for f in features])
        batch["class_index"] = index
        return batch


class WeightedLossTrainer(Trainer):
    """A Trainer whose loss is ``weighted_lm_loss`` with weight ``class_weights[class_index]`` per example.

    ``class_weights``: one weight per class index. The dataset needs a ``class_index`` column, the
    arguments ``remove_unused_columns=False`` and the collator a ``ClassIndexCollator``.
    """

    def __init__(self, *args, class_weights, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.remove_unused_columns:
            raise ValueError("WeightedLossTrainer needs TrainingArguments(remove_unused_columns=False), "
                             "or the Trainer drops the class_index column before the collator sees it")
        self.class_weights = torch.as_tensor(list(class_weights), dtype=torch.float32)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        class_index = inputs.pop("class_index")
        labels = inputs.pop("labels")
        outputs = model(**inputs)  # without labels: the model's own loss would be wasted work
        weights = self.class_weights.to(class_index.device)[class_index]
        # num_items_in_batch is only counted (and the loss then not rescaled) when the model takes loss kwargs.
        n = num_items_in_batch if self.model_accepts_loss_kwargs else None
        loss = weighted_lm_loss(outputs.logits, labels, weights, n)
        return (loss, outputs) if return_outputs else loss


def tokenize_with_class(task, rows: list[dict], labels=TONES):
    """A ``datasets.Dataset`` of ``task.encode(row)`` (input_ids, attention_mask, labels) plus ``class_index``."""

    index = {label: i for i, label in enumerate(labels)}
    return datasets.Dataset.from_list([{**task.encode(r), "class_index": index[r["tone"]]} for r in rows])


def train_tone(rows: list[dict], weighted: bool, steps: int = 150, batch_size: int = 8, lr: float = 2e-3,
               seed: int = 0, model_path: str | Path = BASE_MODEL_DIR, r: int = 8, alpha: int = 16,
               callbacks: list | None = None):
    """LoRA on the phrase -> tone task from ``rows``: plain ``Trainer`` or ``WeightedLossTrainer``.

    Both see the same tokenized rows in the same order (same seeds); only the loss differs.
    Returns ``(model, tokenizer, task, info)``.
    """

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    task = ToneTask(tokenizer)
    ds = tokenize_with_class(task, rows)
    set_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    weights = class_weights([row["tone"] for row in rows], TONES)
    with tempfile.TemporaryDirectory() as tmp, mixed_precision_env(torch.float32):   # fp32 even after bf16 elsewhere
        if weighted:
            args = _args(tmp, steps, batch_size, lr, seed, remove_unused_columns=False)
            trainer = WeightedLossTrainer(model=model, args=args, train_dataset=ds,
                                               class_weights=[weights[t] for t in TONES],
                                               data_collator=ClassIndexCollator(tokenizer), callbacks=callbacks)
        else:
            trainer = Trainer(model=model, train_dataset=ds.remove_columns("class_index"),
                              data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True,
                                                                   label_pad_token_id=IGNORE_INDEX),
                              args=_args(tmp, steps, batch_size, lr, seed), callbacks=callbacks)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return model, tokenizer, task, {"seconds": seconds, "weights": weights}


def class_report(y_true: list[str], y_pred: list[str], labels=TONES, minority: str | None = None) -> dict:
    """Accuracy, macro F1 and per-class recall / F1 (flat dict); ``minority_recall`` / ``minority_f1``
    repeat the singled-out class's figures. Unparseable answers count as wrong for every class."""

    out = classification_scores(y_true, y_pred, labels)
    recalls = recall_score(y_true, y_pred, labels=list(labels), average=None, zero_division=0)
    out.update({f"recall_{label}": float(v) for label, v in zip(labels, recalls)})
    if minority is not None:
        out["minority_recall"] = out[f"recall_{minority}"]
        out["minority_f1"] = out[f"f1_{minority}"]
    return out
