"""labhelpers.memory.hardware: device and dtype choice, with the hardware faked through monkeypatch."""

import json
import os

import pytest
import torch

from labhelpers.memory import hardware

AVX2_ONLY = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n"
WITH_BF16 = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
WITH_AMX = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 amx_tile amx_bf16\n"


@pytest.fixture
def cpu_only(monkeypatch):
    """No CUDA, no MPS, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "_mps_available", lambda: False)


def fake_cpuinfo(monkeypatch, text):
    monkeypatch.setattr(hardware, "_cpuinfo_text", lambda: text)


def test_cpu_flags_parsed(monkeypatch):
    fake_cpuinfo(monkeypatch, AVX2_ONLY)
    assert hardware.cpu_flags() == {"fpu", "sse2", "avx", "avx2", "fma", "avx512f"}
    assert hardware.cpu_name() == "Test CPU"


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [(AVX2_ONLY, False), (WITH_BF16, True), (WITH_AMX, True), ("", False)],
)
def test_cpu_bf16_detection(monkeypatch, cpuinfo, expected):
    fake_cpuinfo(monkeypatch, cpuinfo)
    assert hardware.cpu_bf16_supported() is expected


def test_cpu_without_bf16_trains_in_fp32(monkeypatch, cpu_only):
    fake_cpuinfo(monkeypatch, AVX2_ONLY)
    assert hardware.pick_device() == "cpu"
    assert hardware.pick_dtype() is torch.float32
    assert hardware.pick_dtype("cpu") is torch.float32


def test_cpu_with_bf16_hardware_uses_bf16(monkeypatch, cpu_only):
    fake_cpuinfo(monkeypatch, WITH_AMX)
    assert hardware.pick_dtype() is torch.bfloat16


@pytest.mark.parametrize("bf16, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_dtype(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert hardware.pick_device() == "cuda"
    assert hardware.pick_dtype() is expected
    assert hardware.pick_dtype(torch.device("cuda", 0)) is expected


def test_mps_uses_fp32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "_mps_available", lambda: True)
    assert hardware.pick_device() == "mps"
    assert hardware.pick_dtype() is torch.float32


def test_explicit_cpu_ignores_gpu(monkeypatch):
    # Asking for the CPU on a GPU machine must give the CPU's dtype, not the GPU's.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    fake_cpuinfo(monkeypatch, AVX2_ONLY)
    assert hardware.pick_dtype("cpu") is torch.float32


def test_report_on_cpu(monkeypatch, cpu_only):
    fake_cpuinfo(monkeypatch, AVX2_ONLY)
    report = hardware.hardware_report()
    assert report["device"] == "cpu"
    assert report["device_name"] == "Test CPU"
    assert report["bf16_supported"] is False
    assert report["dtype"] == "float32"
    assert report["cpu_count"] >= 1
    assert 0 < report["available_memory_gib"] <= report["total_memory_gib"]
    assert report["gpu_memory_total_gib"] is None
    assert report["torch_version"] == torch.__version__
    json.dumps(report)  # notebooks store it in metrics/params


def test_report_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (6 * hardware.GIB, 8 * hardware.GIB))
    report = hardware.hardware_report()
    assert report["device"] == "cuda"
    assert report["device_name"] == "Fake GPU"
    assert report["gpu_memory_total_gib"] == 8.0
    assert report["gpu_memory_free_gib"] == 6.0
    assert report["dtype"] == "bfloat16"
    text = hardware.format_report(report)
    assert "Fake GPU" in text and "8.0 GiB total" in text and "bfloat16" in text


def test_format_report_explains_fp32(monkeypatch, cpu_only):
    fake_cpuinfo(monkeypatch, AVX2_ONLY)
    text = hardware.format_report(hardware.hardware_report())
    assert text.startswith("Device: cpu (Test CPU)")
    assert "emulated" in text and "float32" in text
    assert "GPU memory" not in text


def test_busy_processes_sees_a_spinning_process_and_not_this_one():
    import signal
    import subprocess
    import sys

    # Started through a shell that exits at once, so the spinner is not our child (children are not counted).
    out = subprocess.run(["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    spin = int(out.stdout.strip())
    try:
        busy = hardware.busy_processes(sample_s=1.0)
    finally:
        os.kill(spin, signal.SIGKILL)
    pids = [b["pid"] for b in busy]
    assert spin in pids, busy
    assert os.getpid() not in pids
    line = hardware.busy_warning(busy, cores=2)
    assert f"pid {spin}" in line and "slower" in line


def test_busy_warning_is_none_when_idle():
    assert hardware.busy_warning([]) is None


def test_attention_is_eager_on_a_cpu_and_sdpa_on_a_gpu(monkeypatch, cpu_only):
    assert hardware.pick_attention() == "eager" == hardware.pick_attention("cpu")
    assert hardware.pick_attention(torch.device("cuda", 0)) == "sdpa"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hardware.pick_attention() == "sdpa"


def test_mixed_precision_env_undoes_a_bf16_trainers_leftover(tmp_path, monkeypatch, tiny_model_dir):
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    TrainingArguments(output_dir=str(tmp_path / "a"), bf16=True, use_cpu=True, report_to="none")
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "bf16"   # what transformers leaves behind
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)

    def fp32_trainer():
        return Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "b"), use_cpu=True,
                                                           report_to="none"))

    assert fp32_trainer().accelerator.mixed_precision == "bf16"   # the trap: bf16 off, bf16 autocast on
    with hardware.mixed_precision_env(torch.float32):
        assert fp32_trainer().accelerator.mixed_precision == "no"
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "bf16"     # put back
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    with hardware.mixed_precision_env(torch.bfloat16):
        assert os.environ["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert "ACCELERATE_MIXED_PRECISION" not in os.environ          # absent before, absent after
