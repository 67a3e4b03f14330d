"""Former names that still work for now: a module-level ``__getattr__`` that resolves each one to its new
home with a ``DeprecationWarning``. Look here to see what moved, and where to."""

from __future__ import annotations

import importlib
import logging
import warnings
from typing import Any, Callable, Mapping

_logger = logging.getLogger(__name__)

__all__ = ["deprecated_names"]


def deprecated_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``module``: ``moved`` maps each former name to ``"package.module:new_name"``."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, _, new_name = moved[name].partition(":")
        warnings.warn(f"{module}.{name} is deprecated; use {target}.{new_name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target), new_name)

    return __getattr__
