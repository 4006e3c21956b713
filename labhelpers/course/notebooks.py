"""One notebook executed with papermill, its parameters, and its failure as one line.

Shared by the course runner (``python -m labhelpers course``) and batch grids (``python -m labhelpers batch``).
"""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass
from pathlib import Path

import papermill

from labhelpers.errors import ConfigError


@dataclass
class Execution:
    """How one papermill run went: seconds, and the notebook's own exception (empty when it ran through)."""

    seconds: float
    error_type: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_type

    def one_line(self) -> str:
        """``ErrorType: first line of its message`` (empty when it ran through)."""
        return f"{self.error_type}: {self.error}" if self.error else self.error_type


def error_parts(err: BaseException) -> tuple[str, str]:
    """``(exception name, first non-empty line of its message)``; papermill's execution error carries the
    notebook's own exception, which is what a learner needs to see."""
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    kind, text = (ename, str(evalue)) if ename else (type(err).__name__, str(err))
    return kind, next((line.strip() for line in text.splitlines() if line.strip()), "")


def execute(notebook: Path, output: Path, parameters: dict, kernel: str, timeout: int | None) -> Execution:
    """Run ``notebook`` into ``output`` with ``parameters``; a failure is returned, never raised."""
    start = time.perf_counter()
    kind = first = ""
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            cwd=str(notebook.parent),
            kernel_name=kernel,
            progress_bar=False,
            request_save_on_cell_execute=True,  # a killed run's notebook shows how far it got
            execution_timeout=timeout,
        )
    except Exception as err:  # any failure is recorded; the caller's other runs still go
        kind, first = error_parts(err)
    return Execution(round(time.perf_counter() - start, 1), kind, first)


def notebook_parameters(path: str | Path) -> dict:
    """Names assigned in the notebook's cell tagged ``parameters`` -> their default (None if not a literal),
    as papermill reads them (so a name listed here is one ``-p name value`` really sets)."""
    path = Path(path)
    try:
        found = papermill.inspect_notebook(str(path))
    except Exception as err:  # papermill raises OS, JSON and nbformat errors for a bad file
        raise ConfigError(f"{path}: not a readable notebook ({err})") from None
    if not found:
        raise ConfigError(f"{path}: no cell tagged 'parameters' (or it assigns nothing), so papermill cannot set "
                          "any parameter; tag the cell that assigns the defaults (View > Cell Toolbar > Tags)")
    defaults = {}
    for name, info in found.items():
        try:
            defaults[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            defaults[name] = None
    return defaults
