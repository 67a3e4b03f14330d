"""Former names and module paths that still work for now, each with a ``DeprecationWarning`` saying where it moved:
look here to see what moved, and where to.

* ``deprecated_names(module, moved)``: a module-level ``__getattr__`` resolving former names of a module.
* ``MOVED_MODULES``: the modules of the flat layout (before version 0.2) and the subpackages that now hold their
  names. ``install_moved_modules`` lets ``import nni_latency.features`` (and ``from nni_latency.timing import
  measure_latency``) keep working: the former module is a stand-in whose names resolve in the new modules, and
  importing it warns once.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import types
import warnings
from typing import Any, Callable, Mapping

_logger = logging.getLogger(__name__)

__all__ = ["deprecated_names", "MOVED_MODULES", "install_moved_modules"]

_PACKAGE = __name__.rpartition(".")[0]

# former module (relative to the package) -> the modules that hold its names now, searched in order
MOVED_MODULES: dict[str, tuple[str, ...]] = {
    "blocks": ("suite.blocks",),
    "cell_ops": ("suite.cell_ops",),
    "commands": ("cli.commands",),
    "config": ("suite.config", "files.config"),
    "coverage": ("model.coverage",),
    "dataset": ("rows.store", "rows.ops"),
    "drift": ("measure.drift",),
    "evaluation": ("evaluate.blocks",),
    "features": ("count.features", "count.inputs", "runtimes.torch.counting", "runtimes.torch.operators",
                 "count.roles"),
    "fileio": ("files.fileio",),
    "forward_checks": ("count.forward_checks",),
    "hf_models": ("zoo.hf",),
    "hostload": ("measure.hostload",),
    "locking": ("files.locking",),
    "meta_counting": ("runtimes.torch.meta",),
    "metrics": ("fit.metrics",),
    "microbench": ("profile.run", "rows.store", "suite.sampling", "measure.rounds", "fit.fitting"),
    "network": ("analysis.network",),
    "network_evaluation": ("evaluate.networks",),
    "network_selection": ("evaluate.selection",),
    "op_classes": ("analysis.op_errors",),
    "op_timing": ("runtimes.torch.clock", "runtimes.base"),
    "operators": ("runtimes.torch.operators", "runtimes.base"),
    "outputs": ("files.outputs",),
    "parts": ("analysis.parts",),
    "profiling": ("profile.run", "runtimes.torch.device"),
    "progress": ("measure.progress",),
    "protocol": ("runtimes.protocol",),
    "quiet": ("cli.quiet",),
    "regressors": ("model.regressors",),
    "resume": ("rows.resume", "rows.store"),
    "rounds": ("measure.rounds", "rows.store"),
    "rowcheck": ("rows.check",),
    "schema": ("model.schema",),
    "summary": ("profile.summary",),
    "targets": ("cli.targets",),
    "testset": ("evaluate.testset",),
    "timing": ("measure.latency", "runtimes.measurement", "measure.allocator", "runtimes.torch.timing",
               "runtimes.torch.device"),
    "tokens": ("suite.tokens",),
}


def deprecated_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``module``: ``moved`` maps each former name to ``"package.module:new_name"``."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, _, new_name = moved[name].partition(":")
        warnings.warn(f"{module}.{name} is deprecated; use {target}.{new_name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target), new_name)

    return __getattr__


class _MovedModule(types.ModuleType):
    """A former module: each name resolves in the first new module that has it."""

    def __init__(self, name: str, homes: tuple[str, ...]):
        super().__init__(name, f"Moved to {', '.join(homes)}.")
        self.__homes = homes

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        for home in self.__homes:
            module = importlib.import_module(home)
            if hasattr(module, attribute):
                return getattr(module, attribute)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attribute!r} (it moved to "
                             f"{', '.join(self.__homes)})")


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the former modules of ``MOVED_MODULES`` (consulted only after the real ones were not found)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        former = fullname.removeprefix(_PACKAGE + ".")
        if fullname.startswith(_PACKAGE + ".") and former.partition(".")[0] in MOVED_MODULES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=former in ("commands",))
        return None

    def create_module(self, spec):
        former = spec.name.removeprefix(_PACKAGE + ".")
        head, _, rest = former.partition(".")
        homes = tuple(f"{_PACKAGE}.{home}" + (f".{rest}" if rest else "") for home in MOVED_MODULES[head])
        warnings.warn(f"{spec.name} moved to {homes[0]}; import it from there (the former path will be removed)",
                      DeprecationWarning, stacklevel=_import_stacklevel())
        if rest:  # a submodule of a moved package: the new module itself
            return importlib.import_module(homes[0])
        return _MovedModule(spec.name, homes)

    def exec_module(self, module) -> None:
        pass


def _import_stacklevel() -> int:
    """The stack level of the ``import`` statement that asked for a former module, past importlib's frames."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                 or frame.f_globals.get("__name__") == __name__):
        frame, level = frame.f_back, level + 1
    return level


def install_moved_modules() -> None:
    """Let the former module paths import (once per process; idempotent)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
