"""labhelpers.deploy.olive: failures of Olive's CLI are caught (exit code *and* missing outputs), arguments are
built right, and one real ``olive finetune`` runs in .venv-olive."""

import json
import os
import shlex
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from labhelpers.deploy import olive
from labhelpers.errors import ConfigError, OliveError
from labhelpers.paths import BASE_MODEL_DIR

# A stand-in for Olive's CLI: what it does is chosen by its first argument.
FAKE_OLIVE = textwrap.dedent("""\
    #!{python}
    import os, sys, time
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "fail":
        for i in range(50):
            print(f"log line {{i}}")
        print("ValueError: something broke in a pass", file=sys.stderr)
        sys.exit(3)
    if cmd == "noout":  # what Olive does when a pass fails quietly
        print("Running workflow")
        print("No output model produced. Please check the log for details.")
        sys.exit(0)
    if cmd == "ok":
        for p in rest:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "w").write("weights")
        sys.stdout.write("training   0%\\r training  50%\\r training 100%\\n\\x1b[32mModel is saved\\x1b[0m\\n")
        sys.exit(0)
    if cmd == "empty":
        open(rest[0], "w").close()
        sys.exit(0)
    if cmd == "env":
        import json
        keys = ["OLIVE_DISABLE_TELEMETRY", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                "OMP_NUM_THREADS", "PYTHONPATH"]
        open(rest[0], "w").write(json.dumps({{k: os.environ.get(k) for k in keys}}))
        open(rest[1], "w").write(os.getcwd())
        sys.exit(0)
    if cmd == "sleep":
        print("starting", flush=True)
        time.sleep(60)
    sys.exit(9)
""")


