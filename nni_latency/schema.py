"""The device-model file: versioned JSON, validated on load, written atomically. Never pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from .features import FEATURE_DOCS, FEATURE_NAMES
from .fileio import atomic_write_json

__all__ = ["SCHEMA_VERSION", "model_to_dict", "model_from_dict", "save_model", "load_model"]

SCHEMA_VERSION = 1
_FORMAT = "nni-latency/device-model"


def model_to_dict(model) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "schema_version": SCHEMA_VERSION,
        "unit": "ms",
        "kind": model.kind,
        "parameters": model.parameters,
        "features": {name: FEATURE_DOCS[name] for name in model.regressor.feature_names},
        "feature_ranges": {k: list(v) for k, v in model.feature_ranges.items()},
        "device": model.device,
        "metrics": model.metrics,
        "notes": model.notes,
    }


def _require(condition: bool, source: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{source}: {message}")


def model_from_dict(data: Mapping[str, Any], source: str = "<dict>"):
    from .model import MODEL_KINDS, LatencyModel

    _require(isinstance(data, Mapping), source, "not a device model (expected a JSON object)")
    _require(data.get("format") == _FORMAT, source,
             "not an nni-latency device model (missing 'format'); create one with `nni-latency profile`")
    version = data.get("schema_version")
    _require(isinstance(version, int), source, "has no integer 'schema_version'")
    _require(version <= SCHEMA_VERSION, source,
             f"schema version {version} is newer than this nni-latency reads ({SCHEMA_VERSION}); upgrade nni-latency")
    _require(data.get("unit") == "ms", source, f"unit {data.get('unit')!r} is not supported (expected 'ms')")
    kind = data.get("kind")
    _require(kind in MODEL_KINDS, source, f"unknown model kind {kind!r} (known: {', '.join(MODEL_KINDS)})")
    parameters = data.get("parameters")
    _require(isinstance(parameters, Mapping), source, "'parameters' must be an object")
    try:
        regressor = MODEL_KINDS[kind].from_state(parameters)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{source}: parameters of kind {kind!r} are incomplete or invalid (missing or bad "
                         f"{error!s}); if the file comes from an older nni-latency, refit it with "
                         "`nni-latency fit microbench.jsonl`") from None
    ranges = data.get("feature_ranges", {})
    _require(isinstance(ranges, Mapping) and all(k in FEATURE_NAMES for k in ranges), source,
             f"'feature_ranges' must map feature names ({', '.join(FEATURE_NAMES)}) to [min, max]")
    return LatencyModel(regressor, device=data.get("device", {}), feature_ranges=ranges,
                        metrics=data.get("metrics", {}), notes=data.get("notes", ""))


def save_model(model, path: str | os.PathLike) -> None:
    atomic_write_json(path, model_to_dict(model))


def load_model(path: str | os.PathLike):
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
    return model_from_dict(data, source)
