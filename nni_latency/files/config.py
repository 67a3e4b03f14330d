"""YAML configuration files as (nested) dataclasses; an unknown or mistyped key is an error naming it.

``load_config(path, Cls)`` reads a file; ``config_from_dict`` does the same for a dict, and ``apply_overrides``
applies ``dotted.key=value`` strings (the ``--set`` flag) before validation. YAML is read with a loader that
refuses a key given twice, where YAML would keep the last one silently.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from ..errors import ConfigError, did_you_mean

__all__ = ["load_config", "config_from_dict", "config_to_dict", "apply_overrides", "packaged_config", "find_config",
           "read_yaml"]

T = TypeVar("T")


def _suggest(key: str, known: Sequence[str]) -> str:
    return did_you_mean(key, known) or f" (known keys: {', '.join(known)})"


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return config_from_dict(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], where)
    if origin in (list, Sequence, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item_type, *_) = typing.get_args(annotation) or (Any,)
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        _, value_type = typing.get_args(annotation) or (Any, Any)
        return {str(k): _coerce(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and not (
            isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))):
        raise ConfigError(f"{where} must be {annotation.__name__}, got {value!r}")
    return value


def config_from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise a one-line ValueError."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown key {where}.{key}{_suggest(str(key), known)}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML scalars) to a nested dict, in place."""
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like dotted.key=value")
        dotted, raw = override.split("=", 1)
        keys = dotted.strip().split(".")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: {key!r} is not a section")
        node[keys[-1]] = _override_value(dotted.strip(), raw)
    return data


_NULLS = ("", "~", "null", "Null", "NULL")


def _override_value(key: str, raw: str) -> Any:
    """``raw`` parsed as a YAML value; text YAML cannot parse (``...``, ``*x``) or reads as nothing is kept as
    the string it is, so a path or a name is never mistaken for a bug."""
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else None
    except yaml.YAMLError:
        return raw.strip()
    except RecursionError:
        raise ConfigError(f"--set {key}: the value is nested too deeply to be a config value") from None
    return raw.strip() if value is None and raw.strip() not in _NULLS else value


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping, where YAML keeps the last silently."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} at line {line} (first at line {seen[key]})",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep)


def packaged_config(name: str) -> Path:
    """Path of a config shipped with the package (``nni_latency/configs/NAME``)."""
    path = Path(str(resources.files("nni_latency") / "configs" / name))
    if not path.exists():
        raise ConfigError(f"no packaged config named {name!r}")
    return path


def find_config(path: str | os.PathLike) -> Path:
    """``path`` as given when it exists, else the packaged config of that file name, so that the documented
    ``--config configs/testset_smoke.yaml`` works from any folder; else ``path`` (its reader names it)."""
    candidate = Path(path)
    if candidate.exists() or candidate.suffix not in (".yaml", ".yml"):
        return candidate
    packaged = Path(str(resources.files("nni_latency") / "configs" / candidate.name))
    return packaged if packaged.is_file() else candidate


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML file; a missing file, bad YAML or a non-mapping is a one-line ValueError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"config {str(path)!r} cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config {str(path)!r} is not UTF-8 text (byte offset {error.start}); save it as UTF-8") \
            from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.constructor.ConstructorError as error:
        if str(error.problem).startswith("duplicate key"):
            raise ConfigError(f"config {str(path)!r} has a {error.problem}: YAML would keep the last one silently; "
                             "delete one of them") from None
        raise ConfigError(f"config {str(path)!r} is not valid YAML ({error.problem})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config {str(path)!r} is not valid YAML{at}") from None
    except RecursionError:
        raise ConfigError(f"config {str(path)!r} is nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(path)!r} must be a mapping of keys to values")
    return data


def load_config(path: str | os.PathLike, cls: type[T], overrides: Sequence[str] = ()) -> T:
    """Read a YAML file into dataclass ``cls``; every problem is a one-line ValueError naming the file."""
    data = apply_overrides(read_yaml(path), overrides)
    try:
        return config_from_dict(cls, data)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None