@pytest.fixture
def fake_olive(tmp_path, monkeypatch):
    exe = tmp_path / "fake-venv" / "bin" / "olive"
    exe.parent.mkdir(parents=True)
    exe.write_text(FAKE_OLIVE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(olive, "olive_executable", lambda venv=None: exe)
    return exe


def test_non_zero_exit_raises_with_command_and_log_tail(fake_olive, tmp_path):
    with pytest.raises(OliveError) as info:
        olive.run_olive(["fail", "--text_template", "a b"], expect=[tmp_path / "out"], stream=False)
    msg = str(info.value)
    assert "exit code 3" in msg
    assert "olive fail --text_template 'a b'" in msg  # the command, copyable
    assert "ValueError: something broke in a pass" in msg and "log line 49" in msg
    assert "log line 10\n" not in msg  # only the tail: the last 30 lines
    assert "does not exist" in msg  # and what is missing


def test_exit_zero_without_the_promised_output_is_a_failure(fake_olive, tmp_path):
    out = tmp_path / "ft" / "adapter" / "adapter_model.safetensors"
    with pytest.raises(OliveError) as info:
        olive.run_olive(["noout"], expect=[out], stream=False)
    msg = str(info.value)
    assert "exit code 0, but outputs are missing" in msg
    assert f"{out} (does not exist)" in msg
    assert "No output model produced" in msg
    assert "a pass failed or was skipped" in msg


def test_empty_output_file_or_folder_is_a_failure(fake_olive, tmp_path):
    with pytest.raises(OliveError, match="an empty file"):
        olive.run_olive(["empty", str(tmp_path / "model.onnx")], expect=[tmp_path / "model.onnx"], stream=False)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(OliveError, match="an empty folder"):
        olive.run_olive(["ok"], expect=[tmp_path / "emptydir"], stream=False)


def test_success_returns_the_run_and_keeps_the_log(fake_olive, tmp_path, capsys):
    outs = [tmp_path / "o" / "a.txt", tmp_path / "o" / "b.txt"]
    log = tmp_path / "logs" / "olive.log"
    run = olive.run_olive(["ok", *map(str, outs)], expect=outs + [tmp_path / "o"], log_path=log)
    assert isinstance(run, olive.OliveRun)
    assert run.command == [str(fake_olive), "ok", *map(str, outs)]
    assert run.outputs == outs + [tmp_path / "o"]
    assert run.seconds > 0 and run.log_path == log
    # progress-bar rewrites and colour codes are cleaned from the tail; the file keeps everything
    assert run.log_tail.splitlines() == ["training   0%", " training  50%", " training 100%", "Model is saved"]
    assert b"\r training  50%" in log.read_bytes()
    assert "Model is saved" in capsys.readouterr().out  # streamed while it ran


def test_relative_outputs_are_checked_in_cwd(fake_olive, tmp_path):
    run = olive.run_olive(["ok", "sub/x.txt"], expect=["sub/x.txt"], cwd=tmp_path, stream=False)
    assert run.outputs == [tmp_path / "sub" / "x.txt"] and run.outputs[0].is_file()


def test_time_limit_stops_olive(fake_olive, tmp_path):
    with pytest.raises(OliveError, match=r"time limit of 2 s(.|\n)*starting"):
        olive.run_olive(["sleep"], expect=[tmp_path / "x"], timeout=2, stream=False)


def test_environment_is_offline_without_telemetry_and_inherits_threads(fake_olive, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", "/main/venv/leak")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    env_file, cwd_file = tmp_path / "env.json", tmp_path / "cwd.txt"
    work = tmp_path / "work"
    work.mkdir()
    olive.run_olive(["env", str(env_file), str(cwd_file)], expect=[env_file], cwd=work, stream=False)
    env = json.loads(env_file.read_text())
    assert env == {"OLIVE_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": None}
    assert Path(cwd_file.read_text()) == work  # where Olive writes its .olive-cache


def test_arguments_must_be_a_list_and_an_output_must_be_promised(fake_olive, tmp_path):
    with pytest.raises(ConfigError, match="as a list"):
        olive.run_olive("finetune -m model", expect=[tmp_path / "x"])
    with pytest.raises(ConfigError, match="at least one output"):
        olive.run_olive(["ok"], expect=[])


def test_torch_seed_starts_olives_entry_point_with_torch_seeded(fake_olive, tmp_path):
    """With torch_seed the venv's python runs Olive's CLI after torch.manual_seed; the args pass unchanged."""
    fake_python = fake_olive.with_name("python")
    fake_python.write_text(f"#!{sys.executable}\nimport json, sys\n"
                           "open(sys.argv[-1], 'w').write(json.dumps(sys.argv[1:]))\n")
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "argv.json"
    run = olive.run_olive(["finetune", "--text_template", "a {b}", str(out)], expect=[out], stream=False,
                          torch_seed=7)
    argv = json.loads(out.read_text())
    assert argv[0] == "-c" and argv[1] == olive.SEEDED_START
    assert argv[2:] == ["7", "finetune", "--text_template", "a {b}", str(out)]
    assert "torch.manual_seed(int(sys.argv.pop(1)))" in olive.SEEDED_START
    assert run.command[0] == str(fake_python) and run.torch_seed == 7
    assert run.text == olive.command_text(["finetune", "--text_template", "a {b}", str(out)])


@pytest.mark.parametrize("seed", [True, -1, "0", 1.5])
def test_torch_seed_must_be_a_whole_number(fake_olive, tmp_path, seed):
    with pytest.raises(ConfigError, match=r"torch_seed=.* must be a whole number"):
        olive.run_olive(["ok"], expect=[tmp_path / "x"], torch_seed=seed, stream=False)


def test_missing_environment_says_to_run_make_olive_env(tmp_path):
    with pytest.raises(OliveError, match="run `make olive-env`") as info:
        olive.olive_executable(tmp_path / "no-venv")
    assert str(tmp_path / "no-venv" / "bin" / "olive") in str(info.value)


def test_command_text_quotes_for_a_shell():
    args = ["finetune", "--text_template", olive.TONE_TEXT_TEMPLATE, "-o", "my runs/out"]
    line = olive.command_text(args)
    assert line.startswith("olive finetune --text_template '<s><|user|> {phrase}</s>")
    assert shlex.split(line) == ["olive", *args]
    assert olive.command_text(["auto-opt", Path("a/b")], program=".venv-olive/bin/olive") == \
        ".venv-olive/bin/olive auto-opt a/b"


# --- argument builders -----------------------------------------------------------------------------

@pytest.fixture
def tone_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"phrase": f"I was glad {i}.", "tone": "joy"}) + "\n" for i in range(16)))
    return path


