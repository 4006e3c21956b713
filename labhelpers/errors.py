"""One exception family for the course: each message says what, where and how to fix it."""


class LabError(Exception):
    """Base class: notebooks let it surface as one clear line."""


class ConfigError(LabError, ValueError):
    """A parameter or config value is wrong (names the parameter)."""


class DataError(LabError, ValueError):
    """A dataset file, row or field is wrong (names file, row and field)."""


class ModelError(LabError):
    """A model or adapter cannot be found or loaded."""


class OverwriteError(LabError, FileExistsError):
    """Refusing to overwrite something the user made."""


class OliveError(LabError):
    """Olive's CLI is missing, failed, or finished without the outputs it promised (names the command)."""


def expect_error(error: type[BaseException], call, *args, **kwargs) -> BaseException:
    """``call(*args, **kwargs)`` and return the ``error`` it raises; AssertionError when it raises none.

    For notebook cells that show an error on purpose: printed inside ``except`` alone, such a cell would
    stay green if the error stopped coming."""
    try:
        call(*args, **kwargs)
    except error as err:
        return err
    raise AssertionError(f"{getattr(call, '__qualname__', call)} was expected to raise {error.__name__} and did not")
