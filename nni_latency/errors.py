"""The package's exceptions, one meaning each, and how the command line turns any exception into the one line it
prints (``describe_error``): the one place that words them.

Every error a user can fix is an ``NniLatencyError`` whose message names the problem and the fix. The ones about a
bad value are also ``ValueError`` s (so ``except ValueError`` keeps working), a missing optional package is also an
``ImportError``; files the system refuses stay ``OSError`` s naming their path. Anything else reaching the command
line is a bug, and says so.

It imports nothing heavy (no torch), so the command line can load it before any command runs.
"""

from __future__ import annotations

import difflib
import errno
import importlib.util
from typing import Iterable

__all__ = ["NniLatencyError", "InvalidInput", "ConfigError", "ModelFileError", "RowsError", "ShapeError",
           "RuntimeMismatch", "MissingDependency", "MeasurementError", "describe_error", "did_you_mean", "first_line",
           "require"]


class NniLatencyError(Exception):
    """A problem the user can fix; its message names it and says how, in one line."""


class InvalidInput(NniLatencyError, ValueError):
    """A value given to a function or a flag is not one it takes."""


class ConfigError(InvalidInput):
    """A YAML config or a ``--set`` override is wrong: an unknown key, a bad type or value."""


class ModelFileError(InvalidInput):
    """A device-model file cannot be used: not ours, damaged, or of a version this one does not read."""


class RowsError(InvalidInput):
    """Measured rows cannot be used together: other machines or protocols, another schema, nothing left to fit."""


class ShapeError(InvalidInput):
    """An input shape does not fit the module it is given to."""


class RuntimeMismatch(InvalidInput):
    """A device model of one runtime is asked about another (eager PyTorch against ONNX Runtime)."""


class MeasurementError(NniLatencyError, RuntimeError):
    """A module could not be run or timed on the device (an exporter or a runtime refused it)."""


class MissingDependency(NniLatencyError, ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


def require(packages: Iterable[str], extra: str, what: str) -> None:
    """Refuse (``MissingDependency``) when one of ``packages`` is not installed: ``what`` needs it, and ``pip install
    'nni-latency[extra]'`` installs it. Only looks for the packages; importing them is left to the caller."""
    missing = [package for package in packages if importlib.util.find_spec(package) is None]
    if missing:
        raise MissingDependency(f"{what} needs {', '.join(missing)}, which is not installed: pip install "
                                f"'nni-latency[{extra}]' (or pip install -e \".[{extra}]\" in a checkout)")

# Fragments of the messages torch and its allocators give when memory runs out.
_ALLOCATION_FAILURES = ("can't allocate memory", "out of memory", "not enough memory", "bad_alloc")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def first_line(error: BaseException, with_type: bool = False) -> str:
    """The first non-blank line of an error's message (its type's name when it has none), for one-line messages:
    torch's errors carry C++ context after it. ``with_type`` prefixes the type (``KeyError: 'x'``), for errors
    raised by a user's code, whose type says what went wrong."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {lines[0]}" if with_type else lines[0]


def _os_error(error: OSError) -> str:
    path = error.filename if error.filename is not None else error.filename2
    if path is None:
        return _one_line(error.strerror or error)
    where = repr(str(path))
    if isinstance(error, FileNotFoundError):
        return f"{where} does not exist; check the path"
    if isinstance(error, IsADirectoryError):
        return f"{where} is a directory, not a file; give the path of a file (e.g. inside that directory)"
    if isinstance(error, NotADirectoryError):
        return f"{where}: a part of this path is a file, not a directory; choose another path"
    if isinstance(error, FileExistsError):
        return f"cannot create directory {where}: a file of that name is in the way; choose another path"
    if isinstance(error, PermissionError):
        return f"permission denied on {where}; choose a location you may read and write, or change its permissions"
    if error.errno == errno.ENOSPC:
        return f"no space left on the device holding {where}; free some space or write elsewhere"
    return f"{where}: {_one_line(error.strerror or error)}"


def describe_error(error: BaseException) -> str:
    """``error`` as one line that names the file or value at fault and says what to do."""
    if isinstance(error, NniLatencyError):
        return _one_line(error)
    if isinstance(error, OSError):
        return _os_error(error)
    if isinstance(error, RecursionError):
        return ("an input is nested too deeply to read (thousands of levels of JSON or YAML?); check the files "
                "given to this command")
    if isinstance(error, MemoryError) or (
            isinstance(error, RuntimeError) and any(f in str(error) for f in _ALLOCATION_FAILURES)):
        return (f"ran out of memory ({first_line(error)[:160]}); use a smaller input shape, batch or thread "
                "count")
    if isinstance(error, (ValueError, ImportError)):
        return _one_line(error)
    if isinstance(error, RuntimeError):  # torch's carry C++ context after the first line
        return f"{first_line(error)}; rerun with -v for the details"
    return (f"unexpected {type(error).__name__}: {first_line(error)}; this is a bug in nni-latency: rerun with "
            "-v for the traceback and report it")


def did_you_mean(value: object, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to ``value``, or ``""`` when none is close: the hint
    every unknown-name error carries."""
    close = difflib.get_close_matches(str(value), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
