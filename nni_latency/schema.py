"""The device-model file's envelope: versioned JSON (format, schema version, unit), validated on load and
written atomically; never a pickle. What a model puts inside is ``LatencyModel.to_dict``'s business.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from .fileio import atomic_write_json

_logger = logging.getLogger(__name__)

__all__ = ["SCHEMA_VERSION", "FORMAT", "envelope", "require", "check_envelope", "write_document", "read_document"]

SCHEMA_VERSION = 1
FORMAT = "nni-latency/device-model"


def envelope(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` (the model's own fields) inside the versioned envelope."""
    return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "unit": "ms", **body}


def require(condition: bool, source: str, message: str) -> None:
    """A one-line ``ValueError`` naming ``source`` unless ``condition`` holds."""
    if not condition:
        raise ValueError(f"{source}: {message}")


def check_envelope(data: Any, source: str = "<dict>") -> None:
    """Check that ``data`` is a device model this version reads: an object of our format, version and unit."""
    require(isinstance(data, Mapping), source, "not a device model (expected a JSON object)")
    require(data.get("format") == FORMAT, source,
            "not an nni-latency device model (missing 'format'); create one with `nni-latency profile`")
    version = data.get("schema_version")
    require(isinstance(version, int), source, "has no integer 'schema_version'")
    require(version <= SCHEMA_VERSION, source,
            f"schema version {version} is newer than this nni-latency reads ({SCHEMA_VERSION}); upgrade nni-latency")
    require(data.get("unit") == "ms", source, f"unit {data.get('unit')!r} is not supported (expected 'ms')")


def write_document(path: str | os.PathLike, document: Mapping[str, Any]) -> None:
    """Write a device-model document as strict JSON, atomically (temporary file, then rename)."""
    atomic_write_json(path, document)


def read_document(path: str | os.PathLike) -> Any:
    """The parsed JSON of a device-model file (check it with ``check_envelope``); a one-line ValueError if it
    cannot be read or parsed."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{source}: no such file; create a device model with `nni-latency profile`") from None
    except OSError as error:
        raise ValueError(f"{source}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{source}: is a binary file, not a JSON device model (models are never pickles); "
                         "create one with `nni-latency profile`") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: corrupt or truncated JSON at line {error.lineno} ({error.msg}); "
                         "re-create it with `nni-latency profile` or `nni-latency fit`") from None
    return data
