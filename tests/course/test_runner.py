"""labhelpers.course.runner: runs real (tiny) fixture notebooks through papermill and the venv's kernel."""

import sys
from pathlib import Path

import pandas as pd
import pytest

from labhelpers.course import runner
from labhelpers.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(root))
    return root


def test_find_notebooks_order_and_selection(tmp_path):
    for name in ["10_b.ipynb", "02_a.ipynb", "scratch.ipynb", "3_bad.ipynb", "00_setup.ipynb"]:
        (tmp_path / name).write_text("{}")
    assert [p.name for p in runner.find_notebooks(tmp_path)] == ["00_setup.ipynb", "02_a.ipynb", "10_b.ipynb"]
    assert [p.name for p in runner.find_notebooks(tmp_path, ["10", "00"])] == ["00_setup.ipynb", "10_b.ipynb"]
    assert [p.name for p in runner.find_notebooks(tmp_path, ["02_a"])] == ["02_a.ipynb"]
    with pytest.raises(ConfigError, match=r"--notebooks 07: no such notebook.*available: 00_setup, 02_a, 10_b"):
        runner.find_notebooks(tmp_path, ["07"])
    with pytest.raises(ConfigError, match="no NN_name.ipynb"):
        runner.find_notebooks(tmp_path / "empty")


@pytest.mark.parametrize(
    "text, value",
    [("3", 3), ("-1", -1), ("1e-3", 1e-3), ("0.5", 0.5), ("true", True), ("False", False), ("None", None),
     ("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")],
)
def test_parse_value(text, value):
    assert runner.parse_value(text) == value and type(runner.parse_value(text)) is type(value)


def test_python3_kernel_is_this_interpreter():
    # The venv's kernelspec says plain "python", which jupyter_client maps to sys.executable.
    assert Path(runner.kernel_executable("python3")).resolve() == Path(sys.executable).resolve()


def test_unknown_kernel_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"--kernel no-such-kernel: no such Jupyter kernel \(available: .*python3"):
        runner.kernel_executable("no-such-kernel")


def test_course_runs_all_and_reports_failures(tmp_path, capsys):
    out = tmp_path / "course-run"
    rc = runner.main(["--notebooks-dir", str(FIXTURES), "--out", str(out), "-p", "n", "4", "-p", "greeting", "hi",
                      "--timeout", "120"])
    printed = capsys.readouterr().out
    assert rc == 1  # two fixtures fail on purpose

    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["notebook"]) == ["01_good", "02_fails", "03_silent"]
    assert list(summary["status"]) == ["ok", "failed", "failed"]
    assert (summary["seconds"] > 0).all()

    good = summary.iloc[0]
    assert good["n_squared"] == 16 and good["greeting"] == "hi"  # -p values reached the notebook, typed
    assert Path(good["python"]).resolve() == Path(sys.executable).resolve()  # the venv's interpreter ran it
    assert Path(good["cwd"]).resolve() == FIXTURES.resolve()  # cwd is the notebooks folder
    assert summary.iloc[1]["error"] == "ValueError: boom on purpose"
    assert "wrote no" in summary.iloc[2]["error"] and "write_metrics" in summary.iloc[2]["error"]

    # Executed copies and per-notebook output folders sit in the run folder.
    for stem in ["01_good", "02_fails", "03_silent"]:
        assert (out / f"{stem}.ipynb").is_file()
    assert (out / "01_good" / "metrics.json").is_file()
    # papermill injected the parameters after the tagged cell.
    assert "injected-parameters" in (out / "01_good.ipynb").read_text()

    assert "01_good" in printed and "n_squared=16" in printed and "2 of 3 notebooks failed" in printed


def test_course_default_run_folder_and_success(runs_root, capsys):
    rc = runner.main(["--notebooks-dir", str(FIXTURES), "--notebooks", "01", "--timeout", "120"])
    assert rc == 0, capsys.readouterr()
    [run] = list(runs_root.iterdir())
    assert run.name.endswith("-course")
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary["status"]) == ["ok"] and summary.iloc[0]["n_squared"] == 9  # the notebook's default n
    assert "All 1 notebooks succeeded" in capsys.readouterr().out


def test_course_refuses_non_empty_out(tmp_path, capsys):
    out = tmp_path / "old"
    out.mkdir()
    (out / "summary.csv").write_text("keep me")
    assert runner.main(["--notebooks-dir", str(FIXTURES), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "not empty" in err
    assert (out / "summary.csv").read_text() == "keep me"


def test_course_refuses_output_dir_parameter(capsys):
    assert runner.main(["--notebooks-dir", str(FIXTURES), "-p", "output_dir", "/tmp/x"]) == 2
    assert "use --out" in capsys.readouterr().err


def test_summary_prints_minutes_per_notebook_and_the_total():
    text = runner.format_summary([{"notebook": "01_a", "status": "ok", "seconds": 90.0},
                                  {"notebook": "02_b", "status": "failed", "seconds": 150.0}])
    lines = text.splitlines()
    assert lines[1].split()[:4] == ["01_a", "ok", "90.0", "1.5"]
    assert lines[2].split()[:4] == ["02_b", "failed", "150.0", "2.5"]
    assert lines[-1].split() == ["total", "240.0", "4.0"]
