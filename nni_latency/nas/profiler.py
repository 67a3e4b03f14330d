"""``LatencyProfiler``: an NNI ``ExpressionProfiler`` whose expression is the latency (ms) a device model
predicts for any architecture of a model space; the public class and its input checks.

How it is built (one module per step). ``units``: the space is cut into *units*, modules without
choices (the stem, a LayerChoice candidate, the classifier), leaf mutable modules (``MutableConv2d`` with a
width choice, ...) and InputChoices; NNI's cells are cut per op slot (``cells``). Each unit runs for real, once per distinct input shape it can receive and per
combination of its own choices, and its features are counted by the device model's runtime (``LatencyModel.counter``); so any code
inside a unit works, including code NNI's symbolic shape inference has no formula for. Shapes travel
*between* units with NNI's shape inference, each unit answering with the shapes its real forward
produced, so a block whose input width depends on an earlier choice sees every width it can get.
``walk``: ``LayerChoice`` becomes a switch on its label and ``Repeat`` a sum guarded by ``depth >= d``,
as in NNI's nn-Meter profiler; each part adds its marginal cost and the intercept is paid once
(``structure``), so ``profile(sample)`` is ``device_model.predict_module(model_space.freeze(sample))``.
``tables``: the result is a sum of small tables (``LatencyTerm``), each
over the few labels it depends on: NNI gets a ``MutableExpression`` of switch-cases (so
``ExpectationProfilerPenalty``, ``SampleProfilerPenalty`` and ``RangeProfilerFilter`` work unchanged),
``profile(sample)`` is a few table look-ups, and the FBNet loss computes the expected latency from the
same tables as tensors.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from nni.mutable import Categorical, CategoricalMultiple, Mutable, Sample
from nni.nas.nn.pytorch import Cell, ModelSpace
from nni.nas.profiler import ExpressionProfiler
from torch import nn

from ..count.features import warn_uncovered
from ..count.inputs import make_inputs, module_device_dtype
from ..deprecation import deprecated_names
from ..errors import InvalidInput
from ..model.coverage import check_batch
from ..model.model import LatencyModel
from ..runtimes import get_table
from .label_tables import LabelSpace, LatencyTerm, fastest_latency, merge_terms, table_expression
from .loose import loose_end_cells
from .lut import LutRow
from .scaling import calibrate as calibrate_space
from .scaling import fusion_scales, role_terms, scaled_terms
from .source import LatencySource
from .units import FALLBACK_HINT, SpaceAnalysis, SpaceError
from .walk import TermBuilder

_logger = logging.getLogger(__name__)

__all__ = ["LatencyProfiler", "DEFAULT_MAX_COMBINATIONS"]

DEFAULT_MAX_COMBINATIONS = 512
_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


class LatencyProfiler(ExpressionProfiler, LatencySource):
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
    calibrate
        0 (the default) or the number of random architectures of the space to measure, each end to end in a
        fresh process, to scale each cost role of the tables to this space's own networks (``scaling``; a strong
        prior keeps the scales near the device model). ``calibration`` then holds the scales and the error on
        held-out samples before and after.

    ``profile(sample)`` is the device model's prediction for the frozen architecture
    ``model_space.freeze(sample)`` (``freeze`` does it), exactly for the affine model kinds (``op_linear``,
    ``relative_linear``, ``flops``) of eager PyTorch, which runs a network as the sum of its parts; for a runtime
    that fuses across modules (ONNX Runtime) each role's tables are scaled to the space's networks counted whole
    (``fusion``). ``expression`` is the same as an NNI ``MutableExpression``; ``terms`` are the tables both are
    made of; ``choices`` lists what every LayerChoice candidate adds to the network. A space whose choices
    change shapes in ways tables cannot follow is refused with the module, the label and the fallback
    (``FrozenLatencyProfiler``).

    Construction swaps the space's units for stand-ins while NNI's shape inference runs and puts them
    back before returning (also on error); do not run the space in another thread meanwhile.
    """

    def __init__(self, model_space: ModelSpace, example_input: torch.Tensor | Sequence[int],
                 device_model: LatencyModel | str | Path, *, max_combinations: int = DEFAULT_MAX_COMBINATIONS,
                 calibrate: int = 0):
        super().__init__(model_space)
        if not isinstance(model_space, nn.Module):
            raise InvalidInput(f"model_space must be an NNI ModelSpace, got {type(model_space).__name__}")
        if max_combinations < 1:
            raise InvalidInput(f"max_combinations must be at least 1, got {max_combinations}")
        if isinstance(calibrate, bool) or not isinstance(calibrate, int) or calibrate < 0 or calibrate == 1:
            raise InvalidInput(f"calibrate must be 0 (off) or a number of architectures to measure, at least 2; got "
                               f"{calibrate!r}")
        if calibrate and any(isinstance(module, Cell) for module in model_space.modules()):
            raise InvalidInput("calibrate cannot scale a space of NNI cells yet: a cell's tables are priced by the "
                               "whole device model, not by cost role, so scaling each role would count them once per "
                               "role; use calibrate=0 on this space")
        self.model_space = model_space
        self.device_model = _load_device_model(device_model)
        self.space_labels = LabelSpace(_categorical_choices(model_space, max_combinations),
                                       loose_end_cells(model_space))
        example = _example_tensor(example_input, model_space)
        self.input_shape = tuple(example.shape)
        _check_device_model(self.device_model, example, isinstance(example_input, torch.Tensor))

        analysis = SpaceAnalysis(model_space, self.space_labels, self.device_model, max_combinations)
        analysis.run_shape_inference(example)
        builder = TermBuilder(analysis)
        builder.walk(model_space, "", [])
        self.forward_passes = analysis.forward_passes
        self.intercept_ms = builder.intercept
        self.block_overhead_ms = builder.intercept  # the former name of ``intercept_ms``
        self.terms: list[LatencyTerm] = merge_terms(self.space_labels, builder.terms)
        _check_derived(self.space_labels, self.terms)
        self._index()
        self.choices: list[LutRow] = builder.records
        for op, where in sorted(builder.uncovered.items()):  # one warning per operator for the whole space
            warn_uncovered(op, where, stacklevel=2)

        # A runtime that fuses across modules costs a network below the sum of its parts, and a space's own networks
        # may measure otherwise than the profile predicts: scale each cost role (``scaling``).
        self.fusion = self.calibration = None
        if get_table(self.device_model.runtime).fuses_modules or calibrate:
            by_role = role_terms(analysis, model_space)
            scales = dict.fromkeys(by_role, 1.0)
            if get_table(self.device_model.runtime).fuses_modules:
                self.fusion = fusion_scales(self, by_role)
                scales = dict(self.fusion["scales"])
            if calibrate:
                self.calibration = calibrate_space(self, by_role, scales, calibrate)
                scales = {role: scales[role] * self.calibration["scales"][role] for role in scales}
            self.terms = scaled_terms(self.space_labels, self.intercept_ms, by_role, scales)
            _check_derived(self.space_labels, self.terms)
            self._index()
        self.expression = self._build_expression()
        _logger.debug("LatencyProfiler: %d latency tables over %d labels, %d forward passes",
                     len(self.terms), len(self.space_labels.values), self.forward_passes)

    def _index(self) -> None:
        self._constant = float(sum(t.table for t in self.terms if not t.labels))
        self._lookup = [(t.labels, t.table) for t in self.terms if t.labels]
        self._position = self.space_labels.position

    @property
    def label_values(self) -> dict[str, list]:
        """Each label's candidate values, in the order of the term tables' axes."""
        return {label: list(values) for label, values in self.space_labels.values.items()}

    @property
    def derived(self) -> dict:
        """Labels computed from others (a loose-end cell's count, ``loose.LooseEnds``), never sampled."""
        return self.space_labels.derived

    def _build_expression(self):
        space = self.space_labels
        derived = {label: d.expression(space.mutables) for label, d in space.derived.items()}
        expression: Any = 0.0
        for term in self.terms:
            expression = expression + table_expression(space, term.labels, term.table, derived=derived)
        return expression

    def profile(self, sample: Sample) -> float:
        """Predicted latency (ms) of the architecture ``sample`` (label -> chosen value)."""
        total = self._constant
        position = self._position
        try:
            if self.space_labels.derived:
                sample = self.space_labels.complete(sample)
            for labels, table in self._lookup:
                total += table[tuple(position(label, sample[label]) for label in labels)]
        except (KeyError, TypeError):
            raise InvalidInput(self._sample_problem(sample)) from None
        return float(total)

    def _sample_problem(self, sample: Mapping[str, Any]) -> str:
        if not isinstance(sample, Mapping):
            return f"a sample must map labels to chosen values, got {type(sample).__name__}"
        missing = [label for label in self.space_labels.values
                   if label not in sample and label not in self.space_labels.derived]
        if missing:
            return f"sample lacks label(s) {', '.join(missing)}; give a value for every label of the space"
        for label, values in self.space_labels.values.items():
            if label in self.space_labels.derived:
                continue
            try:
                self.space_labels.position(label, sample[label])
            except (KeyError, TypeError, ValueError):
                shown = [list(v) for v in values] if label in self.space_labels.multiple else values
                return f"sample value {sample[label]!r} for label {label!r} is not one of {shown}"
        return "invalid sample"

    def freeze(self, sample: Sample) -> nn.Module:
        """The frozen network of ``sample`` (``model_space.freeze``), e.g. to measure it for real."""
        self.profile(sample)  # validates the sample with a readable error
        return self.model_space.freeze({k: v for k, v in sample.items() if k not in self.space_labels.derived})

    def fastest_latency(self) -> tuple[float, bool]:
        """The smallest latency (ms) of any architecture, and whether that is exact (every table over its own
        labels) or a lower bound (tables sharing a label may not all reach their minimum together, nor a derived
        label the value its inputs give it)."""
        fastest, exact = fastest_latency([(term.labels, term.table) for term in self.terms])
        return fastest, exact and not self.space_labels.derived

    def uniform_expected_latency(self) -> float:
        """Expected latency (ms) when every label is chosen uniformly at random (a derived label follows)."""
        if self.space_labels.derived:
            from .loss import ExpectedLatency

            with torch.no_grad():
                return float(ExpectedLatency(self).uniform())
        total = self._constant
        for labels, table in self._lookup:
            total += float(table.mean())
        return total


