"""``LatencyProfiler``: an NNI ``ExpressionProfiler`` whose expression is the latency (ms) a device model
predicts for any architecture of a model space.

How it is built. The space is cut into *units*: modules without choices (the stem, a LayerChoice
candidate, the classifier) and leaf mutable modules (``MutableConv2d`` with a width choice, ...). Each
unit runs for real, once per distinct input shape it can receive and per combination of its own
choices, and its features are counted (``nni_latency.features``); so any code inside a unit works,
including code NNI's symbolic shape inference has no formula for. Shapes travel *between* units with
NNI's shape inference, each unit answering with the shapes its real forward produced, so a block whose
input width depends on an earlier choice sees every width it can get. ``LayerChoice`` becomes a switch
on its label and ``Repeat`` a sum guarded by ``depth >= d``, as in NNI's nn-Meter profiler.

The result is a sum of small tables (``LatencyTerm``), each over the few labels it depends on: NNI gets a
``MutableExpression`` of switch-cases (so ``ExpectationProfilerPenalty``, ``SampleProfilerPenalty`` and
``RangeProfilerFilter`` work unchanged), ``profile(sample)`` is a few table look-ups, and the FBNet loss
computes the expected latency from the same tables as tensors.

Block overhead. A device model's prediction for zero features (its intercept) is the fixed cost of one
micro-benchmarked block. It is counted once per *block* that runs a convolution or linear layer, where a
block is a unit outside any user-defined container, or the outermost user-defined container that holds
choices (e.g. an inverted residual with a kernel choice). Everything else (pooling, dropout, identity and
skip candidates, functional code in a container's forward, layers inside a container block) adds its
marginal cost ``predict(f) - predict(0)``. A frozen network's prediction is therefore the sum of its
blocks' ``predict_module`` values, and a skip candidate costs nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from nni.mutable import Categorical, Mutable, MutableExpression, Sample
from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace, MutableModule, Repeat
from nni.nas.profiler import ExpressionProfiler
from nni.nas.profiler.pytorch.utils import profiler_leaf_module

from ..features import FEATURE_NAMES, BlockFeatures, UncoveredOperatorWarning, make_inputs, run_counted
from ..model import LatencyModel

_logger = logging.getLogger(__name__)

__all__ = ["LatencyProfiler", "LatencyTerm", "ChoiceRecord", "DEFAULT_MAX_COMBINATIONS"]

DEFAULT_MAX_COMBINATIONS = 512
_CONV_OPS_COLUMN = FEATURE_NAMES.index("conv_ops")
_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}
_SHAPE_CHECK_SAMPLES = 32  # random full samples that confirm a shape dimension's reduced table


@dataclass(frozen=True)
class LatencyTerm:
    """Latency (ms) contributed by parts of the space, tabulated over the labels it depends on.

    ``table[i, j, ...]`` is the contribution when ``labels[0]`` takes its ``i``-th value, and so on, in the
    order of the space's ``Categorical.values``. A term without labels is a constant.
    """

    labels: tuple[str, ...]
    table: np.ndarray
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChoiceRecord:
    """Predicted latency of one LayerChoice candidate for one input shape (a row of the lookup table)."""

    label: str
    candidate: str
    module: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    latency_ms: float
    features: dict[str, float] = field(default_factory=dict)
    when: dict[str, Any] = field(default_factory=dict)  # values of other labels this input shape needs


class _SpaceError(ValueError):
    """A problem found while analysing the space; raised to the user unchanged."""


# ----------------------------------------------------------------------------------------------------
# Small table algebra over labels ("factors"): a table whose axes are labels of the space.


class _Labels:
    """The categorical choices of the space, in the space's order."""

    def __init__(self, mutables: Mapping[str, Categorical]):
        self.mutables = dict(mutables)
        self.order = {label: i for i, label in enumerate(self.mutables)}
        self.values = {label: list(m.values) for label, m in self.mutables.items()}
        self.index = {label: {_hashable(v): i for i, v in enumerate(vals)} for label, vals in self.values.items()}

    def sizes(self, labels: Sequence[str]) -> tuple[int, ...]:
        return tuple(len(self.values[label]) for label in labels)

    def sort(self, labels) -> tuple[str, ...]:
        return tuple(sorted(set(labels), key=self.order.__getitem__))

    def grid(self, labels: Sequence[str]) -> Iterator[tuple[tuple[int, ...], dict[str, Any]]]:
        for index in itertools.product(*(range(n) for n in self.sizes(labels))):
            yield index, {label: self.values[label][i] for label, i in zip(labels, index)}

    def default_sample(self) -> dict[str, Any]:
        return {label: m.default() for label, m in self.mutables.items()}

    def random_sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {label: vals[int(rng.integers(len(vals)))] for label, vals in self.values.items()}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _align(labels: Sequence[str], table: np.ndarray, target: Sequence[str]) -> np.ndarray:
    """View ``table`` (one axis per label) with axes in ``target`` order, size 1 for labels it lacks."""
    moved = np.transpose(table, [labels.index(label) for label in target if label in labels])
    return moved.reshape([table.shape[labels.index(label)] if label in labels else 1 for label in target])


