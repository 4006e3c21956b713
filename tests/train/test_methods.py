"""labhelpers.train.methods.check_methods: notebook 01's method list and learning rates, checked up front."""

import sys

import pytest

from labhelpers.errors import ConfigError
from labhelpers.train.methods import check_methods

LRS = {"full": 2e-4, "lora": 1e-3, "qlora": 1e-3, "ia3": 1e-1}


def test_default_list_passes():
    assert check_methods(["full", "lora", "qlora", "ia3"], LRS) == ["full", "lora", "qlora", "ia3"]
    assert check_methods(("full", "lora"), LRS) == ["full", "lora"]


@pytest.mark.parametrize("methods,match", [
    ("lora", "non-empty list"), ([], "non-empty list"), (["full", "lora", "adapter"], "unknown"),
    (["full", "lora", "lora"], "twice"), (["lora", "qlora"], "must include"),
])
def test_bad_lists_are_named(methods, match):
    with pytest.raises(ConfigError, match=match):
        check_methods(methods, LRS)


@pytest.mark.parametrize("lr", [0, -1e-3, 1.5, "1e-3", None, True])
def test_bad_learning_rate_names_the_parameter(lr):
    with pytest.raises(ConfigError, match="lr_ia3"):
        check_methods(["full", "lora", "ia3"], LRS | {"ia3": lr})


def test_qlora_without_bitsandbytes_says_how_to_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)            # import fails as if not installed
    monkeypatch.setitem(sys.modules, "bitsandbytes.functional", None)
    with pytest.raises(ConfigError, match="bitsandbytes"):
        check_methods(["full", "lora", "qlora"], LRS)
    assert check_methods(["full", "lora"], LRS) == ["full", "lora"]   # without qlora it is not needed
