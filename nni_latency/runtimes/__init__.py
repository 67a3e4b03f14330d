"""The runtimes a device model can describe, one folder each behind one small interface (``base.Runtime``): eager
PyTorch (``torch``) and ONNX Runtime (``onnxruntime``, the optional ``[onnx]`` extra). What every runtime is told
(``protocol``: how to run and time a module) and what it answers (``measurement``) sit beside the interface.

``get_runtime(name)`` imports a runtime on first use; one whose packages are not installed is refused in one line
that names the extra to install. ``get_table(name)`` is a runtime's operator table alone (its ``operators``
module, plain data that needs none of the runtime's packages), which is all a fitted model needs to load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import InvalidInput, did_you_mean, require

if TYPE_CHECKING:
    from .base import OpTable, Runtime

__all__ = ["RUNTIMES", "DEFAULT_RUNTIME", "get_runtime", "get_table"]

DEFAULT_RUNTIME = "torch"
# name -> (module, class, the packages it needs beyond torch, the extra that installs them)
RUNTIMES: dict[str, tuple[str, str, tuple[str, ...], str | None]] = {
    "torch": (".torch", "TorchRuntime", (), None),
    "onnxruntime": (".onnxruntime", "OrtRuntime", ("onnxruntime", "onnx"), "onnx"),
}
_loaded: dict[str, "Runtime"] = {}


def get_runtime(name: str = DEFAULT_RUNTIME) -> "Runtime":
    """The runtime called ``name`` (one instance per process)."""
    if name not in RUNTIMES:
        raise InvalidInput(f"unknown runtime {name!r}{did_you_mean(name, RUNTIMES)}: use one of {', '.join(RUNTIMES)}")
    if name not in _loaded:
        module, cls, needs, extra = RUNTIMES[name]
        require(needs, extra or "", f"the {name} runtime")
        _loaded[name] = getattr(importlib.import_module(module, __name__), cls)()
    return _loaded[name]


def get_table(name: str = DEFAULT_RUNTIME) -> "OpTable":
    """The operator table of runtime ``name`` (``<runtime>.operators.TABLE``), without importing the runtime."""
    if name not in RUNTIMES:
        raise InvalidInput(f"unknown runtime {name!r}{did_you_mean(name, RUNTIMES)}: use one of {', '.join(RUNTIMES)}")
    return importlib.import_module(f"{RUNTIMES[name][0]}.operators", __name__).TABLE