def _reduce(labels: Sequence[str], table: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Drop the label axes along which ``table`` does not change."""
    labels = list(labels)
    for axis in reversed(range(len(labels))):
        first = np.take(table, [0], axis=axis)
        if np.array_equal(np.broadcast_to(first, table.shape), table):
            table = np.take(table, 0, axis=axis)
            del labels[axis]
    return tuple(labels), table


def _product(space: _Labels, factors: Sequence[tuple[Sequence[str], np.ndarray]]) -> tuple[tuple[str, ...], np.ndarray]:
    """Elementwise product of tables over the union of their labels."""
    union = space.sort(label for labels, _ in factors for label in labels)
    result = np.ones(space.sizes(union))
    for labels, table in factors:
        result = result * _align(list(labels), np.asarray(table, float), union)
    return union, result


def _table_expression(space: _Labels, labels: Sequence[str], table: np.ndarray, cast=float):
    """A nested ``switch_case`` over ``labels`` that evaluates to ``table``'s entries (or a constant)."""
    if not labels:
        return cast(table.item() if isinstance(table, np.ndarray) else table)
    label, rest = labels[0], labels[1:]
    branches = {v: _table_expression(space, rest, table[i], cast) for i, v in enumerate(space.values[label])}
    return MutableExpression.switch_case(space.mutables[label], branches)


# ----------------------------------------------------------------------------------------------------
# Units: what runs for real.


@dataclass
class _UnitCall:
    """One distinct input of one unit: features and output shapes over the labels they depend on."""

    labels: tuple[str, ...]                 # label axes of ``features`` (the unit's own + its input shape's)
    features: np.ndarray                    # (*sizes, len(FEATURE_NAMES))
    shapes: dict[tuple[int, ...], tuple[tuple, tuple]]  # label index -> (input shapes, output shapes)
    uncovered: dict[str, str] = field(default_factory=dict)  # aten op -> unit name


@profiler_leaf_module  # NNI's default leaf test then stops at shims too (nested formulas drop ``is_leaf``)
class _UnitShim(nn.Module):
    """Stands in for a unit during NNI's shape inference: runs it for real and answers its output shapes."""

    def __init__(self, unit: nn.Module, name: str, analysis: _Analysis):
        super().__init__()
        self.unit = unit
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_analysis", analysis)

    def forward(self, *args, **kwargs):
        from nni.nas.profiler.pytorch.utils import ShapeTensor

        if kwargs:
            raise _SpaceError(f"module {self._name!r} is called with keyword arguments, which the profiler does "
                              "not support; pass tensors positionally")
        plain = [a.elem if isinstance(a, ShapeTensor) else a for a in args]
        try:
            output = self.unit(*plain)
        except (RuntimeError, ValueError, IndexError, TypeError) as error:
            shapes = [tuple(t.shape) for t in plain if isinstance(t, torch.Tensor)]
            raise _SpaceError(_mismatch_message(self._name, self.unit, shapes, error)) from error
        flat, spec = tree_flatten(output)
        object.__setattr__(self, "_output_structure", ([isinstance(t, torch.Tensor) for t in flat], spec))
        return tree_unflatten([ShapeTensor(t) if isinstance(t, torch.Tensor) else t for t in flat], spec)

    def _shape_forward(self, *args):
        # NNI looks this up on the class as the module's shape formula: ``formula(module, *inputs)``.
        shapes = iter(self._analysis.unit_output_shapes(self, args))
        is_tensor, spec = self._output_structure
        return tree_unflatten([next(shapes) if tensor else None for tensor in is_tensor], spec)


def _mismatch_message(name: str, module: nn.Module, shapes, error: Exception) -> str:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    shape_text = " and ".join(str(s) for s in shapes) or "its inputs"
    return (f"module {name!r} ({type(module).__name__}) fails on input {shape_text}: {first_line}; "
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


# ----------------------------------------------------------------------------------------------------
# The analysis of one space.


class _Analysis:
    """Runs the units of a space for real under NNI's shape inference, then folds them into terms."""

    def __init__(self, space: ModelSpace, labels: _Labels, model: LatencyModel, max_combinations: int):
        self.space = space
        self.labels = labels
        self.model = model
        self.max_combinations = max_combinations
        self.with_choices = _modules_with_choices(space)
        self.calls: dict[int, dict[str, _UnitCall]] = {}      # id(shim) -> input key -> call
        self.container_inputs: dict[int, tuple] = {}          # id(container) -> input MutableShapes
        self.shims: dict[int, _UnitShim] = {}                 # id(unit) -> shim
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
                    shim = self.shims.get(id(child)) or _UnitShim(child, path, self)
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
        except _SpaceError:
            raise
        except (RuntimeError, ValueError, TypeError, AssertionError, KeyError, IndexError) as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(
                f"NNI's shape inference failed between the blocks of {type(self.space).__name__} ({first_line}); "
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

    def unit_output_shapes(self, shim: _UnitShim, args) -> Any:
        from nni.nas.profiler.pytorch.utils import MutableShape, ShapeTensor

        shapes = []
        for arg in args:
            if not isinstance(arg, ShapeTensor):
                raise _SpaceError(f"module {shim._name!r} receives a non-tensor argument ({type(arg).__name__}); "
                                  "the profiler supports modules called with tensors only")
            if arg.real_shape is None:
                raise _SpaceError(
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
                        raise _SpaceError(f"module {shim._name!r} returns outputs of different ranks for different "
                                          "choices; the profiler needs one output structure per module")
                    table[index] = outs[position][d]
                dim_labels, dim_table = _reduce(call.labels, table)
                dims.append(_table_expression(self.labels, dim_labels, dim_table, cast=int))
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
                index = tuple(self.labels.index[label][_hashable(sample[label])] for label in relevant)
                if dim.freeze(sample) != table[index]:
                    relevant = list(dim_labels)
                    table = self._tabulate(lambda s: dim.freeze({**default, **s}), relevant, "an input shape dimension")
                    break
        result = _reduce(relevant, table)
        self._shape_cache[key] = result
        return result

    def _tabulate(self, fn, labels: Sequence[str], what: str, dtype=np.int64) -> np.ndarray:
        count = math.prod(self.labels.sizes(labels))
        if count > self.max_combinations:
            raise _SpaceError(f"{what} depends on {len(labels)} choices ({', '.join(labels)}) with {count} "
                              f"combinations, over max_combinations={self.max_combinations}; raise max_combinations "
                              "or make the space's choices independent of each other")
        table = np.zeros(self.labels.sizes(labels), dtype=dtype)
        for index, sample in self.labels.grid(labels):
            table[index] = fn(sample)
        return table

    def _enumerate_unit(self, shim: _UnitShim, shapes) -> _UnitCall:
        unit, name = shim.unit, shim._name
        own = self.labels.sort(unit.simplify()) if isinstance(unit, Mutable) else ()
        dims = [[self._dimension_table(d) for d in shape] for shape in shapes]
        shape_labels = {label for shape_dims in dims for labels, _ in shape_dims for label in labels}
        labels = self.labels.sort(set(own) | shape_labels)
        count = math.prod(self.labels.sizes(labels))
        if count > self.max_combinations:
            raise _SpaceError(
                f"module {name!r} ({type(unit).__name__}) has {count} combinations of its choices and input shapes "
                f"(labels {', '.join(labels)}), over max_combinations={self.max_combinations}; raise "
                "max_combinations or split it into smaller modules (e.g. make its choices LayerChoices)")
        sizes = self.labels.sizes(labels)
        features = np.zeros(sizes + (len(FEATURE_NAMES),))
        cases: dict[tuple[int, ...], tuple[tuple, tuple]] = {}
        uncovered: dict[str, str] = {}
        for index, sample in self.labels.grid(labels):
            concrete = tuple(
                tuple(int(table[tuple(self.labels.index[l][_hashable(sample[l])] for l in dim_labels)])
                      for dim_labels, table in shape_dims)
                for shape_dims in dims)
            frozen = self._frozen(unit, own, sample)
            row, outs, ops = self._features(name, frozen, concrete)
            features[index] = row
            cases[index] = (concrete, outs)
            for op in ops:
                uncovered.setdefault(op, name)
        return _UnitCall(labels, features, cases, uncovered)

    def _frozen(self, unit: nn.Module, own: Sequence[str], sample: Mapping[str, Any]) -> nn.Module:
        if not own:
            return unit
        values = tuple(_hashable(sample[label]) for label in own)
        key = (id(unit), values)
        if key not in self._frozen_cache:
            self._frozen_cache[key] = unit.freeze({label: sample[label] for label in own})
        return self._frozen_cache[key]

    def _features(self, name: str, module: nn.Module, shapes: tuple) -> tuple[np.ndarray, tuple, tuple]:
        key = (_signature(module), shapes)
        if key not in self._feature_cache:
            device, dtype = _module_device_dtype(module)
            inputs = tuple(make_inputs(shape, device=device, dtype=dtype)[0] for shape in shapes)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UncoveredOperatorWarning)
                    counted, output = run_counted(module, inputs)
            except (RuntimeError, ValueError, IndexError, TypeError) as error:
                raise _SpaceError(_mismatch_message(name, module, shapes, error)) from error
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
        device, dtype = _module_device_dtype(container)
        inputs = tuple(make_inputs(shape, device=device, dtype=dtype)[0] for shape in concrete)
        recorded: list[tuple[nn.Module, tuple]] = []
        handles = [child.register_forward_pre_hook(lambda m, a: recorded.append((m, a)))
                   for child in container.children()]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UncoveredOperatorWarning)
                total, _ = run_counted(container, inputs)
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
                children = children + run_counted(child, tuple(args))[0]
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


def _module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    if tensor is None or not tensor.is_floating_point():
        return torch.device("cpu"), torch.float32
    return tensor.device, tensor.dtype


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


# ----------------------------------------------------------------------------------------------------
# Folding units into latency terms.


class _TermBuilder:
    """Walks the space like NNI's nn-Meter profiler and turns every unit call into a guarded latency table."""

    def __init__(self, analysis: _Analysis):
        self.analysis = analysis
        self.labels = analysis.labels
        self.model = analysis.model
        self.overhead = float(self.model.predict(BlockFeatures()))
        self.terms: list[LatencyTerm] = []
        self.records: list[ChoiceRecord] = []
        self.uncovered: dict[str, list[str]] = {}

    def latency(self, features: np.ndarray, block: bool) -> np.ndarray:
        """Predicted contribution (ms) of each feature row; ``block`` rows carry the block overhead."""
        flat = features.reshape(-1, len(FEATURE_NAMES))
        predicted = self.model.predict_many(flat) if len(flat) else np.zeros(0)
        marginal = predicted - self.overhead
        if block:
            predicted = np.where(flat[:, _CONV_OPS_COLUMN] > 0, predicted, marginal)
        else:
            predicted = marginal
        return predicted.reshape(features.shape[:-1])

    def add(self, name: str, labels: Sequence[str], table: np.ndarray, guards: list) -> None:
        labels, table = _product(self.labels, [(labels, table)] + guards)
        labels, table = _reduce(labels, table)
        if np.any(table != 0):
            self.terms.append(LatencyTerm(labels, np.asarray(table, float), (name,)))

    def walk(self, module: nn.Module, name: str, guards: list, inside_block: bool,
             candidate: tuple[str, Any] | None = None) -> bool:
        """Add the terms of ``module``; returns whether it runs any convolution / linear op."""
        analysis = self.analysis
        if id(module) in analysis.shims:
            return self._unit(analysis.shims[id(module)], name, guards, inside_block, candidate)
        if isinstance(module, LayerChoice):
            has_conv = False
            label = module.label
            for value in module.names:
                onehot = np.array([v == value for v in self.labels.values[label]], float)
                has_conv = self.walk(module[value], f"{name}.{value}", guards + [((label,), onehot)], inside_block,
                                     candidate=(label, value)) or has_conv
            return has_conv
        if isinstance(module, Repeat):
            return self._repeat(module, name, guards, inside_block)
        if isinstance(module, InputChoice):
            return False
        block = not inside_block and _is_user_container(module)
        has_conv = False
        for child_name, child in module.named_children():
            path = f"{name}.{child_name}" if name else child_name
            has_conv = self.walk(child, path, guards, inside_block or block) or has_conv
        glue = analysis.glue_features(module, name or "<space>")
        if glue is not None:
            self.add(f"{name or '<space>'} (own ops)", (), self.latency(glue[None, :], block=False)[0], guards)
        if block and has_conv:
            self.add(f"{name} (block overhead)", (), np.array(self.overhead), guards)
        return has_conv

    def _repeat(self, module: Repeat, name: str, guards: list, inside_block: bool) -> bool:
        depth = module.depth_choice
        has_conv = False
        for d, block in enumerate(module.blocks, start=1):
            if isinstance(depth, int):
                block_guards = guards
            else:
                depth_labels = self.labels.sort(depth.simplify())
                active = self.analysis._tabulate(lambda s: float(depth.freeze(s) >= d), depth_labels,
                                                 f"the depth of {name!r}", dtype=float)
                block_guards = guards + [(depth_labels, active)]
            has_conv = self.walk(block, f"{name}.blocks.{d - 1}", block_guards, inside_block) or has_conv
        return has_conv

    def _unit(self, shim: _UnitShim, name: str, guards: list, inside_block: bool,
              candidate: tuple[str, Any] | None) -> bool:
        calls = self.analysis.calls.get(id(shim), {})
        if not calls:
            _logger.debug("module %r never runs in the space's forward; it adds no latency", name)
            return False
        has_conv = False
        for call in calls.values():
            for op in call.uncovered:
                self.uncovered.setdefault(op, []).append(name)
            latency = self.latency(call.features, block=not inside_block)
            has_conv = has_conv or bool(np.any(call.features[..., _CONV_OPS_COLUMN] > 0))
            labels, table = _reduce(call.labels, latency)
            self.add(name, labels, table, guards)
            if candidate is not None:
                self._record(candidate, name, call, latency)
        return has_conv

    def _record(self, candidate: tuple[str, Any], name: str, call: _UnitCall, latency: np.ndarray) -> None:
        """Lookup-table rows of a LayerChoice candidate, one per distinct input shape it can receive."""
        label, value = candidate
        seen = set()
        for index, sample in self.labels.grid(call.labels):
            in_shapes, out_shapes = call.shapes[index]
            key = (in_shapes, out_shapes, round(float(latency[index]), 9))
            if key in seen:
                continue
            seen.add(key)
            self.records.append(ChoiceRecord(
                label=label, candidate=str(value), module=name,
                input_shape=in_shapes[0] if in_shapes else (), output_shape=out_shapes[0] if out_shapes else (),
                latency_ms=float(latency[index]),
                features=dict(zip(FEATURE_NAMES, map(float, call.features[index]))),
                when={k: v for k, v in sample.items() if k != label}))


def _is_user_container(module: nn.Module) -> bool:
    """A module class written by a user (not a torch/NNI container): the granularity of a block."""
    if isinstance(module, (ModelSpace, LayerChoice, Repeat, InputChoice, nn.ModuleList, nn.ModuleDict)):
        return False
    return type(module) is not nn.Sequential


def _merge(space: _Labels, terms: Sequence[LatencyTerm]) -> list[LatencyTerm]:
    """Sum the terms that share a label set, so the expression has one table per set."""
    merged: dict[tuple[str, ...], tuple[np.ndarray, list[str]]] = {}
    for term in terms:
        table, sources = merged.get(term.labels, (0.0, []))
        merged[term.labels] = (table + term.table, sources + list(term.sources))
    ordered = sorted(merged.items(), key=lambda item: (len(item[0]), [space.order[l] for l in item[0]]))
    return [LatencyTerm(labels, np.asarray(table, float), tuple(sources)) for labels, (table, sources) in ordered]


# ----------------------------------------------------------------------------------------------------
# The public profiler.


class LatencyProfiler(ExpressionProfiler):
    """Predicted latency (ms) of every architecture of an NNI model space, from a fitted device model.

    Parameters
    ----------
    model_space
        An NNI 3.0 ``ModelSpace`` (LayerChoice, Repeat, value choices on ``Mutable*`` modules, nested).
    example_input
        A tensor, or its shape such as ``(1, 3, 224, 224)``; the batch is part of the prediction.
    device_model
        A ``LatencyModel`` or the path of a ``device_model.json``.
    max_combinations
        The most combinations of choices and input shapes one module may have; beyond it a
        ``ValueError`` says which module and labels, instead of enumerating for a long time.

    ``profile(sample)`` is the prediction for the frozen architecture ``model_space.freeze(sample)``
    (``freeze`` does it); ``expression`` is the same as an NNI ``MutableExpression``; ``terms`` are the
    tables both are made of; ``choices`` lists every LayerChoice candidate's predicted latency.

    Construction swaps the space's units for stand-ins while NNI's shape inference runs and puts them
    back before returning (also on error); do not run the space in another thread meanwhile.
    """

    def __init__(self, model_space: ModelSpace, example_input: torch.Tensor | Sequence[int],
                 device_model: LatencyModel | str | Path, *, max_combinations: int = DEFAULT_MAX_COMBINATIONS):
        super().__init__(model_space)
        if not isinstance(model_space, nn.Module):
            raise ValueError(f"model_space must be an NNI ModelSpace, got {type(model_space).__name__}")
        if max_combinations < 1:
            raise ValueError(f"max_combinations must be at least 1, got {max_combinations}")
        self.model_space = model_space
        self.device_model = _load_device_model(device_model)
        self.space_labels = _Labels(_categorical_choices(model_space))
        example = _example_tensor(example_input, model_space)
        self.input_shape = tuple(example.shape)
        _check_device_model(self.device_model, example, isinstance(example_input, torch.Tensor))

        analysis = _Analysis(model_space, self.space_labels, self.device_model, max_combinations)
        analysis.run_shape_inference(example)
        builder = _TermBuilder(analysis)
        builder.walk(model_space, "", [], inside_block=False)
        self.forward_passes = analysis.forward_passes
        self.block_overhead_ms = builder.overhead
        self.terms: list[LatencyTerm] = _merge(self.space_labels, builder.terms)
        self.choices: list[ChoiceRecord] = builder.records
        _warn_uncovered(builder.uncovered)

        self.expression = self._build_expression()
        self._constant = float(sum(t.table for t in self.terms if not t.labels))
        self._lookup = [(t.labels, t.table) for t in self.terms if t.labels]
        _logger.debug("LatencyProfiler: %d latency tables over %d labels, %d forward passes",
                     len(self.terms), len(self.space_labels.values), self.forward_passes)

    @property
    def label_values(self) -> dict[str, list]:
        """Each label's candidate values, in the order of the term tables' axes."""
        return {label: list(values) for label, values in self.space_labels.values.items()}

    def _build_expression(self):
        expression: Any = 0.0
        for term in self.terms:
            expression = expression + _table_expression(self.space_labels, term.labels, term.table)
        return expression

    def profile(self, sample: Sample) -> float:
        """Predicted latency (ms) of the architecture ``sample`` (label -> chosen value)."""
        total = self._constant
        index = self.space_labels.index
        try:
            for labels, table in self._lookup:
                total += table[tuple(index[label][_hashable(sample[label])] for label in labels)]
        except KeyError as error:
            raise ValueError(self._sample_problem(sample)) from None
        except TypeError:
            raise ValueError(self._sample_problem(sample)) from None
        return float(total)

    def _sample_problem(self, sample: Mapping[str, Any]) -> str:
        if not isinstance(sample, Mapping):
            return f"a sample must map labels to chosen values, got {type(sample).__name__}"
        missing = [label for label in self.space_labels.values if label not in sample]
        if missing:
            return f"sample lacks label(s) {', '.join(missing)}; give a value for every label of the space"
        for label, values in self.space_labels.values.items():
            if _hashable(sample[label]) not in self.space_labels.index[label]:
                return f"sample value {sample[label]!r} for label {label!r} is not one of {values}"
        return "invalid sample"

    def freeze(self, sample: Sample) -> nn.Module:
        """The frozen network of ``sample`` (``model_space.freeze``), e.g. to measure it for real."""
        self.profile(sample)  # validates the sample with a readable error
        return self.model_space.freeze(sample)

    def uniform_expected_latency(self) -> float:
        """Expected latency (ms) when every label is chosen uniformly at random."""
        total = self._constant
        for labels, table in self._lookup:
            total += float(table.mean())
        return total


def _load_device_model(device_model) -> LatencyModel:
    if isinstance(device_model, LatencyModel):
        return device_model
    if isinstance(device_model, (str, Path)):
        return LatencyModel.load(device_model)
    raise ValueError(f"device_model must be a LatencyModel or the path of a device_model.json, "
                     f"got {type(device_model).__name__}")


def _categorical_choices(space: nn.Module) -> dict[str, Categorical]:
    if not isinstance(space, Mutable):
        raise ValueError(f"{type(space).__name__} is not an NNI ModelSpace; build the space with "
                         "nni.nas.nn.pytorch.ModelSpace (or predict a fixed network with LatencyModel.predict_module)")
    choices = space.simplify()
    if not choices:
        raise ValueError(f"model space {type(space).__name__} has no choices; predict a fixed network with "
                         "LatencyModel.predict_module instead")
    for label, mutable in choices.items():
        if not isinstance(mutable, Categorical):
            raise ValueError(f"choice {label!r} is a {type(mutable).__name__}; the latency profiler supports "
                             "categorical choices only (nni.choice, LayerChoice, Repeat, InputChoice with one input)")
    return choices


def _example_tensor(example_input, space: nn.Module) -> torch.Tensor:
    if isinstance(example_input, torch.Tensor):
        if example_input.dim() == 0:
            raise ValueError("example_input must have a batch dimension, e.g. a (1, 3, 224, 224) tensor")
        return example_input.detach()
    if isinstance(example_input, (tuple, list, torch.Size)) and example_input and all(
            isinstance(d, int) and not isinstance(d, bool) for d in example_input):
        device, dtype = _module_device_dtype(space)
        return make_inputs(tuple(example_input), device=device, dtype=dtype)[0]
    raise ValueError(f"example_input must be a tensor or a shape such as (1, 3, 224, 224), got {example_input!r}")


def _check_device_model(model: LatencyModel, example: torch.Tensor, has_dtype: bool) -> None:
    device = model.device or {}
    batch, dtype = device.get("batch"), device.get("dtype")
    if batch is not None and int(batch) != example.shape[0]:
        warnings.warn(f"the device model was fitted at batch {batch} but the example input has batch "
                      f"{example.shape[0]}; predictions extrapolate (profile the device at batch "
                      f"{example.shape[0]})", UserWarning, stacklevel=3)
    example_dtype = _DTYPE_NAMES.get(example.dtype, str(example.dtype))
    if has_dtype and dtype is not None and str(dtype) != example_dtype:
        warnings.warn(f"the device model was fitted for dtype {dtype} but the example input is {example_dtype}; "
                      f"predictions are for {dtype} (profile the device with --dtype {example_dtype})",
                      UserWarning, stacklevel=3)


def _warn_uncovered(uncovered: Mapping[str, list[str]]) -> None:
    # One warning per operator for the whole space, instead of one per candidate.
    for op, where in sorted(uncovered.items()):
        others = f" and {len(where) - 1} other module(s)" if len(where) > 1 else ""
        warnings.warn(f"operator aten.{op} (in {where[0]!r}{others}) is not covered by the conv formula; it is "
                      "counted as a memory-bound op from its input and output sizes",
                      UncoveredOperatorWarning, stacklevel=3)
