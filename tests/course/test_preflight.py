"""make preflight: every check passes on this machine, and fails with its fix on a fake one."""

import json
from collections import namedtuple
from importlib.metadata import PackageNotFoundError

import pytest

from labhelpers.course import preflight
from labhelpers.course.preflight import FAIL, PASS, WARN
from labhelpers.errors import ConfigError

GIB = 1024**3
Disk = namedtuple("Disk", "total used free")


# --- here: the course's own venv passes -------------------------------------------------------

@pytest.mark.parametrize("check", [preflight.check_python, preflight.check_disk, preflight.check_packages,
                                   preflight.check_qlora, preflight.check_kernel, preflight.check_widgets,
                                   preflight.check_model], ids=lambda check: check.__name__)
def test_passes_here(check):
    result = check()
    assert result.status == PASS, result


def test_memory_and_torch_are_fine_here():
    # Both depend on what else the machine is doing: a busy machine may WARN, never FAIL.
    for check in (preflight.check_memory, preflight.check_torch):
        result = check()
        assert result.status in (PASS, WARN), result
    assert "matmul" in preflight.check_torch().detail or "took" in preflight.check_torch().detail


def test_notebook_00_library_table():
    rows = preflight.library_versions()
    assert [r["library"] for r in rows if r["needed for"] == "core"] == ["torch", "transformers", "peft", "datasets"]
    assert not any(r["missing"] for r in rows), rows


# --- a fake machine: each failure names its fix ---------------------------------------------------

def test_old_python_fails():
    result = preflight.check_python((3, 9, 18), executable="/usr/bin/python3.9")
    assert result.status == FAIL and "3.9.18" in result.detail and "3.10" in result.fix


def test_small_disk_fails():
    result = preflight.check_disk("/somewhere", disk_usage=lambda path: Disk(100 * GIB, 99 * GIB, 1 * GIB))
    assert result.status == FAIL and "1.0 GiB free" in result.detail
    assert "free at least 2.0 GiB" in result.fix
    assert preflight.check_disk("/x", disk_usage=lambda path: Disk(0, 0, 3 * GIB)).status == PASS


@pytest.mark.parametrize("total, available, status, fix", [
    (16, 2, FAIL, "close other programs"),
    (3, 2, FAIL, "pair with a neighbour"),
    (16, 6, WARN, "one notebook at a time"),
    (16, 12, PASS, ""),
])
def test_memory_thresholds(total, available, status, fix):
    result = preflight.check_memory(total * GIB, available * GIB)
    assert result.status == status and fix in result.fix, result


def _importer(missing):
    import importlib

    def import_module(name):
        if name in missing:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return importlib.import_module(name)
    return import_module


def test_missing_core_package_fails():
    result = preflight.check_packages(import_module=_importer({"peft"}))
    assert result.status == FAIL and "peft" in result.detail and "make venv" in result.fix


def test_missing_optional_package_warns():
    result = preflight.check_packages(import_module=_importer({"bitsandbytes"}))
    assert result.status == WARN and "bitsandbytes (QLoRA" in result.detail and result.fix


def test_no_4bit_warns_with_what_to_skip():
    def require():
        raise ConfigError("4-bit loading needs a working bitsandbytes, and it failed here: RuntimeError: no CUDA. "
                          "Install bitsandbytes>=0.50")
    result = preflight.check_qlora(require=require)
    assert result.status == WARN and "no CUDA" in result.detail and "Install" not in result.detail
    assert "Skip notebook 03" in result.fix and '"ia3"' in result.fix


def test_kernel_elsewhere_fails():
    result = preflight.check_kernel(resolve=lambda name: "/usr/bin/python3.9")
    assert result.status == FAIL and "/usr/bin/python3.9" in result.detail
    assert "jupyter kernelspec remove python3" in result.fix


def test_no_kernel_fails():
    def resolve(name):
        raise ConfigError(f"--kernel {name}: no such Jupyter kernel (available: none)")
    result = preflight.check_kernel(resolve=resolve)
    assert result.status == FAIL and "no such Jupyter kernel" in result.detail and "ipykernel" in result.fix


def _versions(**found):
    def version(dist):
        if dist not in found:
            raise PackageNotFoundError(dist)
        return found[dist]
    return version


def test_widgets_version_mismatch_fails():
    result = preflight.check_widgets(version=_versions(ipywidgets="8.1.9", jupyterlab_widgets="1.1.7"),
                                     requires=lambda dist: ["jupyterlab_widgets~=3.0.15", "pytest; extra == 'test'"],
                                     labextension_installed=lambda: True)
    assert result.status == FAIL and "needs jupyterlab_widgets~=3.0.15" in result.detail
    assert "pip install -c constraints.txt ipywidgets jupyterlab_widgets" in result.fix


def test_widgets_without_front_end_fails():
    result = preflight.check_widgets(labextension_installed=lambda: False)
    assert result.status == FAIL and "jupyterlab-manager" in result.detail and "labextension list" in result.fix


def test_widgets_not_installed_fails():
    result = preflight.check_widgets(version=_versions(ipywidgets="8.1.9"))
    assert result.status == FAIL and "jupyterlab_widgets" in result.detail


def test_missing_model_fails(tmp_path):
    result = preflight.check_model(tmp_path / "tiny-llama-base")
    assert result.status == FAIL and "config.json" in result.detail and "make base-model" in result.fix


def test_broken_or_slow_torch():
    def broken():
        raise OSError("libtorch_cpu.so: cannot open shared object file")
    result = preflight.check_torch(op=broken)
    assert result.status == FAIL and "libtorch_cpu.so" in result.detail and "torch==2.13.0" in result.fix
    slow = preflight.check_torch(op=lambda: (3.5, "torch 2.13.0, device cpu"))
    assert slow.status == WARN and "3.50 s" in slow.detail


# --- the command ----------------------------------------------------------------------------------

def _ok():
    return preflight.Result("ok", PASS, "fine")


def _warn():
    return preflight.Result("slowish", WARN, "slow", "wait")


def _bad():
    return preflight.Result("bad", FAIL, "broken", "do this")


def _crash():
    raise RuntimeError("boom")


def test_exit_status_and_text(capsys):
    assert preflight.main([], checks=(_ok, _warn)) == 0
    out = capsys.readouterr().out
    assert "PASS  ok" in out and "WARN  slowish" in out and "fix: wait" in out and "Ready" in out
    assert preflight.main([], checks=(_ok, _bad)) == 1
    out = capsys.readouterr().out
    assert "FAIL  bad" in out and "fix: do this" in out


def test_a_crashing_check_is_a_failure_not_a_traceback(capsys):
    assert preflight.main(["--json"], checks=(_ok, _crash)) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [(c["name"], c["status"]) for c in report["checks"]] == [("ok", PASS), ("crash", FAIL)]
    assert "RuntimeError: boom" in report["checks"][1]["detail"] and report["checks"][1]["fix"]


def test_idle_check_warns_on_a_busy_machine_and_passes_an_idle_one():
    busy = preflight.check_idle(busy=lambda: [{"pid": 4242, "name": "python", "cpu_percent": 198}])
    assert busy.status == WARN and "pid 4242" in busy.detail and "198 %" in busy.detail and busy.fix
    assert preflight.check_idle(busy=lambda: []).status == PASS
