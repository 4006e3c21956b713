"""Reading the course's YAML files (run configs, grids, search spaces) with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import yaml

from labhelpers.errors import ConfigError


def read_yaml(path: str | Path, kind: str, example: str | None = None):
    """``yaml.safe_load`` of ``path`` (no Python objects from the file); ConfigError for a missing,
    unparsable or empty file, naming the file (and line) and, for a missing one, an ``example`` path."""

    path = Path(path)
    if not path.is_file():
        hint = f"; check the path (e.g. {example})" if example else ""
        raise ConfigError(f"{path}: no such {kind} file{hint}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err}); check indentation "
                          "and quotes (templates with {braces} or ':' must be quoted)") from None
    if values is None:
        raise ConfigError(f"{path}: the {kind} file is empty")
    return values
