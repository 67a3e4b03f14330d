"""Every search space the package knows by name: ``FBNetSpace`` and the CNN and transformer spaces of NNI 3.0's hub
(``nni.nas.hub.pytorch``), each with its natural input size and with how it is costed.

``build_space(name, input_size, **arguments)`` checks the arguments against the space's constructor (a typo is
a one-line error naming the valid ones) and passes the input size to spaces that take it. ``profiler_for``
returns the right profiler: ``LatencyProfiler`` (latency tables: profile in microseconds, differentiable
FBNet term) or ``FrozenLatencyProfiler`` where the space's choices change shapes in ways tables cannot follow.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import InvalidInput, did_you_mean

_logger = logging.getLogger(__name__)

__all__ = ["SpaceEntry", "SPACES", "space_names", "space_entry", "build_space", "space_parameters", "profiler_for"]


@dataclass(frozen=True)
class SpaceEntry:
    """How to build one space and what it needs."""

    name: str
    factory: str                      # "module:attribute"
    input_size: int                   # the natural input resolution (32 for the CIFAR-style cell spaces)
    classes_argument: str | None      # the constructor argument for the number of classes (None: fixed at 10)
    tables: bool                      # LatencyProfiler covers it; False: FrozenLatencyProfiler
    input_argument: str | None = None  # the constructor argument that takes the input size, if any
    defaults: Mapping[str, Any] = field(default_factory=dict)  # deviations from NNI's defaults, and why
    why: str = ""


_NDS_DEFAULTS = {"num_cells": (8, 12, 16, 20)}
_NDS_WHY = ("NNI's default num_cells (4, 8, ..., 20) lets a stage hold one cell, which NDS wires differently when "
            "frozen; 8+ cells keep two per stage")

SPACES: dict[str, SpaceEntry] = {entry.name: entry for entry in [
    SpaceEntry("fbnet", "nni_latency.spaces.fbnet:FBNetSpace", 224, "num_classes", True, "input_size"),
    SpaceEntry("proxylessnas", "nni.nas.hub.pytorch:ProxylessNAS", 224, "num_labels", True),
    SpaceEntry("mobilenetv3", "nni.nas.hub.pytorch:MobileNetV3Space", 224, "num_labels", True),
    SpaceEntry("shufflenet", "nni.nas.hub.pytorch:ShuffleNetSpace", 224, "num_labels", True),
    SpaceEntry("autoformer", "nni.nas.hub.pytorch:AutoformerSpace", 224, "num_labels", True, "img_size"),
    SpaceEntry("darts", "nni.nas.hub.pytorch:DARTS", 32, None, True, defaults=_NDS_DEFAULTS, why=_NDS_WHY),
    SpaceEntry("pnas", "nni.nas.hub.pytorch:PNAS", 32, None, True, defaults=_NDS_DEFAULTS, why=_NDS_WHY),
    SpaceEntry("enas", "nni.nas.hub.pytorch:ENAS", 32, None, True, defaults=_NDS_DEFAULTS, why=_NDS_WHY),
    SpaceEntry("nasnet", "nni.nas.hub.pytorch:NASNet", 32, None, True, defaults=_NDS_DEFAULTS, why=_NDS_WHY),
    SpaceEntry("amoebanet", "nni.nas.hub.pytorch:AmoebaNet", 32, None, True, defaults=_NDS_DEFAULTS, why=_NDS_WHY),
    SpaceEntry("nasbench201", "nni.nas.hub.pytorch:NasBench201", 32, "num_labels", True),
    SpaceEntry("nasbench101", "nni.nas.hub.pytorch:NasBench101", 32, "num_labels", False,
               why="its cells allocate channels to vertices from the whole graph"),
]}


def space_names() -> list[str]:
    return list(SPACES)


def space_entry(name: str) -> SpaceEntry:
    """The entry of space ``name``; an unknown name is a one-line error listing the valid ones."""
    if name not in SPACES:
        hint = did_you_mean(name, SPACES)
        raise InvalidInput(f"unknown space {name!r}{hint}; use one of {', '.join(SPACES)}")
    return SPACES[name]


def _space_class(entry: SpaceEntry):
    module_name, attribute = entry.factory.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def space_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of space ``name`` (NNI keeps a ModelSpace's original ``__init__`` as
    ``_init_wrapped``)."""
    space_class = _space_class(space_entry(name))
    init = getattr(space_class, "_init_wrapped", None) or space_class.__init__
    return {p: v for p, v in inspect.signature(init).parameters.items() if p != "self"}


def check_arguments(name: str, arguments: Mapping[str, Any], where: str = "argument") -> None:
    """Every key of ``arguments`` must be a constructor argument of the space; numbers must stay numbers."""
    parameters = space_parameters(name)
    for key, value in arguments.items():
        if key not in parameters:
            hint = did_you_mean(key, parameters)
            raise InvalidInput(f"{name} has no {where} {key!r}{hint}; it accepts {', '.join(parameters)}")
        default = parameters[key].default
        if isinstance(default, (int, float)) and not isinstance(default, bool) and not (
                isinstance(value, (int, float)) and not isinstance(value, bool)):
            raise InvalidInput(f"{where} {key}={value!r} must be a number like its default {default!r}, e.g. "
                             f"{where} {key}={default!r}")


def build_space(name: str, input_size: int | None = None, num_classes: int | None = None, **arguments: Any):
    """Space ``name`` built with ``arguments`` (over the entry's defaults), for ``input_size`` pixels and
    ``num_classes`` outputs where the space takes them."""
    entry = space_entry(name)
    arguments = {**entry.defaults, **arguments}
    if entry.input_argument and input_size is not None:
        arguments.setdefault(entry.input_argument, input_size)
    if num_classes is not None:
        if entry.classes_argument is None:
            if num_classes != 10:
                raise InvalidInput(f"{name} has 10 outputs (NNI builds its CIFAR-style classifier with 10); use a "
                                 f"dataset with 10 classes, not {num_classes}")
        else:
            arguments.setdefault(entry.classes_argument, num_classes)
    check_arguments(name, arguments)
    try:
        return _space_class(entry)(**arguments)
    except (TypeError, ValueError, AssertionError) as error:
        given = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        raise InvalidInput(f"{name} rejected its arguments {given or '(none)'} ({error})") from None


def profiler_for(name: str, space, example_input, device_model, **kwargs):
    """``LatencyProfiler`` for a space its tables cover, else ``FrozenLatencyProfiler`` (see ``SpaceEntry.why``)."""
    if space_entry(name).tables:
        from ..nas.profiler import LatencyProfiler

        return LatencyProfiler(space, example_input, device_model, **kwargs)
    from ..nas.fallback import FrozenLatencyProfiler

    return FrozenLatencyProfiler(space, example_input, device_model, **kwargs)