def test_finetune_args_make_olive_defaults_explicit(tone_file, tmp_path):
    args = olive.finetune_args("model-dir", tone_file, olive.TONE_TEXT_TEMPLATE, method="lora", max_steps=60,
                               out=tmp_path / "ft", learning_rate=5e-3, target_modules=["q_proj", "v_proj"],
                               extra=["--logging_steps", "10"])
    pairs = dict(zip(args[1::2], args[2::2]))
    assert args[0] == "finetune"
    assert pairs["-m"] == "model-dir" and pairs["-d"] == "json" and pairs["--data_files"] == str(tone_file)
    assert pairs["--text_template"] == olive.TONE_TEXT_TEMPLATE and pairs["--method"] == "lora"
    assert pairs["--max_steps"] == "60" and pairs["-o"] == str(tmp_path / "ft")
    assert pairs["--torch_dtype"] == "float32" and pairs["--max_seq_len"] == "128"  # not Olive's bf16/1024
    assert pairs["--lora_r"] == "16" and pairs["--lora_alpha"] == "32"
    assert pairs["--target_modules"] == "q_proj,v_proj" and pairs["--learning_rate"] == "0.005"
    assert args[-2:] == ["--logging_steps", "10"]
    two = olive.finetune_args("m", [tone_file, tone_file], "{phrase} {tone}", method="qlora", max_steps=5, out="o")
    assert dict(zip(two[1::2], two[2::2]))["--data_files"] == f"{tone_file},{tone_file}"
    assert "--target_modules" not in two and "--learning_rate" not in two


def test_finetune_args_refuse_what_olive_would_fail_or_ignore_later(tone_file):
    with pytest.raises(ConfigError, match="'lora' and 'qlora'"):
        olive.finetune_args("m", tone_file, "{phrase}", method="dora")
    with pytest.raises(ConfigError, match="ignores --target_modules for qlora"):
        olive.finetune_args("m", tone_file, "{phrase}", method="qlora", target_modules=["q_proj"])
    with pytest.raises(ConfigError, match="max_steps"):
        olive.finetune_args("m", tone_file, "{phrase}", max_steps=0)
    with pytest.raises(ConfigError, match="no {column} placeholder"):
        olive.finetune_args("m", tone_file, "User: hello")
    with pytest.raises(ConfigError, match=r"\['prompt', 'response'\].*'phrase', 'tone'"):
        olive.finetune_args("m", tone_file, "{prompt} {response}")
    with pytest.raises(ConfigError, match="not found"):
        olive.finetune_args("m", tone_file.with_name("nope.jsonl"), "{phrase}")


def test_auto_opt_and_generate_adapter_args_and_outputs(tmp_path):
    args = olive.auto_opt_args("ft/model", tmp_path / "onnx", adapter="ft/adapter")
    assert args == ["auto-opt", "-m", "ft/model", "-o", str(tmp_path / "onnx"), "--device", "cpu",
                    "--provider", "CPUExecutionProvider", "--precision", "int4", "--use_model_builder",
                    "-a", "ft/adapter"]
    assert "-a" not in olive.auto_opt_args("m", "o", precision="fp32")
    assert olive.auto_opt_outputs(tmp_path, adapter=True)[-1] == tmp_path / "adapter_weights.onnx_adapter"
    assert tmp_path / "model.onnx" in olive.auto_opt_outputs(tmp_path)
    assert olive.generate_adapter_args("baked", "out") == ["generate-adapter", "-m", "baked", "-o", "out",
                                                           "--adapter_format", "onnx_adapter"]
    assert olive.generate_adapter_outputs("out") == [Path("out/model.onnx"), Path("out/genai_config.json"),
                                                     Path("out/adapter_weights.onnx_adapter")]
    assert olive.finetune_outputs("ft") == [Path("ft/adapter/adapter_config.json"),
                                            Path("ft/adapter/adapter_model.safetensors"), Path("ft/model/config.json")]


def test_convert_adapters_args_name_the_file_and_check_the_dtype():
    assert olive.convert_adapters_args("ft/adapter", "b.onnx_adapter") == [
        "convert-adapters", "-a", "ft/adapter", "-o", "b.onnx_adapter", "--dtype", "float32"]
    assert olive.convert_adapters_args("a", "b.onnx_adapter", "float16", quantize_int4=True)[-3:] == [
        "--dtype", "float16", "--quantize_int4"]
    with pytest.raises(ConfigError, match="dtype='bfloat16'"):
        olive.convert_adapters_args("a", "b.onnx_adapter", "bfloat16")
    with pytest.raises(ConfigError, match="ending in .onnx_adapter"):
        olive.convert_adapters_args("a", "out_folder")


