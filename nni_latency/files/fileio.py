"""Safe file writing: atomic replacement for results, append-as-you-go JSONL for measurements."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import InvalidInput

_logger = logging.getLogger(__name__)

__all__ = ["set_aside", "atomic_write", "atomic_write_text", "atomic_write_json", "append_jsonl", "read_jsonl",
           "ensure_writable_dir", "json_safe"]


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written there; one-line error otherwise."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as error:
        raise InvalidInput(f"output directory {str(directory)!r} cannot be written ({error.strerror or error}); "
                         "choose another with --output-dir") from None
    return directory


def _new_file_mode(target: Path) -> int:
    """The mode ``open(target, "w")`` would leave: an existing file keeps its own, a new one gets
    ``0o666`` less the umask (``mkstemp`` alone would give 0600, unreadable to others)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)  # the only portable way to read the umask is to set it; put it back at once
        os.umask(mask)
        return 0o666 & ~mask


def _naming(error: OSError, target: Path) -> OSError:
    """``error`` (same type and errno) naming ``target`` instead of the temporary file beside it."""
    temporary = error.filename is not None and Path(error.filename).parent == target.parent and \
        Path(error.filename).name.startswith(f".{target.name}.")
    if not temporary:
        return error
    return type(error)(error.errno, error.strerror, str(target))


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], binary: bool = False) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it over ``path``.

    An interruption or an error leaves the old file (if any) whole and no temporary file behind. The file
    gets the mode ``open()`` would give it, and an ``OSError`` names ``path``, never the temporary file.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise _naming(error, target) from None
    try:
        os.chmod(fd, _new_file_mode(target))
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        raise _naming(error, target) from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically (see ``atomic_write``)."""
    atomic_write(path, lambda handle: handle.write(text))


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by None and numpy scalars made Python, for strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write strict JSON (NaN and infinities become null) atomically."""
    atomic_write_text(path, json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record and flush it to disk, so an interruption loses at most the record in flight."""
    with open(path, "a+b") as handle:
        # A write torn by an interruption leaves no newline: start a fresh line so this record survives.
        torn = False
        if handle.seek(0, os.SEEK_END) > 0:
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
        handle.write((("\n" if torn else "") + json.dumps(record, allow_nan=True) + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Records of a JSONL file. A line torn by an interrupted write is skipped with a warning: the
    record it held was never complete, and resuming measures that block again."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
    torn = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            torn.append(number)
            continue
        if not isinstance(record, dict):
            raise InvalidInput(f"{path}: line {number} is not a JSON object; fix or delete that line")
        yield record
    if torn:
        _logger.warning("%s: skipped %d incomplete line(s) (%s) left by an interrupted write", path, len(torn),
                        ", ".join(map(str, torn[:5])))


def set_aside(paths: Iterable[Path]) -> list[Path]:
    """Rename each existing file ``name.ext`` to ``name.<time>.ext`` beside it; return the new paths. The one
    renaming rule of the package: a good file is kept aside, never deleted or silently replaced."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for path in map(Path, paths):
        if not path.exists():
            continue
        target, extra = path.with_name(f"{path.stem}.{stamp}{path.suffix}"), 1
        while target.exists():
            target, extra = path.with_name(f"{path.stem}.{stamp}-{extra}{path.suffix}"), extra + 1
        path.rename(target)
        _logger.info("kept the previous %s as %s", path.name, target)
        moved.append(target)
    return moved
