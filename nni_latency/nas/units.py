"""What the profiler runs for real: a space is cut into *units* (modules without choices, leaf mutable modules
and InputChoices), each unit stands in for itself during NNI's shape inference (``UnitShim``), and every
distinct input of a unit is enumerated over the labels it depends on, its features counted at each combination.
The functional code of containers (a residual add, a flatten) is tabulated the same way (``glue_table``).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from nni.mutable import Mutable
from nni.nas.nn.pytorch import Cell, InputChoice, ModelSpace, MutableModule, Repeat
from nni.nas.nn.pytorch.base import recursive_freeze
from nni.nas.profiler.pytorch.utils import profiler_leaf_module
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from ..count.features import UncoveredOperatorWarning
from ..count.inputs import failure_details, make_inputs, module_device_dtype
from ..count.signature import module_signature
from ..errors import InvalidInput, first_line
from ..model.model import LatencyModel
from .cells import CellShim, check_stage
from .label_tables import LabelSpace, reduce_table, table_expression
from .loose import adapt_input_widths
from .shape_formulas import extra_shape_formulas, quiet_nni_shape_logs
from .structure import FALLBACK_HINT, SpaceError, called_parts, count_with_parts, feature_row, is_container

_logger = logging.getLogger(__name__)

__all__ = ["SpaceError", "UnitCall", "UnitShim", "SpaceAnalysis", "FALLBACK_HINT"]

_SHAPE_CHECK_SAMPLES = 32  # random full samples that confirm a shape dimension's reduced table
_GLUE_CHECK_SAMPLES = 2    # ... and a container's own ops' (each check freezes and runs the container)
@dataclass
class UnitCall:
    """One distinct input of one unit: features and output shapes over the labels they depend on."""

    labels: tuple[str, ...]                 # label axes of ``features`` (the unit's own + its input shape's)
    features: np.ndarray                    # (*sizes, len(model.feature_names))
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
        plain = tree_map(lambda a: a.elem if isinstance(a, ShapeTensor) else a, list(args))
        # A strided view (a channel shuffle's) makes the next op copy it first: counted inputs keep the layout.
        object.__setattr__(self, "_contiguous", tuple(t.is_contiguous() for t in tree_flatten(plain)[0]
                                                      if isinstance(t, torch.Tensor)))
        output = self._analysis.run_real(self._name, self.unit, plain)
        flat, spec = tree_flatten(output)
        object.__setattr__(self, "_output_structure", ([isinstance(t, torch.Tensor) for t in flat], spec))
        return tree_unflatten([ShapeTensor(t) if isinstance(t, torch.Tensor) else t for t in flat], spec)

    def _shape_forward(self, *args):
        # NNI looks this up on the class as the module's shape formula: ``formula(module, *inputs)``.
        shapes = iter(self._analysis.unit_output_shapes(self, args))
        is_tensor, spec = self._output_structure
        return tree_unflatten([next(shapes) if tensor else None for tensor in is_tensor], spec)


def mismatch_message(name: str, module: nn.Module, shapes, error: Exception) -> str:
    shape_text = " and ".join(str(s) for s in shapes) or "its inputs"
    return (f"module {name!r} ({type(module).__name__}) fails on input {shape_text}: {failure_details(module, error)}; "
            "check that the example input has the shape the space expects (batch, channels, height, width)")


def _tensor_shapes(args: Any) -> list[tuple]:
    return [tuple(t.shape) for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)]


class SpaceAnalysis:
    """Runs the units of a space for real under NNI's shape inference, then folds them into terms."""

    def __init__(self, space: ModelSpace, labels: LabelSpace, model: LatencyModel, max_combinations: int):
        self.space = space
        self.labels = labels
        self.model = model
        self.counter = model.counter()
        self.names = model.feature_names
        self.max_combinations = max_combinations
        self.with_choices = _modules_with_choices(space)
        self.calls: dict[int, dict[str, Any]] = {}          # id(shim) -> input key -> UnitCall (or a cell's)
        self.module_shapes: dict[str, tuple] = {}             # qualified name -> (input, output) shape info
        self.shims: dict[int, nn.Module] = {}                # id(unit) -> shim
        self._feature_cache: dict[tuple, tuple[np.ndarray, tuple, dict]] = {}
        self._frozen_cache: dict[tuple, nn.Module] = {}
        self._shape_cache: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        self.op_cache: dict[tuple, tuple] = {}                # (module signature, input shape) -> a cell op's cost
        self.cell_cache: dict[tuple, Any] = {}                # (cell signature, input shapes) -> its CellCall
        self._glue_cache: dict[tuple, np.ndarray | None] = {}  # (container, sample) -> its own ops' features
        self.forward_passes = 0

    # -- classification ----------------------------------------------------------------------------

    def is_unit(self, module: nn.Module) -> bool:
        if isinstance(module, InputChoice):
            return True  # a leaf choice: the reduction of the inputs it chooses
        if is_container(module):
            return False
        if id(module) not in self.with_choices:
            return True
        # A leaf mutable module (ParametrizedModule such as MutableConv2d, or a custom MutableModule).
        return isinstance(module, MutableModule) and not isinstance(module, ModelSpace)

    def make_shim(self, module: nn.Module, path: str) -> nn.Module | None:
        """The stand-in of ``module`` during shape inference, or None to look inside it."""
        if isinstance(module, Cell):
            return CellShim(module, path, self)
        return UnitShim(module, path, self) if self.is_unit(module) else None

    # -- shape inference with shims ------------------------------------------------------------------

    def run_shape_inference(self, example: torch.Tensor) -> None:
        from nni.nas.profiler.pytorch.utils import ShapeTensor, submodule_input_output_shapes

        swapped: list[tuple[nn.Module, str, nn.Module]] = []

        def swap(parent: nn.Module, prefix: str) -> None:
            for child_name, child in list(parent.named_children()):
                path = f"{prefix}.{child_name}" if prefix else child_name
                if isinstance(child, Repeat):
                    check_stage(child, path)
                shim = self.shims.get(id(child)) or self.make_shim(child, path)
                if shim is not None:
                    self.shims[id(child)] = shim
                    parent._modules[child_name] = shim
                    swapped.append((parent, child_name, child))
                else:
                    swap(child, path)

        modes = {m: m.training for m in self.space.modules()}
        try:
            self.space.eval()
            swap(self.space, "")
            with quiet_nni_shape_logs(), extra_shape_formulas(self.space), warnings.catch_warnings():
                warnings.simplefilter("ignore", UncoveredOperatorWarning)  # reported once per op by the profiler
                self.module_shapes = submodule_input_output_shapes(self.space, ShapeTensor(example, True))
        except SpaceError:
            raise
        except (RuntimeError, ValueError, TypeError, AssertionError, KeyError, IndexError) as error:
            raise InvalidInput(
                f"NNI's shape inference failed between the blocks of {type(self.space).__name__} "
                f"({first_line(error)}); "
                "functional code in a container's forward needs an NNI shape formula: move it into a module "
                "(the profiler runs modules for real) or register one with "
                "nni.nas.profiler.pytorch.utils.register_shape_inference_formula") from error
        finally:
            for parent, child_name, child in reversed(swapped):
                parent._modules[child_name] = child
            for module, mode in modes.items():
                module.training = mode

    def run_real(self, name: str, module: nn.Module, args: Sequence[Any]) -> Any:
        """Run a unit on real tensors; a failure is a one-line SpaceError naming it and the input."""
        try:
            return module(*args)
        except (RuntimeError, ValueError, IndexError, TypeError) as error:
            raise SpaceError(mismatch_message(name, module, _tensor_shapes(args), error)) from error

    def input_shapes(self, name: str, args) -> tuple[list, Any]:
        """The (flattened) MutableShapes of a shim's arguments, and their structure."""
        from nni.nas.profiler.pytorch.utils import ShapeTensor

        flat, spec = tree_flatten(list(args))
        shapes = []
        for arg in flat:
            if not isinstance(arg, ShapeTensor):
                raise SpaceError(f"module {name!r} receives a non-tensor argument ({type(arg).__name__}); "
                                  "the profiler supports modules called with tensors (or lists of them) only")
            if arg.real_shape is None:
                raise SpaceError(
                    f"NNI could not infer the input shape of {name!r}: functional code before it has no NNI "
                    "shape formula; move that code into a module or register a formula with "
                    "nni.nas.profiler.pytorch.utils.register_shape_inference_formula")
            shapes.append(arg.real_shape)
        return shapes, spec

    def unit_output_shapes(self, shim: UnitShim, args) -> Any:
        shapes, spec = self.input_shapes(shim._name, args)
        key = repr((shapes, spec))
        calls = self.calls.setdefault(id(shim), {})
        if key not in calls:
            calls[key] = self._enumerate_unit(shim, shapes, spec, shim._contiguous)
        return self.output_shapes(shim._name, calls[key])

    def output_shapes(self, name: str, call: UnitCall) -> list:
        """A call's output shapes as MutableShapes whose dimensions switch on the labels they depend on."""
        from nni.nas.profiler.pytorch.utils import MutableShape

        sizes = self.labels.sizes(call.labels)
        first_outputs = next(iter(call.shapes.values()))[1]
        outputs = []
        for position, first in enumerate(first_outputs):
            dims = []
            for d in range(len(first)):
                table = np.zeros(sizes, dtype=np.int64)
                for index, (_, outs) in call.shapes.items():
                    if len(outs) != len(first_outputs) or len(outs[position]) != len(first):
                        raise SpaceError(f"module {name!r} returns outputs of different ranks for different "
                                          "choices; the profiler needs one output structure per module")
                    table[index] = outs[position][d]
                dim_labels, dim_table = reduce_table(call.labels, table)
                dims.append(table_expression(self.labels, dim_labels, dim_table, cast=int))
            outputs.append(MutableShape(*dims))
        return outputs

    # -- enumeration of one unit ----------------------------------------------------------------------

    def dimension_table(self, dim: Any) -> tuple[tuple[str, ...], np.ndarray]:
        """A shape dimension as a table over the labels it really depends on."""
        if isinstance(dim, int):
            return (), np.array(dim, dtype=np.int64)
        key = repr(dim)
        if key not in self._shape_cache:
            self._shape_cache[key] = self.relevant_table(dim.freeze, self.labels.sort(dim.simplify()),
                                                         "an input shape dimension", _SHAPE_CHECK_SAMPLES)
        return self._shape_cache[key]

    def relevant_table(self, evaluate, labels: Sequence[str], what: str, checks: int,
                       known: Mapping[tuple, np.ndarray] | None = None) -> tuple[tuple[str, ...], np.ndarray]:
        """``evaluate(sample)`` (a number or a feature row) tabulated over the labels that change it.

        An expression or a piece of code can mention many labels that never change it (padding that keeps the
        size, a width the code does not touch), so one label at a time from the default finds those that do;
        ``checks`` random samples confirm the table, else every label of ``labels`` is kept.
        """
        default = self.labels.default_sample()
        evaluated: dict[tuple, np.ndarray] = dict(known or {})

        def at(partial: Mapping[str, Any]) -> np.ndarray:
            point = tuple(sorted((label, self.labels.key(label, value)) for label, value in partial.items()))
            if point not in evaluated:
                evaluated[point] = np.asarray(evaluate({**default, **partial}))
            return evaluated[point]

        base = at({})
        relevant = [label for label in labels
                    if any(not np.array_equal(at(single), base) for _, single in self.labels.grid([label]))]
        table = self._fill(at, relevant, base.shape, what)
        rng = np.random.default_rng(0)
        for _ in range(checks if len(relevant) < len(labels) else 0):
            sample = self.labels.random_sample(rng)
            index = tuple(self.labels.position(label, sample[label]) for label in relevant)
            if not np.array_equal(np.asarray(evaluate(sample)), table[index]):
                relevant = list(labels)
                table = self._fill(at, relevant, base.shape, what)
                break
        return reduce_table(relevant, table)

    def _fill(self, at, labels: Sequence[str], value_shape: tuple, what: str) -> np.ndarray:
        count = math.prod(self.labels.sizes(labels))
        if count > self.max_combinations:
            raise SpaceError(f"{what} depends on {len(labels)} choices ({', '.join(labels)}) with {count} "
                              f"combinations, over max_combinations={self.max_combinations}; raise max_combinations, "
                              f"make the space's choices independent of each other, or use {FALLBACK_HINT}")
        table = np.zeros(self.labels.sizes(labels) + tuple(value_shape))
        for index, sample in self.labels.grid(labels):
            table[index] = at(sample)
        return table

    def shape_labels(self, shapes: Sequence[Any]) -> tuple[list, set]:
        """Per shape, its dimension tables; and the union of the labels they depend on."""
        dims = [[self.dimension_table(d) for d in shape] for shape in shapes]
        return dims, {label for shape_dims in dims for labels, _ in shape_dims for label in labels}

    def concrete_shapes(self, dims: list, sample: Mapping[str, Any]) -> tuple:
        return tuple(tuple(int(table[tuple(self.labels.position(l, sample[l]) for l in dim_labels)])
                           for dim_labels, table in shape_dims) for shape_dims in dims)

    def check_count(self, name: str, module: nn.Module, labels: Sequence[str]) -> None:
        count = math.prod(self.labels.sizes(labels))
        if count > self.max_combinations:
            raise SpaceError(
                f"module {name!r} ({type(module).__name__}) has {count} combinations of its choices and input shapes "
                f"(labels {', '.join(labels)}), over max_combinations={self.max_combinations}; raise "
                f"max_combinations, split it into smaller modules (e.g. make its choices LayerChoices), or use {FALLBACK_HINT}")

    def tabulate(self, fn, labels: Sequence[str], what: str, dtype=np.int64) -> np.ndarray:
        """``fn(sample)`` at every combination of ``labels`` (refused beyond ``max_combinations``)."""
        return self._fill(fn, labels, (), what).astype(dtype)

    def _enumerate_unit(self, shim: UnitShim, shapes: list, spec, contiguous: Sequence[bool]) -> UnitCall:
        unit, name = shim.unit, shim._name
        own = self.labels.sort(unit.simplify()) if isinstance(unit, Mutable) else ()
        dims, shape_labels = self.shape_labels(shapes)
        labels = self.labels.sort(set(own) | shape_labels)
        self.check_count(name, unit, labels)
        sizes = self.labels.sizes(labels)
        features = np.zeros(sizes + (len(self.names),))
        cases: dict[tuple[int, ...], tuple[tuple, tuple]] = {}
        uncovered: dict[str, str] = {}
        for index, sample in self.labels.grid(labels):
            concrete = self.concrete_shapes(dims, sample)
            frozen = adapt_input_widths(self.frozen(unit, own, sample), self.concrete_shapes(
                dims, self.labels.reference(sample)), concrete, lambda m, shapes: self.arguments(m, shapes, spec))
            row, outs, ops = self.features(name, frozen, concrete, spec, contiguous)
            features[index] = row
            cases[index] = (concrete, outs)
            for op in ops:
                uncovered.setdefault(op, name)
        return UnitCall(labels, features, cases, uncovered)

    def frozen(self, unit: nn.Module, own: Sequence[str], sample: Mapping[str, Any]) -> nn.Module:
        if not own:
            return unit
        values = tuple(self.labels.key(label, sample[label]) for label in own)
        key = (id(unit), values)
        if key not in self._frozen_cache:
            self._frozen_cache[key] = unit.freeze({label: sample[label] for label in own})
        return self._frozen_cache[key]

    def arguments(self, module: nn.Module, shapes: Sequence[tuple], spec, contiguous: Sequence[bool] = ()) -> list:
        """Random tensors of ``shapes`` in the argument structure ``spec``; strided views where ``contiguous``
        says the real input was one."""
        device, dtype = module_device_dtype(module)
        tensors = [make_inputs(shape, device=device, dtype=dtype)[0] for shape in shapes]
        tensors = [_strided(t) if i < len(contiguous) and not contiguous[i] else t for i, t in enumerate(tensors)]
        return tree_unflatten(tensors, spec) if spec is not None else tensors

    def features(self, name: str, module: nn.Module, shapes: tuple, spec, contiguous: Sequence[bool] = ()
                 ) -> tuple[np.ndarray, tuple, tuple]:
        key = (module_signature(module), shapes, repr(spec), tuple(contiguous))
        if key not in self._feature_cache:
            args = self.arguments(module, shapes, spec, contiguous)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UncoveredOperatorWarning)
                    counted, output = self.counter(module, tuple(args))
            except (RuntimeError, ValueError, IndexError, TypeError) as error:
                raise SpaceError(mismatch_message(name, module, shapes, error)) from error
            self.forward_passes += 1
            self._feature_cache[key] = (feature_row(counted, self.names), tuple(_tensor_shapes(output)), counted.uncovered)
        return self._feature_cache[key]

    # -- glue: functional code in the forward of containers ------------------------------------------

    def glue_table(self, container: nn.Module, name: str) -> tuple[tuple[str, ...], np.ndarray] | None:
        """Features of the ops a container runs itself (not in a child), over the labels they depend on.

        Those ops act on the container's inputs and its children's outputs, so they are tabulated over the
        labels of those shapes, each entry counted on the container frozen at that combination (the
        space's default for other labels).
        """
        if type(container).forward is nn.Sequential.forward or isinstance(container, (nn.ModuleList, nn.ModuleDict)):
            return None
        io = self.module_shapes.get(name)
        if io is None:
            _logger.debug("container %r never runs in the space's forward; it has no own ops", name or "<space>")
            return None
        inputs, spec = tree_flatten(list(io[0]))
        if any(not hasattr(shape, "freeze") for shape in inputs):
            _logger.debug("no input shape recorded for container %r; its own ops are not counted", name or "<space>")
            return None
        default = self.labels.default_sample()
        dims, _ = self.shape_labels(inputs)
        first = self._glue_at(container, name, dims, spec, default, frozen=False)
        if first is None or not first.any():
            return None  # code that runs no op at the default architecture runs none at any other
        touched = [io[1]] + [shapes for child in _called_children(container, name)
                             for shapes in self.module_shapes.get(child, ())]
        labels = set(self.shape_labels(inputs)[1])
        for shape in tree_flatten(touched)[0]:
            if hasattr(shape, "freeze"):
                labels |= self.shape_labels([shape])[1]

        def glue(sample):
            row = self._glue_at(container, name, dims, spec, sample, frozen=True)
            return np.zeros(len(self.names)) if row is None else row

        return self.relevant_table(glue, self.labels.sort(labels), f"the own ops of {name or '<space>'!r}",
                                   _GLUE_CHECK_SAMPLES, known={(): first})

    def _glue_at(self, container: nn.Module, name: str, dims: list, spec, sample: Mapping[str, Any],
                 frozen: bool) -> np.ndarray | None:
        key = (name, frozen, tuple(sorted((label, self.labels.key(label, value)) for label, value in sample.items()
                                          if label in self.labels.values)))
        if key not in self._glue_cache:  # a second walk (one per cost role) counts no container again
            self._glue_cache[key] = self._count_glue(container, name, dims, spec, sample, frozen)
        return self._glue_cache[key]

    def _count_glue(self, container: nn.Module, name: str, dims: list, spec, sample: Mapping[str, Any],
                    frozen: bool) -> np.ndarray | None:
        module = recursive_freeze(container, dict(sample))[0] if frozen and id(container) in self.with_choices \
            else container
        args = self.arguments(module, self.concrete_shapes(dims, sample), spec)
        try:
            total, calls, _ = count_with_parts(module, tuple(args), called_parts(module), self.counter)
        except (RuntimeError, ValueError, IndexError, TypeError) as error:
            _logger.debug("cannot run container %r at %s (%s); its own ops are not counted", name, sample, error)
            return None
        self.forward_passes += 1 + len(calls)
        children = sum((feature_row(features, self.names) for _, _, features in calls), np.zeros(len(self.names)))
        return np.maximum(feature_row(total, self.names) - children, 0.0)


def _strided(tensor: torch.Tensor) -> torch.Tensor:
    """A non-contiguous view of a tensor's shape (what an op copies before it reads, as it would the real input):
    every other element of a tensor twice as long along its last dimension of size > 1."""
    dims = [d for d in range(tensor.dim()) if tensor.shape[d] > 1]
    if not dims:
        return tensor
    return torch.cat([tensor, tensor], dim=dims[-1]).narrow(dims[-1], 0, 2 * tensor.shape[dims[-1]] - 1)[
        (slice(None),) * dims[-1] + (slice(None, None, 2),)]


def _called_children(container: nn.Module, name: str) -> list[str]:
    def walk(module: nn.Module, prefix: str) -> list[str]:
        names = []
        for child_name, child in module.named_children():
            path = f"{prefix}.{child_name}" if prefix else child_name
            names.extend(walk(child, path) if isinstance(child, (nn.ModuleList, nn.ModuleDict)) else [path])
        return names

    return walk(container, name)


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