# As olive finetune prints them (transformers 5: numbers as strings), between progress-bar redraws.
OLIVE_LOG = ("  5%|▌ | 20/400 [00:04<01:10]\r{'loss': '5.769', 'grad_norm': '1.025', 'learning_rate': '0.003', "
             "'epoch': '0.7812'}\n 12%|█▎ | 50/400\r\x1b[0m{'loss': '3.1', 'grad_norm': 'nan', 'epoch': '1.56'}\n"
             "{'loss': '2.9', 'epo\r 99%|\n"   # a record cut by a redraw is skipped
             "{'train_runtime': '70.61', 'train_samples_per_second': '17', 'train_loss': '3.086', 'epoch': '6.25'}\n"
             "Model is saved at out\n")


def test_training_log_reads_olives_records_in_order():
    log = olive.training_log(OLIVE_LOG)
    assert [r.get("loss") for r in log] == [5.769, 3.1, None]
    assert log[0] == {"loss": 5.769, "grad_norm": 1.025, "learning_rate": 0.003, "epoch": 0.7812}
    assert log[-1]["train_runtime"] == 70.61 and log[-1]["epoch"] == 6.25
    assert olive.training_log("no records here") == []


def test_packed_samples_is_samples_seen_over_epochs():
    assert olive.packed_samples(400, 4, 6.25) == 256
    assert olive.packed_samples(100, 1, 1.5625, accumulation=4) == 256
    with pytest.raises(ConfigError, match="epochs=0"):
        olive.packed_samples(10, 4, 0)


def test_environment_versions_reads_the_other_venv(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "olive").write_text("")
    (venv / "bin" / "python").symlink_to(sys.executable)
    versions = olive.environment_versions(("pytest", "no-such-package-xyz"), venv=venv)
    # (the symlinked interpreter may see the base Python's packages, not this venv's: any pytest version)
    assert set(versions) == {"pytest", "no-such-package-xyz"} and versions["no-such-package-xyz"] is None
    assert versions["pytest"].split(".")[0].isdigit()
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").write_text("#!/bin/sh\necho broken >&2; exit 1\n")
    (venv / "bin" / "python").chmod(0o755)
    with pytest.raises(OliveError, match="could not report its packages: broken.*make olive-env"):
        olive.environment_versions(("pytest",), venv=venv)


# --- the real thing --------------------------------------------------------------------------------

def _seeded_finetune(work, torch_seed):
    """`olive finetune` for 3 steps on 48 rows in ``work`` (about 17 s, most of it Olive's start-up)."""
    rows = [json.loads(line) for line in (BASE_MODEL_DIR.parent / "tone" / "train.jsonl").open()][:48]
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = work / "ft"
    args = olive.finetune_args(BASE_MODEL_DIR, data, olive.TONE_TEXT_TEMPLATE, method="lora", max_steps=3,
                               out=out, max_seq_len=64, learning_rate=1e-3)
    return out, olive.run_olive(args, olive.finetune_outputs(out), log_path=work / "olive.log", cwd=work,
                                stream=False, timeout=600, torch_seed=torch_seed)


@pytest.fixture(scope="module")
def seeded_olive(tmp_path_factory):
    """One seeded run, shared: the training checks and the repeatability check both read it."""
    try:
        olive.olive_executable()
    except OliveError as err:
        pytest.fail(f"{err}\n(this test needs the Olive environment; it is part of `make test`)")
    work = tmp_path_factory.mktemp("olive-seeded")
    out, run = _seeded_finetune(work, torch_seed=0)
    return work, out, run


