"""The zoo's registry: network name -> how to build it, what kind it is, and the paper it follows.

Network modules register their builders with ``@register``; ``names``/``get``/``build`` find them. The
modules of this package are imported on first lookup (``pkgutil``), so adding a network is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import did_you_mean

__all__ = ["ZooEntry", "KINDS", "register", "names", "get", "build"]

KINDS = ("cnn", "transformer", "hybrid")
_REGISTRY: dict[str, "ZooEntry"] = {}
_loaded = False


@dataclass(frozen=True)
class ZooEntry:
    """One reference network: ``builder(image_size=..., num_classes=...)`` returns a fresh ``nn.Module``."""

    name: str
    builder: Callable[..., nn.Module]
    kind: str
    paper: str
    input_size: int = 224  # the resolution the paper evaluates at

    def build(self, image_size: int | None = None, num_classes: int = 1000) -> nn.Module:
        return self.builder(image_size=image_size or self.input_size, num_classes=num_classes)

    def input_shape(self, batch: int = 1, image_size: int | None = None) -> tuple[int, int, int, int]:
        size = image_size or self.input_size
        return (batch, 3, size, size)


def register(name: str, *, kind: str, paper: str, input_size: int = 224):
    """Decorator: add ``builder(image_size, num_classes) -> nn.Module`` to the zoo under ``name``."""
    if kind not in KINDS:
        raise ValueError(f"zoo kind {kind!r} is not one of {', '.join(KINDS)}")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"zoo network {name!r} is registered twice")
        _REGISTRY[name] = ZooEntry(name, builder, kind, paper, input_size)
        return builder

    return decorate


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name != "registry":
            importlib.import_module(f"{__package__}.{info.name}")
    _loaded = True


def names(kind: str | None = None) -> list[str]:
    """Registered network names (of one ``kind`` if given), sorted."""
    _load_all()
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown zoo kind {kind!r}: use one of {', '.join(KINDS)}")
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def get(name: str) -> ZooEntry:
    """The entry of ``name``; a one-line ``ValueError`` lists the names when it does not exist."""
    _load_all()
    if name not in _REGISTRY:
        guess = did_you_mean(name, _REGISTRY)
        raise ValueError(f"no zoo network named {name!r}{guess}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build(name: str, image_size: int | None = None, num_classes: int = 1000) -> nn.Module:
    """A fresh instance of zoo network ``name`` (random weights, train mode as torch builds it)."""
    return get(name).build(image_size, num_classes)
