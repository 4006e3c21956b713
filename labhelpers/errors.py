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
