"""labhelpers.runs: run folders never overwrite; metrics.json is flat, finite and collectable."""

import json
import math
import re
from datetime import datetime

import numpy as np
import pytest
import torch

from labhelpers import runs
from labhelpers.errors import ConfigError, DataError, OverwriteError


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    """Point runs_dir() at a temp folder so tests never write into the repo."""
    root = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(root))
    return root


def test_new_run_dir_name_and_location(runs_root):
    path = runs.new_run_dir("lora")
    assert path.parent == runs_root and path.is_dir()
    match = re.fullmatch(r"(\d{8}-\d{6})-lora", path.name)
    assert match, path.name
    assert abs((datetime.strptime(match[1], "%Y%m%d-%H%M%S") - datetime.now()).total_seconds()) < 60


def test_new_run_dir_never_reuses(tmp_path, monkeypatch):
    # Freeze the clock so every call wants the same name.
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(runs, "datetime", Frozen)
    paths = [runs.new_run_dir("x", root=tmp_path) for _ in range(3)]
    assert [p.name for p in paths] == ["20260102-030405-x", "20260102-030405-x-2", "20260102-030405-x-3"]
    assert len({p for p in paths}) == 3 and all(p.is_dir() for p in paths)


@pytest.mark.parametrize("bad", ["", "a/b", "../up", "has space", ".hidden"])
def test_new_run_dir_rejects_bad_names(bad, tmp_path):
    with pytest.raises(ConfigError, match="run name"):
        runs.new_run_dir(bad, root=tmp_path)


@pytest.mark.parametrize("empty", [None, ""])
def test_prepare_output_dir_default_is_new_run(empty, runs_root):
    path = runs.prepare_output_dir(empty, "qlora")
    assert path.parent == runs_root and path.name.endswith("-qlora") and path.is_dir()


def test_prepare_output_dir_creates_and_accepts_empty(tmp_path):
    new = tmp_path / "a" / "b"
    assert runs.prepare_output_dir(new, "x") == new and new.is_dir()
    assert runs.prepare_output_dir(str(new), "x") == new  # existing but empty is fine


def test_prepare_output_dir_relative_goes_under_runs(runs_root):
    assert runs.prepare_output_dir("my-exp", "x") == runs_root / "my-exp"


def test_prepare_output_dir_refuses_non_empty(tmp_path):
    out = tmp_path / "used"
    out.mkdir()
    (out / "adapter_model.safetensors").write_text("precious")
    with pytest.raises(OverwriteError) as info:
        runs.prepare_output_dir(out, "x")
    message = str(info.value)
    assert str(out) in message and "new output_dir" in message
    assert (out / "adapter_model.safetensors").read_text() == "precious"


def test_prepare_output_dir_refuses_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OverwriteError, match="is a file"):
        runs.prepare_output_dir(f, "x")


def test_write_and_read_metrics(tmp_path):
    path = runs.write_metrics(
        tmp_path,
        {"accuracy": np.float64(0.75), "steps": np.int64(300), "loss": torch.tensor(0.5), "ok": True, "method": "lora"},
        params={"lr": 1e-3, "model_dir": tmp_path / "m", "dtype": torch.float32},
        notebook="02_lora",
    )
    assert path == tmp_path / "metrics.json"
    raw = json.loads(path.read_text())
    assert raw["accuracy"] == 0.75 and raw["steps"] == 300 and raw["loss"] == 0.5
    assert raw["ok"] is True and raw["method"] == "lora"
    assert type(raw["steps"]) is int
    assert raw["params"] == {"lr": 1e-3, "model_dir": str(tmp_path / "m"), "dtype": "torch.float32"}
    assert raw["notebook"] == "02_lora"
    assert datetime.fromisoformat(raw["finished_at"]).tzinfo is not None
    assert runs.read_metrics(tmp_path) == raw == runs.read_metrics(path)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan"), torch.tensor(float("inf"))])
def test_write_metrics_refuses_non_finite(tmp_path, value):
    with pytest.raises(ConfigError, match="'eval_loss'"):
        runs.write_metrics(tmp_path, {"accuracy": 1.0, "eval_loss": value})
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], None, torch.tensor([1.0, 2.0])])
def test_write_metrics_refuses_nested(tmp_path, value):
    with pytest.raises(ConfigError, match="'per_class'.*flat"):
        runs.write_metrics(tmp_path, {"per_class": value})


@pytest.mark.parametrize("key", ["params", "notebook", "finished_at"])
def test_write_metrics_refuses_reserved_keys(tmp_path, key):
    with pytest.raises(ConfigError, match="reserved"):
        runs.write_metrics(tmp_path, {key: 1})


def test_write_metrics_refuses_nan_params(tmp_path):
    with pytest.raises(ConfigError, match="params"):
        runs.write_metrics(tmp_path, {"a": 1}, params={"lr": math.nan})


def test_read_metrics_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "metrics.json"))):
        runs.read_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(DataError, match=r"metrics\.json:1: not valid JSON"):
        runs.read_metrics(tmp_path)


def test_collect_metrics(tmp_path):
    runs.write_metrics(tmp_path / "c" / "00_setup", {"cpu_count": 2}, notebook="00_setup")
    runs.write_metrics(tmp_path / "c" / "02_lora", {"accuracy": 0.9}, params={"r": 8}, notebook="02_lora")
    (tmp_path / "c" / "other.json").write_text("{}")  # not a metrics.json: ignored
    df = runs.collect_metrics(tmp_path / "c")
    assert list(df["notebook"]) == ["00_setup", "02_lora"]
    assert df.loc[1, "accuracy"] == 0.9 and df.loc[1, "params.r"] == 8
    assert math.isnan(df.loc[0, "accuracy"])
    assert df.loc[0, "run_dir"] == str(tmp_path / "c" / "00_setup")


def test_collect_metrics_empty_and_missing(tmp_path):
    df = runs.collect_metrics(tmp_path)
    assert len(df) == 0 and "notebook" in df.columns
    with pytest.raises(DataError, match="does not exist"):
        runs.collect_metrics(tmp_path / "nope")
