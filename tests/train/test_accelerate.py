"""`python -m labhelpers finetune` under `accelerate launch`: 2 CPU processes (gloo) train as well as one.

The qa config is cut to 30 steps (of 120). Measured on the shipped tiny model: the base model's exact
match is 0.0 on the 45 held-out rows; at 12 steps one process still scores 0.0 and at 20 steps the
score sits on a cliff (1.0 in one process, 0.38 in two: eval_loss ~1.0 either side), while at 30
steps every run scored 1.0 (seeds 0 and 1, one and two processes) with eval_loss 0.69-0.72: two
processes differed from one by 0.009 / 0.018, two seeds of one process by 0.026. Hence the margins
below: 0.1 exact match, 0.06 eval_loss.

Fair comparison: per_device_train_batch_size is per process, so the 2-process run halves it (4 x 2 =
8 rows per step, as 8 x 1) and both runs see the same rows per optimizer step (see finetune's docstring
and configs/accelerate/cpu_2proc.yaml). ~2 minutes on 2 free cores.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labhelpers.paths import DATA_DIR, REPO_ROOT

ACC_DIR = REPO_ROOT / "configs" / "accelerate"
STEPS = 30
EM_MARGIN = 0.1
LOSS_MARGIN = 0.06
#: config file -> the distributed_type its header says it is for
EXAMPLES = {"cpu_2proc.yaml": "MULTI_GPU", "multi_gpu_ddp.yaml": "MULTI_GPU",
            "deepspeed_zero2.yaml": "DEEPSPEED", "multi_node.yaml": "MULTI_GPU"}


def qa_config(path: Path, per_device: int, output_dir: str = "") -> Path:
    """configs/qa_lora.yaml, cut to STEPS steps, with ``per_device`` rows per process per step."""
    values = yaml.safe_load((REPO_ROOT / "configs" / "qa_lora.yaml").read_text())
    values["data_configs"][0]["load_dataset_config"]["data_files"] = str(DATA_DIR / "qa" / "train.jsonl")
    ta = values["passes"]["lora"]["training_args"]
    ta.update(max_steps=STEPS, per_device_train_batch_size=per_device, logging_steps=10)
    values["output_dir"] = output_dir
    # fp32 on every machine: the margins below were measured in fp32; in bf16 (auto on an AMX CPU) the
    # 1- and 2-process eval losses differed by 0.098 from rounding alone
    values["lab"]["precision"] = "fp32"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def launch(cmd: list[str], runs: Path, cwd: Path) -> subprocess.CompletedProcess:
    # ACCELERATE_USE_CPU: stay on CPU (gloo) even where the machine has GPUs, as cpu_2proc.yaml says.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LAB_RUNS_DIR": str(runs), "ACCELERATE_USE_CPU": "true"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def accelerate_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACC_DIR / "cpu_2proc.yaml"),
            "-m", "labhelpers", "finetune", "--config", str(config)]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same qa run in 1 process (8 rows/step) and under accelerate in 2 (4 + 4 rows/step)."""
    tmp = tmp_path_factory.mktemp("accelerate")
    one = launch([sys.executable, "-m", "labhelpers", "finetune", "--config", str(qa_config(tmp / "one.yaml", 8))],
                 tmp / "runs1", tmp)
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(accelerate_cmd(qa_config(tmp / "two.yaml", 4)), tmp / "runs2", tmp)
    assert two.returncode == 0, two.stderr[-3000:]
    return tmp, one, two


def _the_run(runs: Path) -> tuple[Path, dict]:
    folders = [p for p in runs.iterdir()]
    assert len(folders) == 1, folders  # the timestamped name was decided once, by the main process
    metrics = list(folders[0].rglob("metrics.json"))
    assert metrics == [folders[0] / "metrics.json"]
    return folders[0], json.loads(metrics[0].read_text())


