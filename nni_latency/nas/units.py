"""What the profiler runs for real: a space is cut into *units* (modules without choices, and leaf mutable
modules), each unit stands in for itself during NNI's shape inference (``UnitShim``), and every distinct
input of a unit is enumerated over the labels it depends on, its features counted at each combination.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from nni.mutable import Mutable
from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace, MutableModule, Repeat
from nni.nas.profiler.pytorch.utils import profiler_leaf_module

from ..features import (FEATURE_NAMES, BlockFeatures, UncoveredOperatorWarning, failure_details, first_line,
                        make_inputs, module_device_dtype, run_counted)
from ..model import LatencyModel
from .tables import LabelSpace, hashable, reduce_table, table_expression

_logger = logging.getLogger(__name__)

__all__ = ["SpaceError", "UnitCall", "UnitShim", "SpaceAnalysis"]

_SHAPE_CHECK_SAMPLES = 32  # random full samples that confirm a shape dimension's reduced table


class SpaceError(ValueError):
    """A problem found while analysing the space; raised to the user unchanged."""


@dataclass
class UnitCall:
    """One distinct input of one unit: features and output shapes over the labels they depend on."""

    labels: tuple[str, ...]                 # label axes of ``features`` (the unit's own + its input shape's)
    features: np.ndarray                    # (*sizes, len(FEATURE_NAMES))
    shapes: dict[tuple[int, ...], tuple[tuple, tuple]]  # label index -> (input shapes, output shapes)
    uncovered: dict[str, str] = field(default_factory=dict)  # aten op -> unit name


@profiler_leaf_module  # NNI's default leaf test then stops at shims too (nested formulas drop ``is_leaf``)
class UnitShim(nn.Module):
    """Stands in for a unit during NNI's shape inference: runs it for real and answers its output shapes."""

    def __init__(self, unit: nn.Module, name: str, analysis: SpaceAnalysis):
        super().__init__()
        self.unit = unit
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_analysis", analysis)

    def forward(self, *args, **kwargs):
        from nni.nas.profiler.pytorch.utils import ShapeTensor

        if kwargs:
            raise SpaceError(f"module {self._name!r} is called with keyword arguments, which the profiler does "
                              "not support; pass tensors positionally")
        plain = [a.elem if isinstance(a, ShapeTensor) else a for a in args]
        try:
            output = self.unit(*plain)
        except (RuntimeError, ValueError, IndexError, TypeError) as error:
            shapes = [tuple(t.shape) for t in plain if isinstance(t, torch.Tensor)]
            raise SpaceError(_mismatch_message(self._name, self.unit, shapes, error)) from error
        flat, spec = tree_flatten(output)
        object.__setattr__(self, "_output_structure", ([isinstance(t, torch.Tensor) for t in flat], spec))
        return tree_unflatten([ShapeTensor(t) if isinstance(t, torch.Tensor) else t for t in flat], spec)

    def _shape_forward(self, *args):
        # NNI looks this up on the class as the module's shape formula: ``formula(module, *inputs)``.
        shapes = iter(self._analysis.unit_output_shapes(self, args))
        is_tensor, spec = self._output_structure
        return tree_unflatten([next(shapes) if tensor else None for tensor in is_tensor], spec)


def _mismatch_message(name: str, module: nn.Module, shapes, error: Exception) -> str:
    shape_text = " and ".join(str(s) for s in shapes) or "its inputs"
    return (f"module {name!r} ({type(module).__name__}) fails on input {shape_text}: {failure_details(module, error)}; "
            "check that the example input has the shape the space expects (batch, channels, height, width)")


def _signature(module: nn.Module) -> tuple:
    """What determines the ops a module runs: types, scalar attributes and parameter shapes, per submodule."""
    parts = []
    for name, sub in module.named_modules():
        attrs = []
        for key, value in sorted(vars(sub).items()):
            if key.startswith("_"):
                continue
            if isinstance(value, (bool, int, float, str, type(None))) or (
                    isinstance(value, tuple) and all(isinstance(v, (bool, int, float, str)) for v in value)):
                attrs.append((key, value))
            elif callable(value) and not isinstance(value, nn.Module):
                attrs.append((key, getattr(value, "__qualname__", type(value).__qualname__)))
        tensors = tuple((n, tuple(t.shape), str(t.dtype))
                        for n, t in itertools.chain(sub.named_parameters(recurse=False),
                                                    sub.named_buffers(recurse=False)) if t is not None)
        parts.append((name, type(sub).__module__, type(sub).__qualname__, tuple(attrs), tensors))
    return tuple(parts)


