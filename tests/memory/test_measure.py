"""labhelpers.memory.measure: peak RSS growth sees what a callable allocates, and only that."""

import numpy as np
import pytest

from labhelpers.errors import ConfigError
from labhelpers.memory import measure

MB = 1e6


def _allocate(n_mb, keep=False):
    a = np.ones(int(n_mb * MB) // 8)   # np.ones touches every page: resident, not just reserved
    return a if keep else float(a[0])


@pytest.mark.parametrize("force_sampling", [False, True])
def test_sees_a_temporary_allocation(force_sampling):
    measure.fix_malloc_thresholds()
    _, peak = measure.measure_peak(_allocate, 200, force_sampling=force_sampling, interval=0.001)
    # Freed before returning: only the peak shows it. The sampler can miss a little, never more than all.
    assert 170 < peak.growth_mb < 240, peak
    assert peak.seconds > 0
    assert ("VmHWM" in peak.how) != force_sampling


def test_distinguishes_sizes():
    small = measure.measure_peak(_allocate, 20)[1].growth_mb
    large = measure.measure_peak(_allocate, 120)[1].growth_mb
    assert small < 40 and 100 < large < 150
    assert large - small == pytest.approx(100, abs=20)


def test_returns_the_result_and_nothing_counts_without_allocation():
    result, peak = measure.measure_peak(lambda x: x + 1, 41)
    assert result == 42
    assert peak.growth_mb < 5      # noise floor: a few MB at most
    assert "MB" in str(peak)


def test_exception_propagates():
    def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        measure.measure_peak(boom)


@pytest.mark.parametrize("kw,name", [
    (dict(fn=None), "fn"), (dict(fn=len, interval=0), "interval"),
])
def test_bad_arguments(kw, name):
    fn = kw.pop("fn")
    with pytest.raises(ConfigError, match=name):
        measure.measure_peak(fn, **kw)


@pytest.mark.parametrize("kw,name", [
    (dict(method="adapters"), "method"), (dict(method="lora", batch_size=0), "batch_size"),
    (dict(method="full", seq_len=-1), "seq_len"), (dict(method="qlora", steps=0), "steps"),
])
def test_training_arguments_are_checked_before_any_work(kw, name):
    with pytest.raises(ConfigError, match=name):
        measure.measure_training_subprocess(**kw)
    with pytest.raises(ConfigError, match=name):
        measure.measure_training(**kw)


def test_measure_training_small_run(tiny_model_dir):
    """In-process on the test-size model: trainable counts and a positive peak (its growth is too small to
    compare methods: that is the next test, in fresh processes)."""
    full = measure.measure_training("full", batch_size=2, seq_len=16, steps=1, model_path=tiny_model_dir)
    lora = measure.measure_training("lora", batch_size=2, seq_len=16, steps=1, model_path=tiny_model_dir)
    assert full["trainable_params"] > 3 * lora["trainable_params"] > 0
    assert full["weights_mb"] > 0 and full["sec_per_step"] > 0
    assert full["peak_growth_mb"] > 0
    assert full["how"] == "VmHWM" or full["how"].startswith("sampled")


def test_full_fine_tuning_grows_memory_more_than_lora():
    """Each in a fresh process on the shipped tiny model (3.7 M weights): full fine-tuning adds gradients and two
    Adam moments for every weight (about 45 MB), LoRA only for its adapters."""
    full = measure.measure_training_subprocess("full", batch_size=2, seq_len=16, steps=1)
    lora = measure.measure_training_subprocess("lora", batch_size=2, seq_len=16, steps=1)
    assert full["peak_growth_mb"] > lora["peak_growth_mb"] + 20, (full["peak_growth_mb"], lora["peak_growth_mb"])
