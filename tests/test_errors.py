import pytest

from labhelpers.errors import ConfigError, DataError, LabError, expect_error


def _fail(kind, message):
    raise kind(message)


def test_expect_error_returns_the_error_it_expected():
    err = expect_error(DataError, _fail, DataError, "line 3: bad")
    assert isinstance(err, DataError) and str(err) == "line 3: bad"
    assert isinstance(expect_error(LabError, _fail, ConfigError, "x"), ConfigError)  # a subclass counts


def test_expect_error_fails_when_no_error_comes_and_passes_other_errors_on():
    with pytest.raises(AssertionError, match="int was expected to raise DataError and did not"):
        expect_error(DataError, int, "3")
    with pytest.raises(KeyError):
        expect_error(DataError, _fail, KeyError, "not the expected kind")
