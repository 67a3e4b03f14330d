"""What a command is pointed at: a network named ``path/to/file.py:callable``, ``package.module:callable``,
``zoo:NAME`` (a reference network of ``nni_latency.zoo``) or ``hf:NAME`` (an HF ``transformers`` model of
``nni_latency.zoo.hf``), and the input shape it runs on. Every problem is
a one-line ``ValueError`` that says what to fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from torch import nn

from ..count.forward_checks import SHAPE_SEPARATOR, forward_inputs
from ..errors import InvalidInput, first_line

_logger = logging.getLogger(__name__)

__all__ = ["load_module_target", "load_target_object", "parse_input_shape", "default_input_shape", "expected_input",
           "load_network", "input_hint", "ZOO_PREFIX"]

_FORM = "give path/to/file.py:callable, package.module:callable, zoo:NAME or hf:NAME"
ZOO_PREFIX = "zoo:"


def parse_input_shape(text: str, dims: int | None = 4) -> tuple[int, ...]:
    """``"1,3,224,224"`` (or ``1x3x224x224``) -> ``(1, 3, 224, 224)``; ``dims``: how many sizes (None: any, as
    for a network, which may take an image N,C,H,W or tokens B,N,C and says itself whether a shape fits). A dtype
    after a colon (``1,64:int64``: token ids) gives a ``count.inputs.InputSpec``, the shape with its dtype."""
    from ..count.inputs import parse_input

    layout = "N,C,H,W" if dims == 4 else "comma-separated sizes, N,C,H,W for an image or B,N,C for tokens"
    try:
        shape = parse_input(text)
    except InvalidInput as error:
        if "unknown dtype" in str(error):
            raise
        raise InvalidInput(f"input shape {text!r} is malformed: give positive integers as {layout}, e.g. 1,3,224,224"
                           + ("" if dims == 4 else " (or 1,64:int64 for token ids)")) from None
    if dims is not None and len(shape) != dims:
        raise InvalidInput(f"input shape {text!r} has {len(shape)} size(s), {dims} are needed ({layout}), "
                         "e.g. 1,3,224,224")
    return shape if shape.dtype is not None else tuple(shape)


def _split(spec: str) -> tuple[str, str]:
    # rpartition keeps a Windows drive letter ("C:\\nets\\a.py:net") in the location part.
    location, sep, attribute = str(spec).strip().rpartition(":")
    if not sep or not location or not attribute:
        raise InvalidInput(f"target {spec!r} names no callable: {_FORM}")
    return location, attribute


def _is_file_location(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


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
        raise InvalidInput(f"target file {location!r} does not exist; {_FORM}")
    resolved = path.resolve()
    # A stable, unique module name per file, registered so dataclasses and pickling-free reflection work.
    name = f"_nni_latency_target_{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"target file {location!r} cannot be loaded as Python; {_FORM}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _on_sys_path(resolved.parent):
            spec.loader.exec_module(module)
    except Exception as error:  # the user's code: any failure is reported, not raised raw
        sys.modules.pop(name, None)
        raise InvalidInput(f"importing target file {location!r} failed ({first_line(error, with_type=True)})") from error
    return module


def _import_package_module(location: str):
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as error:
        missing = error.name or location
        if location == missing or location.startswith(missing + "."):
            raise InvalidInput(f"cannot import module {location!r} (no module named {missing!r}); check the "
                             "spelling, install its package, or give path/to/file.py:callable") from error
        raise InvalidInput(f"importing module {location!r} failed: it imports {missing!r}, which is not "
                         "installed") from error
    except Exception as error:
        raise InvalidInput(f"importing module {location!r} failed ({first_line(error, with_type=True)})") from error


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
            raise InvalidInput(f"{location!r} has no attribute {attribute!r}; candidates there: {_candidates(namespace)}")
        value = getattr(value, part)
    return value


def _zoo_entry(spec: str):
    from .. import zoo  # only zoo targets import the zoo's 53 networks

    return zoo.get(str(spec).strip()[len(ZOO_PREFIX):])


def _is_zoo(spec: str) -> bool:
    return str(spec).strip().startswith(ZOO_PREFIX)


def _hf_entry(spec: str):
    from ..zoo import hf as hf_models  # imports transformers only when the model is built

    return hf_models.get(spec)


def _is_hf(spec: str) -> bool:
    return str(spec).strip().startswith("hf:")


def _named_entry(spec: str):
    """The registry entry of a ``zoo:`` or ``hf:`` target (both build at their own resolution), else None."""
    return _zoo_entry(spec) if _is_zoo(spec) else _hf_entry(spec) if _is_hf(spec) else None


def default_input_shape(spec: str) -> tuple[int, ...] | None:
    """The input a target is meant for, when it says (a zoo or HF network: its own resolution); else None."""
    entry = _named_entry(spec)
    return tuple(entry.input_shape()) if entry is not None else None


def load_module_target(spec: str, input_shape: Sequence[int] | None = None) -> nn.Module:
    """The ``nn.Module`` that ``spec`` names: a module instance as is, a class / factory called with no arguments,
    or ``zoo:NAME`` / ``hf:NAME``, built for ``input_shape``'s resolution when given (a ViT's position table
    depends on it)."""
    entry = _named_entry(spec)
    if entry is not None:
        size = int(input_shape[-1]) if input_shape is not None and len(input_shape) == 4 else None
        try:
            return entry.build(image_size=size)
        except ValueError as error:
            raise InvalidInput(f"network {str(spec).strip()!r} cannot be built for input {_join(input_shape)} "
                             f"({error}); it takes {_join(entry.input_shape())} by default") from None
    target = load_target_object(spec)
    if isinstance(target, nn.Module):
        return target
    if not callable(target):
        raise InvalidInput(f"target {spec!r} is a value of type {type(target).__name__}, not an nn.Module "
                         "or a callable returning one")
    try:
        module = target()
    except Exception as error:  # the user's code
        raise InvalidInput(f"calling {spec}() failed ({first_line(error, with_type=True)}); the callable must build "
                         "the network with no arguments") from error
    if not isinstance(module, nn.Module):
        raise InvalidInput(f"target {spec!r} returned a value of type {type(module).__name__}, not a torch.nn.Module")
    _logger.debug("loaded %s from %s", type(module).__name__, spec)
    return module


def _join(shape: Sequence[int] | None) -> str:
    return ",".join(str(int(d)) for d in shape) if shape is not None else "?"


def expected_input(module: nn.Module, spec: str | None = None) -> str | None:
    """What input ``module`` takes, for an error message: a zoo network's own shape, else read from its first
    layer with weights (a convolution takes an image N,C,H,W; a linear layer or a layer norm takes tokens
    B,N,C). None when that layer says nothing about it."""
    if spec is not None and (_is_zoo(spec) or _is_hf(spec)):
        return f"an image {_join(default_input_shape(spec))} (N,C,H,W)"
    for layer in module.modules():
        if isinstance(layer, (nn.Embedding, nn.EmbeddingBag)):
            from ..count.inputs import integer_bound

            return (f"token ids B,N, integers (e.g. --input-shape 1,128:int64; they are drawn in "
                    f"0..{integer_bound(module) - 1}, below every embedding's num_embeddings)")
        if isinstance(layer, nn.modules.conv._ConvNd):
            spatial = ",".join("HWD"[: len(layer.kernel_size)])
            example = ",".join(["1", str(layer.in_channels)] + ["224"] * len(layer.kernel_size))
            return f"an image N,{layer.in_channels},{spatial} (e.g. {example})"
        if isinstance(layer, (nn.Linear, nn.LayerNorm)):
            width = layer.in_features if isinstance(layer, nn.Linear) else layer.normalized_shape[-1]
            return f"tokens B,N,{width} (e.g. 1,196,{width})"
        if isinstance(layer, (nn.BatchNorm2d, nn.GroupNorm)):
            channels = layer.num_features if isinstance(layer, nn.BatchNorm2d) else layer.num_channels
            return f"an image N,{channels},H,W (e.g. 1,{channels},224,224)"
    return None


def load_network(spec: str, shape_text: str | None) -> tuple[nn.Module, tuple[int, ...]]:
    """The network ``spec`` names and the input it runs on: ``shape_text`` (any rank: an image N,C,H,W or
    tokens B,N,C; the network says whether it fits), else a zoo or HF network's own shape."""
    if _named_entry(spec) is None:
        _split(spec)  # a malformed target is named before a missing shape
    if shape_text and SHAPE_SEPARATOR in shape_text:  # one shape per input of a forward that takes several
        shape = tuple(parse_input_shape(part, dims=None) for part in shape_text.split(SHAPE_SEPARATOR))
    else:
        shape = parse_input_shape(shape_text, dims=None) if shape_text else default_input_shape(spec)
    if shape is None:
        raise InvalidInput("give --input-shape, e.g. 1,3,224,224 for an image, 1,196,192 for tokens or 1,128:int64 "
                           "for token ids")
    return load_module_target(spec, shape), shape


def input_hint(module: nn.Module, spec: str | None = None) -> str | None:
    """``"Net takes an image N,3,H,W (...)"``, to follow a "does not fit" error; None when unknown."""
    takes = forward_inputs(module)  # several inputs or a dict: what to give, before any guess from its layers
    if takes:
        return f"{type(module).__name__}'s {takes}"
    expected = expected_input(module, spec)
    return f"{type(module).__name__} takes {expected}" if expected else None