def _check_derived(space: LabelSpace, terms: Sequence[LatencyTerm]) -> None:
    """A table over a derived label and one of its inputs would need their joint law; the cells never make one."""
    for term in terms:
        for label, derived in space.derived.items():
            both = set(term.labels) & set(derived.inputs)
            if label in term.labels and both:
                raise SpaceError(f"{', '.join(term.sources)} costs a table over {label!r} and {sorted(both)[0]!r}, "
                                 f"which the expected latency cannot contract exactly; use {FALLBACK_HINT}")


def _load_device_model(device_model) -> LatencyModel:
    if isinstance(device_model, LatencyModel):
        return device_model
    if isinstance(device_model, (str, Path)):
        return LatencyModel.load(device_model)
    raise InvalidInput(f"device_model must be a LatencyModel or the path of a device_model.json, "
                     f"got {type(device_model).__name__}")


def _categorical_choices(space: nn.Module, max_combinations: int) -> dict[str, Categorical | CategoricalMultiple]:
    if not isinstance(space, Mutable):
        raise InvalidInput(f"{type(space).__name__} is not an NNI ModelSpace; build the space with "
                         "nni.nas.nn.pytorch.ModelSpace (or predict a fixed network with LatencyModel.predict_module)")
    choices = space.simplify()
    if not choices:
        raise InvalidInput(f"model space {type(space).__name__} has no choices; predict a fixed network with "
                         "LatencyModel.predict_module instead")
    for label, mutable in choices.items():
        if isinstance(mutable, CategoricalMultiple):
            count = len(LabelSpace({label: mutable}).values[label])
            if count <= max_combinations:
                continue
            why = f"can choose {count} subsets of its inputs, over max_combinations={max_combinations}"
        elif isinstance(mutable, Categorical):
            continue
        else:
            why = f"is a {type(mutable).__name__}, which latency tables cannot follow"
        raise InvalidInput(f"module {_owner(space, label)} has choice {label!r} that {why}; use {FALLBACK_HINT}")
    return choices


