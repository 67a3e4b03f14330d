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

__all__ = ["atomic_write_text", "atomic_write_json", "append_jsonl", "read_jsonl", "ensure_writable_dir", "json_safe"]


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


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, which strict JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
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
            raise ValueError(f"{path}: line {number} is not a JSON object; fix or delete that line")
        yield record
    if torn:
        _logger.warning("%s: skipped %d incomplete line(s) (%s) left by an interrupted write", path, len(torn),
                        ", ".join(map(str, torn[:5])))


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
