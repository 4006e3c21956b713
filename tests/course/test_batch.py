"""labhelpers.course.batch: grids of real (tiny) fixture notebook runs through papermill and the venv's kernel."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from labhelpers.course import batch
from labhelpers.errors import ConfigError

NB = Path(__file__).parent / "fixtures" / "batch" / "grid_nb.ipynb"
IDS = ["grid_nb__a-1__b-3", "grid_nb__a-1__b-4", "grid_nb__a-2__b-3", "grid_nb__a-2__b-4"]


def row(run_id: str, first_cell: str, table: str) -> bool:
    """Whether the markdown table has a row ``| run_id | first_cell | ...`` (cells padded to column width)."""
    return re.search(rf"^\|\s*{re.escape(run_id)}\s*\|\s*{re.escape(first_cell)}\s*\|", table, re.M) is not None


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))  # a bug must not write into the repo's runs/


def write_grid(folder: Path, **values) -> Path:
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump({"notebooks": [str(NB)], **values}, sort_keys=False))
    return path


def batch_cmd(grid: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "labhelpers", "batch", "--grid", str(grid), *extra]


def starts(counter: Path) -> list[dict]:
    return [json.loads(line) for line in counter.read_text().splitlines()] if counter.exists() else []


def wait_for(condition, seconds: float, what: str, proc=None, log: Path | None = None):
    deadline = time.monotonic() + seconds
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"batch exited ({proc.returncode}) before {what}:\n{log.read_text() if log else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text() if log else ''}")
        time.sleep(0.1)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_killed_batch_resumes_without_redoing_runs(tmp_path, capsys):
    counter, out, log = tmp_path / "counter.txt", tmp_path / "out", tmp_path / "first.log"
    grid = write_grid(tmp_path, parameters={"a": [1, 2], "b": [3, 4]},
                      fixed={"sleep_s": 2.0, "counter": str(counter)}, out="out")
    with log.open("w") as fh:
        proc = subprocess.Popen(batch_cmd(grid, "--jobs", "1"), cwd=tmp_path, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: (out / IDS[0] / "metrics.json").is_file(), 60, "the first run's metrics", proc, log)
        # Kill while the second run is mid-notebook, so it leaves a partial folder.
        wait_for(lambda: len(starts(counter)) == 2, 30, "the second run to start", proc, log)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Its kernel sits in its own session; ipykernel's parent poller ends it within about a second.
    for start in starts(counter):
        wait_for(lambda: gone(start["pid"]), 15, f"orphaned kernel {start['pid']} to exit")
    assert (out / IDS[1]).is_dir() and not (out / IDS[1] / "metrics.json").exists()

    assert batch.main(["--grid", str(grid), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    for run_id, state in zip(IDS, ["done", "partial", "pending", "pending"]):
        assert row(run_id, state, listed)

    second = subprocess.run(batch_cmd(grid, "--jobs", "1"), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr

    runs_per_combo = pd.Series([(s["a"], s["b"]) for s in starts(counter)]).value_counts().to_dict()
    assert runs_per_combo == {(1, 3): 1, (1, 4): 2, (2, 3): 1, (2, 4): 1}  # only the interrupted run ran again
    [kept] = [p for p in out.glob(f"{IDS[1]}.interrupted-*") if p.is_dir()]
    assert not (kept / "metrics.json").exists()
    assert (out / f"{kept.name}.ipynb").is_file()  # its partial notebook was set aside with it
    assert kept.name in second.stdout

    results = pd.read_csv(out / "results.csv")
    assert list(results["id"]) == IDS
    assert list(zip(results["a"], results["b"])) == [(1, 3), (1, 4), (2, 3), (2, 4)]
    assert list(results["score"]) == [13, 14, 23, 24]  # each row holds its own run's metrics
    assert list(results["status"]) == ["done before", "ok", "ok", "ok"]
    assert (out / "results.png").stat().st_size > 0
    assert row("grid_nb__a-1__b-3", "done before", second.stdout)


def test_failed_run_is_recorded_and_the_rest_complete(tmp_path, capsys):
    out = tmp_path / "out"
    grid = write_grid(tmp_path, parameters={"a": [1, 2, 3]}, fixed={"fail_when": "a == 2"})
    assert batch.main(["--grid", str(grid), "--out", str(out), "--jobs", "1"]) == 1
    printed = capsys.readouterr().out

    failures = pd.read_csv(out / "failures.csv")
    assert failures.to_dict("records") == [{
        "id": "grid_nb__a-2", "notebook": "grid_nb", "params": '{"a": 2}', "error_type": "ValueError",
        "error": "failing on purpose at a=2, b=1", "output_notebook": str(out / "grid_nb__a-2.ipynb")}]
    assert (out / "grid_nb__a-2.ipynb").is_file()
    results = pd.read_csv(out / "results.csv")
    assert list(results["status"]) == ["ok", "failed", "ok"]
    assert results["score"].tolist()[::2] == [11, 31] and pd.isna(results["score"][1])
    assert "1 failed" in printed and "failures.csv" in printed

    # Changing a fixed value must not pass off the finished runs as done with the new one.
    grid = write_grid(tmp_path, parameters={"a": [1, 2, 3]}, fixed={"fail_when": "a == 3"})
    assert batch.main(["--grid", str(grid), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "fail_when: 'a == 2' then, 'a == 3' now" in err


@pytest.mark.parametrize("change, message", [
    ({"parameters": {"a": [1], "c": [1, 2]}}, r"parameters\.c: notebook grid_nb\.ipynb has no parameter 'c'"),
    ({"parameters": {"a": []}}, r"parameters\.a is an empty list"),
    ({"notebooks": []}, r"notebooks is empty"),
    ({"paramters": {"a": [1]}}, r"unknown key 'paramters'; did you mean 'parameters'\?"),
    ({"fixed": {"a": 1}}, r"a is in both fixed and parameters"),
    ({"fixed": {"sleep": 1}}, r"fixed\.sleep: .*no parameter 'sleep'.*did you mean 'sleep_s'\?"),
    ({"fixed": {"output_dir": "x"}}, r"fixed\.output_dir: the batch sets output_dir"),
    ({"jobs": 0}, r"jobs=0 must be an integer >= 1"),
    ({"notebooks": ["99_nope"]}, r"notebooks: '99_nope' is not a notebook in .*available: 00_setup"),
    ({"notebooks": ["missing.ipynb"]}, r"notebooks: missing\.ipynb not found"),
    ({"parameters": {"a": 3}}, r"parameters\.a is 3, not a list"),
], ids=["unknown-param", "empty-list", "no-notebooks", "unknown-key", "overlap", "fixed-typo", "output_dir",
        "jobs", "no-such-notebook", "no-such-path", "scalar"])
def test_bad_grid_names_file_and_key(tmp_path, change, message):
    values = {"parameters": {"a": [1, 2]}, **change}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"notebooks": [str(NB)], **values}))
    with pytest.raises(ConfigError, match=message) as err:
        batch.load_grid(path)
    assert str(err.value).startswith(f"{path}: ")


def test_bad_grid_cli_exit_2(tmp_path, capsys):
    grid = write_grid(tmp_path, parameters={"a": [1], "nope": [1]})
    assert batch.main(["--grid", str(grid)]) == 2
    assert "parameters.nope" in capsys.readouterr().err
    assert batch.main(["--grid", str(write_grid(tmp_path, parameters={"a": [1]})), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_ids_and_yaml_numbers():
    grid = batch.grid_from_dict({"notebooks": [str(NB)], "parameters": {"a": ["1e-3", 2], "fail_when": ["a/b c", ""]}})
    assert grid.parameters["a"] == [0.001, 2]  # YAML 1.1 reads 1e-3 as text
    assert [r.id for r in batch.expand(grid)] == [
        "grid_nb__a-0.001__fail_when-a_b_c", "grid_nb__a-0.001__fail_when-empty",
        "grid_nb__a-2__fail_when-a_b_c", "grid_nb__a-2__fail_when-empty"]
    with pytest.raises(ConfigError, match="get the same id"):
        batch.grid_from_dict({"notebooks": [str(NB)], "parameters": {"fail_when": ["a b", "a/b"]}})


def test_two_jobs_run_at_the_same_time(tmp_path):
    grid = {"notebooks": [str(NB)], "parameters": {"a": [1, 2]}, "fixed": {"sleep_s": 2.0}}
    df = batch.run_grid(grid, jobs=2, out=tmp_path / "out", log=None)
    assert list(df["status"]) == ["ok", "ok"]
    assert df["started"].max() < df["ended"].min(), "the two runs' notebook time windows should overlap"
    assert df.attrs["chart"] and Path(df.attrs["chart"]).is_file()


def test_dry_run_executes_nothing(tmp_path):
    counter, out = tmp_path / "counter.txt", tmp_path / "out"
    grid = write_grid(tmp_path, parameters={"a": [1, 2], "b": [3, 4]}, fixed={"counter": str(counter)}, out="out")
    done = subprocess.run(batch_cmd(grid, "--dry-run"), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert all(row(run_id, "pending", done.stdout) for run_id in IDS)
    assert "Nothing was run" in done.stdout
    assert not counter.exists() and not out.exists()