def _owner(space: nn.Module, label: str) -> str:
    """The qualified name (and class) of the module that holds the choice ``label``."""
    for name, module in space.named_modules():
        for mutable in getattr(module, "mutables", None) or ():
            if label in (mutable.simplify() if isinstance(mutable, Mutable) else {}):
                return f"{name or '<space>'!r} ({type(module).__name__})"
    return type(space).__name__


def _example_tensor(example_input, space: nn.Module) -> torch.Tensor:
    if isinstance(example_input, torch.Tensor):
        if example_input.dim() == 0:
            raise InvalidInput("example_input must have a batch dimension, e.g. a (1, 3, 224, 224) tensor")
        return example_input.detach()
    if isinstance(example_input, (tuple, list, torch.Size)) and example_input and all(
            isinstance(d, int) and not isinstance(d, bool) for d in example_input):
        device, dtype = module_device_dtype(space)
        return make_inputs(tuple(example_input), device=device, dtype=dtype)[0]
    raise InvalidInput(f"example_input must be a tensor or a shape such as (1, 3, 224, 224), got {example_input!r}")


def _check_device_model(model: LatencyModel, example: torch.Tensor, has_dtype: bool) -> None:
    protocol = model.protocol
    if protocol is None:  # the model does not say how it was measured
        return
    check_batch(model, int(example.shape[0]), stacklevel=4)  # a CoverageWarning, once per model
    example_dtype = _DTYPE_NAMES.get(example.dtype, str(example.dtype))
    if has_dtype and protocol.dtype != example_dtype:
        warnings.warn(f"the device model was fitted for dtype {protocol.dtype} but the example input is "
                      f"{example_dtype}; predictions are for {protocol.dtype} (profile the device with --dtype "
                      f"{example_dtype})", UserWarning, stacklevel=3)


__getattr__ = deprecated_names(__name__, {"ChoiceRecord": "nni_latency.nas.lut:LutRow"})
