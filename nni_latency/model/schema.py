"""The device-model file's envelope: versioned JSON (format, schema version, unit), validated on load and
written atomically; never a pickle. What a model puts inside is ``LatencyModel.to_dict``'s business.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ModelFileError
from ..files.fileio import atomic_write_json
from ..files.formats import MODEL_FORMAT

_logger = logging.getLogger(__name__)

__all__ = ["SCHEMA_VERSION", "FORMAT", "NULLABLE", "envelope", "require", "check_envelope", "check_finite",
           "check_sections", "check_ranges", "write_document", "read_document"]

SCHEMA_VERSION = 1
# Parameters whose null means something: two_regime's breakpoint (-inf, written as null: no memory-bound regime).
NULLABLE = ("breakpoint",)
FORMAT = MODEL_FORMAT


def envelope(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` (the model's own fields) inside the versioned envelope."""
    return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "unit": "ms", **body}


def require(condition: bool, source: str, message: str) -> None:
    """A one-line ``ModelFileError`` naming ``source`` unless ``condition`` holds."""
    if not condition:
        raise ModelFileError(f"{source}: {message}")


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


def check_finite(value: Any, source: str, where: str) -> None:
    """Every number inside ``value`` (nested objects and lists) is finite: a NaN or infinite parameter would
    make every prediction NaN or infinite. ``null`` is refused the same way (strict JSON writes a NaN as null),
    except under the keys of ``NULLABLE``, where a kind gives it a meaning."""
    if value is None:
        require(where.rpartition(".")[2] in NULLABLE, source, f"{where} is null, expected a finite number; the "
                "model is damaged: re-create it with `nni-latency fit microbench.jsonl`")
    if isinstance(value, bool):
        raise ModelFileError(f"{source}: {where} is {str(value).lower()}, expected a number")
    if isinstance(value, (int, float)):
        require(math.isfinite(value), source, f"{where} is {value}, expected a finite number; the model is "
                "damaged: re-create it with `nni-latency fit microbench.jsonl`")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_finite(item, source, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_finite(item, source, f"{where}[{index}]")


def check_sections(data: Mapping[str, Any], source: str) -> None:
    """The optional sections have the types readers rely on: ``device`` and ``metrics`` objects, ``notes`` text.
    A model without its ``device`` loads, with one warning: nothing says what machine or protocol it describes."""
    if not data.get("device"):
        warnings.warn(f"{source}: has no 'device' record, so its provenance is unknown (which machine, threads and "
                      "protocol it describes); its predictions assume the default protocol: refit it with "
                      "`nni-latency fit microbench.jsonl` to record it", stacklevel=3)
    for name, kind, what in (("device", Mapping, "an object (the device and how it was measured)"),
                             ("metrics", Mapping, "an object"), ("notes", str, "a string")):
        value = data.get(name)
        require(value is None or isinstance(value, kind), source,
                f"'{name}' must be {what}, got {type(value).__name__} {_short(value)}")


def check_ranges(ranges: Any, names: Sequence[str], source: str) -> None:
    """``feature_ranges`` maps known feature names to ``[low, high]``: finite numbers with low <= high."""
    require(isinstance(ranges, Mapping), source,
            f"'feature_ranges' must be an object mapping feature names to [min, max], got {type(ranges).__name__}")
    for name, pair in ranges.items():
        require(name in names, source, f"'feature_ranges' has unknown feature {name!r}; features are "
                f"{', '.join(names)}")
        valid = (isinstance(pair, (list, tuple)) and len(pair) == 2
                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pair))
        require(valid and pair[0] <= pair[1], source,
                f"'feature_ranges.{name}' must be [min, max] of finite numbers with min <= max, got {_short(pair)}")


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_document(path: str | os.PathLike, document: Mapping[str, Any]) -> None:
    """Write a device-model document as strict JSON, atomically (temporary file, then rename)."""
    atomic_write_json(path, document)


def _looks_binary(raw: bytes) -> bool:
    # A pickle starts with its protocol byte 0x80; other binary formats hold NUL bytes early on. Text in
    # another encoding (a Latin-1 accent) has neither and is reported as an encoding problem instead.
    return raw.startswith(b"\x80") or b"\x00" in raw[:4096]


def read_document(path: str | os.PathLike) -> Any:
    """The parsed JSON of a device-model file (check it with ``check_envelope``); a one-line ``ModelFileError`` if it
    cannot be read or parsed. Only JSON is ever parsed: nothing in the file is executed."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{source}: no such file; create a device model with `nni-latency profile`") from None
    except IsADirectoryError:
        inside = Path(path) / "device_model.json"
        hint = f"did you mean {str(inside)!r}?" if inside.exists() else "give the device_model.json file itself"
        raise ModelFileError(f"{source}: cannot be read: it is a directory, not a device model; {hint}") from None
    except OSError as error:
        raise ModelFileError(f"{source}: cannot be read ({error.strerror or error})") from None
    if _looks_binary(raw):
        raise ModelFileError(f"{source}: is a binary file, not a JSON device model (models are never pickles); "
                         "create one with `nni-latency profile`")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ModelFileError(f"{source}: is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); "
                         "device models are UTF-8 JSON: re-save it as UTF-8 or re-create it with "
                         "`nni-latency fit`") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{source}: corrupt or truncated JSON at line {error.lineno} ({error.msg}); "
                         "re-create it with `nni-latency profile` or `nni-latency fit`") from None
    except RecursionError:
        raise ModelFileError(f"{source}: JSON nested too deeply to be a device model; re-create it with "
                         "`nni-latency profile` or `nni-latency fit`") from None
    return data