def test_olive_finetune_really_trains_an_adapter(seeded_olive):
    """`olive finetune` for a few steps in .venv-olive: a LoRA adapter that loads in the course's environment
    and changes the model."""
    tmp_path, out, run = seeded_olive
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 16 and config["lora_alpha"] == 32
    log = olive.training_log((tmp_path / "olive.log").read_text())
    assert log and "train_runtime" in log[-1] and log[-1]["epoch"] > 0  # it trained, not only loaded
    assert (tmp_path / ".olive-cache").is_dir()  # Olive's cache went to cwd, not the repository
    assert run.seconds > 0
    # The adapter loads on the base in the main environment (transformers 4.57, peft).
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    # LoRA starts with B = 0 (the adapter is a no-op): trained, every B has moved and the outputs change.
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    b_norms = [float(t.norm()) for name, t in weights.items() if "lora_B" in name]
    assert b_norms and min(b_norms) > 0, "an untrained adapter (lora_B still zero) is not a trained one"
    base = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR)
    ids = torch.tensor([[1, 4, 369, 2, 5]])
    with torch.no_grad():
        base_logits = base(ids).logits
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR), out / "adapter")
        logits = model(ids).logits
    assert logits.shape == (1, 5, model.config.vocab_size)
    assert (logits - base_logits).abs().max() > 1e-4, "the adapter must change the model's outputs"
    assert os.path.samefile(config["base_model_name_or_path"], BASE_MODEL_DIR)


def test_olive_finetune_is_repeatable_only_with_torch_seeded(seeded_olive, tmp_path):
    """The same `olive finetune` from other folders: the same adapter bytes with torch_seed, others without
    (Olive 0.13 creates the LoRA weights before anything seeds torch). Two more Olive starts, run at the same
    time: each is mostly Olive's single-threaded start-up (about 15 s), so together they take little more than one."""
    from concurrent.futures import ThreadPoolExecutor

    _, first, _ = seeded_olive
    adapters = {"seeded_a": (first / "adapter" / "adapter_model.safetensors").read_bytes()}

    def adapter_bytes(name, seed):
        work = tmp_path / name
        work.mkdir()
        out, _ = _seeded_finetune(work, torch_seed=seed)
        return (out / "adapter" / "adapter_model.safetensors").read_bytes()

    with ThreadPoolExecutor(2) as pool:
        jobs = {name: pool.submit(adapter_bytes, name, seed) for name, seed in (("seeded_b", 0), ("unseeded", None))}
        adapters.update({name: job.result() for name, job in jobs.items()})
    assert adapters["seeded_a"] == adapters["seeded_b"]
    assert adapters["unseeded"] != adapters["seeded_a"]


def test_the_chapters_task_name_form_really_fails(tmp_path):
    """The chapter's `olive finetune --method lora --task_name ...` (notebook 09's table says why it fails)."""
    with pytest.raises(OliveError, match=r"(?s)exit code 2.*required: -m/--model_name_or_path, -d/--data_name"):
        olive.run_olive(["finetune", "--method", "lora", "--task_name", "classification", "--output_path",
                         "adapters/classifier"], ["adapters/classifier/adapter"], cwd=tmp_path, stream=False)


def test_convert_adapters_names_do_not_fit_a_model_builder_graph(base, root, tmp_path):
    """Why notebook 09 converts its second adapter with export.write_onnx_adapter: `olive convert-adapters`
    names tensors for Olive's own ExtractedAdapters graphs (``...self_attn.q_proj.lora_A.weight``), the model
    builder's LoRA inputs are ``...attn.q_proj.lora_A.MatMul.weight``. If Olive aligns them, this fails."""
    import onnx_artefacts as art
    import onnxruntime as ort

    from labhelpers.deploy import export
    from labhelpers.deploy.onnx_infer import GenAIModel
    from labhelpers.errors import ModelError

    adapter = art.adapters(base, root)["A"]
    out = tmp_path / "a.onnx_adapter"
    olive.run_olive(olive.convert_adapters_args(adapter, out), [out], cwd=tmp_path, stream=False)
    names = set(ort.AdapterFormat.read_adapter(str(out)).get_parameters())
    graph = set(export.lora_inputs(art.genai_runtime(base, root)))
    assert names and graph and not names & graph, (sorted(names)[:2], sorted(graph)[:2])
    with pytest.raises(ModelError, match="no LoRA input in the model"):
        GenAIModel(art.genai_runtime(base, root), threads=1).load_adapter(out, "olive")
    course = export.write_onnx_adapter(adapter, art.genai_runtime(base, root), tmp_path / "course.onnx_adapter")
    assert set(ort.AdapterFormat.read_adapter(str(course)).get_parameters()) <= graph
