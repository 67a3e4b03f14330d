"""What a command is pointed at: a network named ``path/to/file.py:callable`` or ``package.module:callable``,
and the input shape it runs on. Every problem is a one-line ``ValueError`` that says what to fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

from torch import nn

_logger = logging.getLogger(__name__)

__all__ = ["load_module_target", "load_target_object", "parse_input_shape"]

_FORM = "give path/to/file.py:callable or package.module:callable"


def parse_input_shape(text: str, dims: int | None = 4) -> tuple[int, ...]:
    """``"1,3,224,224"`` (or ``1x3x224x224``) -> ``(1, 3, 224, 224)``; ``dims``: how many sizes (None: any)."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    layout = "N,C,H,W" if dims == 4 else "comma-separated sizes"
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"input shape {text!r} is malformed: give positive integers as {layout}, e.g. 1,3,224,224")
    if dims is not None and len(shape) != dims:
        raise ValueError(f"input shape {text!r} has {len(shape)} size(s), {dims} are needed ({layout}), "
                         "e.g. 1,3,224,224")
    return shape


def _split(spec: str) -> tuple[str, str]:
    # rpartition keeps a Windows drive letter ("C:\\nets\\a.py:net") in the location part.
    location, sep, attribute = str(spec).strip().rpartition(":")
    if not sep or not location or not attribute:
        raise ValueError(f"target {spec!r} names no callable: {_FORM}")
    return location, attribute


def _is_file_location(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


@contextlib.contextmanager
def _on_sys_path(directory: Path) -> Iterator[None]:
    # A target file may import its sibling files, as it would when run as a script.
    entry = str(directory)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _import_file(location: str):
    path = Path(location).expanduser()
    if not path.is_file():
        raise ValueError(f"target file {location!r} does not exist; {_FORM}")
    resolved = path.resolve()
    # A stable, unique module name per file, registered so dataclasses and pickling-free reflection work.
    name = f"_nni_latency_target_{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ValueError(f"target file {location!r} cannot be loaded as Python; {_FORM}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _on_sys_path(resolved.parent):
            spec.loader.exec_module(module)
    except Exception as error:  # the user's code: any failure is reported, not raised raw
        sys.modules.pop(name, None)
        raise ValueError(f"importing target file {location!r} failed ({_first_line(error)})") from error
    return module


def _import_package_module(location: str):
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as error:
        missing = error.name or location
        if location == missing or location.startswith(missing + "."):
            raise ValueError(f"cannot import module {location!r} (no module named {missing!r}); check the "
                             "spelling, install its package, or give path/to/file.py:callable") from error
        raise ValueError(f"importing module {location!r} failed: it imports {missing!r}, which is not "
                         "installed") from error
    except Exception as error:
        raise ValueError(f"importing module {location!r} failed ({_first_line(error)})") from error


def _candidates(namespace: Any, limit: int = 8) -> str:
    names = [n for n, v in vars(namespace).items() if not n.startswith("_") and (
        isinstance(v, nn.Module) or (isinstance(v, type) and issubclass(v, nn.Module))
        or (callable(v) and getattr(v, "__module__", None) == getattr(namespace, "__name__", None)))]
    shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    return shown or "none"


def load_target_object(spec: str) -> Any:
    """The object ``spec`` names (a dotted attribute path is allowed after the colon), not yet called."""
    location, attribute = _split(spec)
    namespace = _import_file(location) if _is_file_location(location) else _import_package_module(location)
    value: Any = namespace
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ValueError(f"{location!r} has no attribute {attribute!r}; candidates there: {_candidates(namespace)}")
        value = getattr(value, part)
    return value


def load_module_target(spec: str) -> nn.Module:
    """The ``nn.Module`` that ``spec`` names: a module instance as is, or a class / factory called with no arguments."""
    target = load_target_object(spec)
    if isinstance(target, nn.Module):
        return target
    if not callable(target):
        raise ValueError(f"target {spec!r} is a value of type {type(target).__name__}, not an nn.Module "
                         "or a callable returning one")
    try:
        module = target()
    except Exception as error:  # the user's code
        raise ValueError(f"calling {spec}() failed ({_first_line(error)}); the callable must build the network "
                         "with no arguments") from error
    if not isinstance(module, nn.Module):
        raise ValueError(f"target {spec!r} returned a value of type {type(module).__name__}, not a torch.nn.Module")
    _logger.debug("loaded %s from %s", type(module).__name__, spec)
    return module