def test_two_processes_write_one_run_folder(two_runs):
    tmp, _, two = two_runs
    folder, metrics = _the_run(tmp / "runs2")
    assert metrics["world_size"] == 2 and metrics["effective_batch_size"] == 8 and metrics["steps"] == STEPS
    for name in ("adapter/adapter_model.safetensors", "report.json", "config.yaml"):
        assert (folder / name).is_file(), name
    out = two.stdout.splitlines()
    assert sum(line.startswith("done in") for line in out) == 1  # evaluation + metrics.json: main process only
    assert sum(line.startswith("run folder:") for line in out) == 1
    assert ("4 per device x 2 processes x 1 accumulation = 8 rows per step (MULTI_CPU on cpu, 1 thread(s) per process)"
            in two.stdout)
    assert {line for line in out if line.startswith("/")} == {str(folder)}  # every process returns the same folder


def test_two_processes_match_one_process(two_runs):
    tmp, one, _ = two_runs
    _, m1 = _the_run(tmp / "runs1")
    _, m2 = _the_run(tmp / "runs2")
    assert m1["world_size"] == 1 and m1["effective_batch_size"] == 8
    assert m1["exact_match"] >= 0.8, m1  # the base model scores 0.0: the run really learned the task
    assert abs(m2["exact_match"] - m1["exact_match"]) <= EM_MARGIN, (m1["exact_match"], m2["exact_match"])
    assert abs(m2["eval_loss"] - m1["eval_loss"]) <= LOSS_MARGIN, (m1["eval_loss"], m2["eval_loss"])


def test_two_processes_refuse_an_existing_folder_together(two_runs):
    tmp, _, _ = two_runs
    folder, _ = _the_run(tmp / "runs2")
    before = sorted(p.name for p in folder.iterdir())
    again = launch(accelerate_cmd(qa_config(tmp / "again.yaml", 4, output_dir=str(folder))), tmp / "runs2", tmp)
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    assert not any(line.startswith("step ") for line in again.stdout.splitlines())  # refused before training
    assert sorted(p.name for p in folder.iterdir()) == before


def test_fsdp_is_refused_before_anything_runs(monkeypatch):
    from labhelpers.errors import ConfigError
    from labhelpers.train import finetune

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigError, match="FSDP"):
        finetune._launch_state()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_configs_load_with_accelerate(name):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    path = ACC_DIR / name
    cfg = ClusterConfig.from_yaml_file(str(path))  # accelerate's own loader: unknown top-level keys fail
    assert cfg.distributed_type.value == EXAMPLES[name]
    assert cfg.num_processes >= 2 and cfg.mixed_precision in ("no", "bf16", "fp16")
    # Nested sections become `accelerate launch` options (deepspeed_config.x -> --x); a typo would be ignored.
    options = {a.dest for a in launch_command_parser()._actions}
    for key in list(cfg.fsdp_config) + list(cfg.deepspeed_config):
        assert key in options, f"{name}: {key} is not an accelerate launch option"
    header = path.read_text().split("\ncompute_environment:")[0]
    assert f"accelerate launch --config_file configs/accelerate/{name}" in header
    assert "CI" in header
    if name == "multi_node.yaml":
        assert cfg.num_machines == 2 and cfg.main_process_ip and cfg.main_process_port and cfg.machine_rank == 0


def test_every_example_config_is_one_the_tests_know():
    """A config added to configs/accelerate/ must be loaded above (an FSDP one was removed: finetune refuses it)."""
    assert sorted(p.name for p in ACC_DIR.glob("*.yaml")) == sorted(EXAMPLES)


@pytest.mark.parametrize("fails", [False, True])
def test_the_cli_leaves_the_process_group(monkeypatch, tmp_path, fails):
    """`labhelpers finetune` shuts the process group down itself, on success and on a refused run
    (left to interpreter exit, gloo's threads can abort the process: pytorch/pytorch#190489)."""
    import types

    import torch.distributed as dist

    from labhelpers import __main__ as cli
    from labhelpers.errors import ConfigError
    from labhelpers.train import finetune

    def fake_run(config, resume=False):
        if fails:
            raise ConfigError("refusing to overwrite")
        return types.SimpleNamespace(run_dir=tmp_path)

    monkeypatch.setattr(finetune, "run", fake_run)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        assert cli.finetune(["--config", "run.yaml"]) == (2 if fails else 0)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
