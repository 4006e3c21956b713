"""Checks on user-supplied values that fail with a ConfigError naming the value and the fix."""

import difflib

from labhelpers.errors import ConfigError


def did_you_mean(name, known, listing: str = "known keys") -> str:
    """``did you mean 'x'?`` for the closest known name, else ``<listing>: a, b, c``."""
    known = [str(k) for k in known]
    hint = difflib.get_close_matches(str(name), known, n=1)
    return f"did you mean {hint[0]!r}?" if hint else f"{listing}: {', '.join(known)}"


def check_choice(name: str, value, choices) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices`` (naming the closest one)."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(map(str, choices))}; "
                          f"{did_you_mean(value, choices, 'choices')}")


def check_int(name: str, value, low: int) -> None:
    """Raise ConfigError unless ``value`` is an integer >= ``low`` (bools are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={value!r} must be an integer >= {low}")


def check_number(name: str, value, low: float, high: float | None, hint: str) -> None:
    """Raise ConfigError unless ``value`` is a number in (``low``, ``high``); ``hint`` gives typical values."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > low
    if ok and high is not None:
        ok = value < high
    if not ok:
        rng = f"in ({low}, {high})" if high is not None else f"> {low}"
        raise ConfigError(f"{name}={value!r} must be a number {rng} ({hint})")


def check_bool(name: str, value) -> None:
    """Raise ConfigError unless ``value`` is True or False (not "yes", 1 or None)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be True or False")


def check_fraction(name: str, value, low: float = 0.0, high: float = 1.0, hint: str = "") -> None:
    """Raise ConfigError unless ``value`` is a number in [``low``, ``high``]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{name}={value!r} must be a number in [{low:g}, {high:g}]" + (f" ({hint})" if hint else ""))
