"""Build the course's embedded base model: tokenizer, a tiny Llama, and a few minutes of pretraining.

Everything is made from a seed with the project's own corpus (``corpus.py``), saved with
``save_pretrained`` (safetensors), and then loads like any hub model::

    AutoTokenizer.from_pretrained("data/tiny-llama-base")
    AutoModelForCausalLM.from_pretrained("data/tiny-llama-base")

Rebuild with ``make base-model`` (``python -m labhelpers.models.basemodel --out data/tiny-llama-base --force``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from labhelpers.errors import OverwriteError
from labhelpers.models.corpus import generate_corpus
from labhelpers.paths import BASE_MODEL_DIR

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [PAD, BOS, EOS, *ROLE_TOKENS]

#: The chat template emits BOS itself (ONNX Runtime GenAI's tokenizer adds none) and ends every
#: turn with EOS, so generation stops after the answer. Content follows its role tag after a
#: space, so an answer word is the same token (" joy") as inside pretraining sentences.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|> {{ message['content'] | trim }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass
class BaseModelSpec:
    """Sizes and schedule of the embedded model. ``SPECS`` holds the shipped and the test size."""

    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 256
    n_docs: int = 20000
    seq_len: int = 64
    batch_size: int = 32
    steps: int = 1000
    lr: float = 3e-3
    warmup: int = 40
    seed: int = 0


SPECS = {
    "default": BaseModelSpec(),
    # Seconds to build: for testing the build path, not for learning anything.
    "test": BaseModelSpec(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, n_docs=400, seq_len=32, batch_size=8, steps=10),
}


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE with BOS/EOS/PAD and chat-role specials, wrapped as a transformers tokenizer."""

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id(BOS)
    # Like Llama: plain encoding adds BOS; apply_chat_template tokenizes without it (the template has it).
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                      special_tokens=[(BOS, bos_id)]),
    ])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS, chat_template=CHAT_TEMPLATE,
        # Without this, generate() receives token_type_ids and fails.
        model_input_names=["input_ids", "attention_mask"], padding_side="right",
        model_max_length=2048,
    )


def build_model(spec: BaseModelSpec, tokenizer):
    """A randomly initialised LlamaForCausalLM of the spec's shape (seeded)."""

    if (spec.hidden_size // spec.num_attention_heads) % 2:
        raise ValueError("head_dim (hidden_size / num_attention_heads) must be even for RoPE")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, rms_norm_eps=1e-5, rope_theta=10000.0,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=32)
    return model


def pack_corpus(docs: list[str], tokenizer, seq_len: int):
    """BOS doc EOS, concatenated and cut into blocks of ``seq_len`` tokens (a LongTensor)."""

    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=True)["input_ids"]:
        ids += enc + [tokenizer.eos_token_id]
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def pretrain(model, blocks, spec: BaseModelSpec, log_every: int = 100, log=print) -> list[float]:
    """Plain next-token training with AdamW and warmup + cosine decay; returns the loss per step."""

    g = torch.Generator().manual_seed(spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.95), weight_decay=0.1)

    def lr_at(step: int) -> float:
        if step < spec.warmup:
            return (step + 1) / spec.warmup
        progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses = []
    t0 = time.time()
    for step in range(spec.steps):
        idx = torch.randint(len(blocks), (spec.batch_size,), generator=g)
        batch = blocks[idx]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if log and (step % log_every == 0 or step == spec.steps - 1):
            log(f"step {step:>5}/{spec.steps}  loss {loss.item():.3f}  {time.time() - t0:6.1f}s")
    model.eval()
    return losses


def build_base_model(out_dir: str | Path, spec: BaseModelSpec | None = None, force: bool = False,
                     log=print) -> Path:
    """Generate corpus -> tokenizer -> model -> pretrain -> save into ``out_dir``.

    Refuses to replace a non-empty ``out_dir`` unless ``force``; writes to a temporary folder first
    so an interrupted build never leaves a half-written model behind.
    """

    spec = spec or SPECS["default"]
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise OverwriteError(f"{out_dir} already holds files; pass force=True (--force) to rebuild it, "
                             "or choose another --out")
    t0 = time.time()
    torch.manual_seed(spec.seed)
    docs = generate_corpus(spec.n_docs, seed=spec.seed)
    tokenizer = train_tokenizer(docs, spec.vocab_size)
    blocks = pack_corpus(docs, tokenizer, spec.seq_len)
    model = build_model(spec, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    if log:
        log(f"corpus: {len(docs)} docs, {blocks.numel():,} tokens; vocab {len(tokenizer)}; "
            f"model {n_params / 1e6:.2f} M parameters")
    losses = pretrain(model, blocks, spec, log=log)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        info = {"spec": asdict(spec), "parameters": n_params, "corpus_tokens": int(blocks.numel()),
                "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
                "build_seconds": round(time.time() - t0, 1), "torch": torch.__version__}
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
        (tmp / "README.md").write_text(_model_card(info))
        # mkdtemp makes a private folder; the model is meant to be shared and read by anyone.
        tmp.chmod(0o755)
        for f in tmp.iterdir():
            f.chmod(0o644)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if log:
        log(f"saved to {out_dir} in {time.time() - t0:.0f}s (final loss {info['final_loss']})")
    return out_dir


def _model_card(info: dict) -> str:
    s = info["spec"]
    return f"""# tiny-llama-base (slm-finetune-lab)

A {info['parameters'] / 1e6:.2f} M-parameter `LlamaForCausalLM` built and pretrained by
`labhelpers.models.basemodel` from the course's own generated corpus ({info['corpus_tokens']:,} tokens),
seed {s['seed']}, {s['steps']} steps, final training loss {info['final_loss']}.

It is a *base* model: fluent in its small corpus, knows which feeling words go with which tone word
(both ways), can repeat a place from earlier in its context and has seen one-line JSON records, and
has never seen the chat format or the course tasks. It exists so the course runs offline on a
CPU in minutes; it is not useful for anything else. Rebuild: `make base-model`.
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build the course's tiny Llama base model.")
    ap.add_argument("--out", default=None, help="output folder (default: data/tiny-llama-base)")
    ap.add_argument("--size", choices=sorted(SPECS), default="default")
    ap.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the size's)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--force", action="store_true", help="replace an existing model folder")
    args = ap.parse_args(argv)

    # replace() rather than assignment: SPECS holds the shipped settings and must not change.
    overrides = {k: v for k, v in {"steps": args.steps, "seed": args.seed}.items() if v is not None}
    spec = dataclasses.replace(SPECS[args.size], **overrides)
    build_base_model(args.out or BASE_MODEL_DIR, spec, force=args.force)


if __name__ == "__main__":
    main()
