"""Safe file writing: atomic replacement for results, append-as-you-go JSONL for measurements."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

_logger = logging.getLogger(__name__)

__all__ = ["atomic_write_text", "atomic_write_json", "append_jsonl", "read_jsonl", "ensure_writable_dir"]


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written there; one-line error otherwise."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"output directory {str(directory)!r} cannot be written ({error.strerror or error}); "
                         "choose another with --output-dir") from None
    return directory


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record and flush it to disk, so an interruption loses at most the record in flight."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, allow_nan=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Records of a JSONL file; a truncated last line (from an interruption) is skipped with a warning."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                _logger.warning("%s: ignoring a truncated last line (interrupted write)", path)
            else:
                raise ValueError(f"{path}: line {number} is not valid JSON; fix or delete that line") from None


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