class SpaceAnalysis:
    """Runs the units of a space for real under NNI's shape inference, then folds them into terms."""

    def __init__(self, space: ModelSpace, labels: LabelSpace, model: LatencyModel, max_combinations: int):
        self.space = space
        self.labels = labels
        self.model = model
        self.vector_width = model.vector_width
        self.max_combinations = max_combinations
        self.with_choices = _modules_with_choices(space)
        self.calls: dict[int, dict[str, UnitCall]] = {}      # id(shim) -> input key -> call
        self.container_inputs: dict[int, tuple] = {}          # id(container) -> input MutableShapes
        self.shims: dict[int, UnitShim] = {}                 # id(unit) -> shim
        self._feature_cache: dict[tuple, tuple[np.ndarray, tuple, dict]] = {}
        self._frozen_cache: dict[tuple, nn.Module] = {}
        self._shape_cache: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        self.forward_passes = 0

    # -- classification ----------------------------------------------------------------------------

    def is_unit(self, module: nn.Module) -> bool:
        if isinstance(module, (LayerChoice, Repeat, InputChoice)):
            return False
        if id(module) not in self.with_choices:
            return True
        # A leaf mutable module (ParametrizedModule such as MutableConv2d, or a custom MutableModule).
        return isinstance(module, MutableModule) and not isinstance(module, ModelSpace)

    # -- shape inference with shims ------------------------------------------------------------------

    def run_shape_inference(self, example: torch.Tensor) -> None:
        from nni.nas.profiler.pytorch.utils import ShapeTensor, submodule_input_output_shapes

        swapped: list[tuple[nn.Module, str, nn.Module]] = []
        hooks = []

        def swap(parent: nn.Module, prefix: str) -> None:
            for child_name, child in list(parent.named_children()):
                path = f"{prefix}.{child_name}" if prefix else child_name
                if self.is_unit(child):
                    shim = self.shims.get(id(child)) or UnitShim(child, path, self)
                    self.shims[id(child)] = shim
                    parent._modules[child_name] = shim
                    swapped.append((parent, child_name, child))
                else:
                    hooks.append(child.register_forward_pre_hook(self._record_container_input))
                    swap(child, path)

        modes = {m: m.training for m in self.space.modules()}
        try:
            self.space.eval()
            swap(self.space, "")
            hooks.append(self.space.register_forward_pre_hook(self._record_container_input))
            with _quiet_nni_shape_logs(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UncoveredOperatorWarning)  # reported once per op by the profiler
                submodule_input_output_shapes(self.space, ShapeTensor(example, True))
        except SpaceError:
            raise
        except (RuntimeError, ValueError, TypeError, AssertionError, KeyError, IndexError) as error:
            raise ValueError(
                f"NNI's shape inference failed between the blocks of {type(self.space).__name__} "
                f"({first_line(error)}); "
                "functional code in a container's forward needs an NNI shape formula: move it into a module "
                "(the profiler runs modules for real) or register one with "
                "nni.nas.profiler.pytorch.utils.register_shape_inference_formula") from error
        finally:
            for handle in hooks:
                handle.remove()
            for parent, child_name, child in reversed(swapped):
                parent._modules[child_name] = child
            for module, mode in modes.items():
                module.training = mode

    def _record_container_input(self, module: nn.Module, args) -> None:
        from nni.nas.profiler.pytorch.utils import ShapeTensor
        shapes = tuple(a.real_shape if isinstance(a, ShapeTensor) else None for a in args)
        self.container_inputs.setdefault(id(module), shapes)

    def unit_output_shapes(self, shim: UnitShim, args) -> Any:
        from nni.nas.profiler.pytorch.utils import MutableShape, ShapeTensor

        shapes = []
        for arg in args:
            if not isinstance(arg, ShapeTensor):
                raise SpaceError(f"module {shim._name!r} receives a non-tensor argument ({type(arg).__name__}); "
                                  "the profiler supports modules called with tensors only")
            if arg.real_shape is None:
                raise SpaceError(
                    f"NNI could not infer the input shape of {shim._name!r}: functional code before it has no NNI "
                    "shape formula; move that code into a module or register a formula with "
                    "nni.nas.profiler.pytorch.utils.register_shape_inference_formula")
            shapes.append(arg.real_shape)
        key = repr(tuple(shapes))
        calls = self.calls.setdefault(id(shim), {})
        if key not in calls:
            calls[key] = self._enumerate_unit(shim, shapes)
        call = calls[key]
        sizes = self.labels.sizes(call.labels)
        first_outputs = next(iter(call.shapes.values()))[1]
        outputs = []
        for position, first in enumerate(first_outputs):
            dims = []
            for d in range(len(first)):
                table = np.zeros(sizes, dtype=np.int64)
                for index, (_, outs) in call.shapes.items():
                    if len(outs) != len(first_outputs) or len(outs[position]) != len(first):
                        raise SpaceError(f"module {shim._name!r} returns outputs of different ranks for different "
                                          "choices; the profiler needs one output structure per module")
                    table[index] = outs[position][d]
                dim_labels, dim_table = reduce_table(call.labels, table)
                dims.append(table_expression(self.labels, dim_labels, dim_table, cast=int))
            outputs.append(MutableShape(*dims))
        return outputs

    # -- enumeration of one unit ----------------------------------------------------------------------

    def _dimension_table(self, dim: Any) -> tuple[tuple[str, ...], np.ndarray]:
        """A shape dimension as a table over the labels it really depends on."""
        if isinstance(dim, int):
            return (), np.array(dim, dtype=np.int64)
        key = repr(dim)
        if key in self._shape_cache:
            return self._shape_cache[key]
        dim_labels = self.labels.sort(dim.simplify())
        default = self.labels.default_sample()
        # One label at a time finds the labels that change the value (padding that keeps the size, e.g.,
        # makes many labels appear in an expression that never changes); random samples confirm it.
        relevant = []
        for label in dim_labels:
            seen = {dim.freeze({**default, label: value}) for value in self.labels.values[label]}
            if len(seen) > 1:
                relevant.append(label)
        table = self._tabulate(lambda sample: dim.freeze({**default, **sample}), relevant, "an input shape dimension")
        rng = np.random.default_rng(0)
        if len(relevant) < len(dim_labels):
            for _ in range(_SHAPE_CHECK_SAMPLES):
                sample = self.labels.random_sample(rng)
                index = tuple(self.labels.index[label][hashable(sample[label])] for label in relevant)
                if dim.freeze(sample) != table[index]:
                    relevant = list(dim_labels)
                    table = self._tabulate(lambda s: dim.freeze({**default, **s}), relevant, "an input shape dimension")
                    break
        result = reduce_table(relevant, table)
        self._shape_cache[key] = result
        return result

    def _tabulate(self, fn, labels: Sequence[str], what: str, dtype=np.int64) -> np.ndarray:
        count = math.prod(self.labels.sizes(labels))
        if count > self.max_combinations:
            raise SpaceError(f"{what} depends on {len(labels)} choices ({', '.join(labels)}) with {count} "
                              f"combinations, over max_combinations={self.max_combinations}; raise max_combinations "
                              "or make the space's choices independent of each other")
        table = np.zeros(self.labels.sizes(labels), dtype=dtype)
        for index, sample in self.labels.grid(labels):
            table[index] = fn(sample)
        return table

    def _enumerate_unit(self, shim: UnitShim, shapes) -> UnitCall:
        unit, name = shim.unit, shim._name
        own = self.labels.sort(unit.simplify()) if isinstance(unit, Mutable) else ()
        dims = [[self._dimension_table(d) for d in shape] for shape in shapes]
        shape_labels = {label for shape_dims in dims for labels, _ in shape_dims for label in labels}
        labels = self.labels.sort(set(own) | shape_labels)
        count = math.prod(self.labels.sizes(labels))
        if count > self.max_combinations:
            raise SpaceError(
                f"module {name!r} ({type(unit).__name__}) has {count} combinations of its choices and input shapes "
                f"(labels {', '.join(labels)}), over max_combinations={self.max_combinations}; raise "
                "max_combinations or split it into smaller modules (e.g. make its choices LayerChoices)")
        sizes = self.labels.sizes(labels)
        features = np.zeros(sizes + (len(FEATURE_NAMES),))
        cases: dict[tuple[int, ...], tuple[tuple, tuple]] = {}
        uncovered: dict[str, str] = {}
        for index, sample in self.labels.grid(labels):
            concrete = tuple(
                tuple(int(table[tuple(self.labels.index[l][hashable(sample[l])] for l in dim_labels)])
                      for dim_labels, table in shape_dims)
                for shape_dims in dims)
            frozen = self._frozen(unit, own, sample)
            row, outs, ops = self._features(name, frozen, concrete)
            features[index] = row
            cases[index] = (concrete, outs)
            for op in ops:
                uncovered.setdefault(op, name)
        return UnitCall(labels, features, cases, uncovered)

    def _frozen(self, unit: nn.Module, own: Sequence[str], sample: Mapping[str, Any]) -> nn.Module:
        if not own:
            return unit
        values = tuple(hashable(sample[label]) for label in own)
        key = (id(unit), values)
        if key not in self._frozen_cache:
            self._frozen_cache[key] = unit.freeze({label: sample[label] for label in own})
        return self._frozen_cache[key]

    def _features(self, name: str, module: nn.Module, shapes: tuple) -> tuple[np.ndarray, tuple, tuple]:
        key = (_signature(module), shapes)
        if key not in self._feature_cache:
            device, dtype = module_device_dtype(module)
            inputs = tuple(make_inputs(shape, device=device, dtype=dtype)[0] for shape in shapes)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UncoveredOperatorWarning)
                    counted, output = run_counted(module, inputs, self.vector_width)
            except (RuntimeError, ValueError, IndexError, TypeError) as error:
                raise SpaceError(_mismatch_message(name, module, shapes, error)) from error
            self.forward_passes += 1
            flat, _ = tree_flatten(output)
            outs = tuple(tuple(t.shape) for t in flat if isinstance(t, torch.Tensor))
            row = np.array([getattr(counted, n) for n in FEATURE_NAMES], float)
            self._feature_cache[key] = (row, outs, counted.uncovered)
        return self._feature_cache[key]

    # -- glue: functional code in the forward of containers ------------------------------------------

    def glue_features(self, container: nn.Module, name: str) -> np.ndarray | None:
        """Features of the ops a container runs itself (not in a child), in the space's default architecture.

        Counted once, at the default architecture's shapes: such code is usually a residual add or a
        flatten whose cost barely changes across architectures.
        """
        if type(container).forward in (nn.Sequential.forward,) or isinstance(container, (nn.ModuleList, nn.ModuleDict)):
            return None
        shapes = self.container_inputs.get(id(container))
        if not shapes or any(s is None for s in shapes):
            _logger.debug("no input shape recorded for container %r; its own ops are not counted", name)
            return None
        default = self.labels.default_sample()
        concrete = [tuple(int(d.freeze(default)) if isinstance(d, Mutable) else int(d) for d in s) for s in shapes]
        device, dtype = module_device_dtype(container)
        inputs = tuple(make_inputs(shape, device=device, dtype=dtype)[0] for shape in concrete)
        recorded: list[tuple[nn.Module, tuple]] = []
        handles = [child.register_forward_pre_hook(lambda m, a: recorded.append((m, a)))
                   for child in container.children()]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UncoveredOperatorWarning)
                total, _ = run_counted(container, inputs, self.vector_width)
        except (RuntimeError, ValueError, IndexError, TypeError) as error:
            _logger.debug("cannot run container %r at its default shapes (%s); its own ops are not counted",
                          name, error)
            return None
        finally:
            for handle in handles:
                handle.remove()
        children = BlockFeatures()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncoveredOperatorWarning)
            for child, args in recorded:
                children = children + run_counted(child, tuple(args), self.vector_width)[0]
        glue = np.array([max(getattr(total, n) - getattr(children, n), 0.0) for n in FEATURE_NAMES])
        return glue if glue.any() else None


def _modules_with_choices(root: nn.Module) -> set[int]:
    """ids of the modules whose subtree holds at least one choice."""
    result: set[int] = set()

    def visit(module: nn.Module) -> bool:
        has = isinstance(module, MutableModule) and bool(module.mutables)
        for child in module.children():
            has = visit(child) or has
        if has:
            result.add(id(module))
        return has

    visit(root)
    return result


@contextlib.contextmanager
def _quiet_nni_shape_logs():
    # NNI warns for every aten op it has no formula for, even inside modules that answer with their own
    # shapes; the profiler reports real failures itself.
    logger = logging.getLogger("nni.nas.profiler.pytorch.utils.shape")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
