"""``FrozenLatencyProfiler``: the fallback profiler for spaces whose latency is no sum of small tables (NasBench101
re-allocates channels with the graph; loose-end cells change their width with all their input choices).

``profile(sample)`` is what ``LatencyProfiler.profile(sample)`` equals where tables exist: the device model's
prediction of the frozen network, ``device_model.predict_module(model_space.freeze(sample), input_shape)``
(``predict_frozen``), here computed by freezing and counting the network, memoised by sample.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from nni.mutable import Sample
from nni.nas.profiler import Profiler

from ..model import LatencyModel, OutOfRangeWarning
from .profiler import _example_tensor, _load_device_model

_logger = logging.getLogger(__name__)

__all__ = ["predict_frozen", "FrozenLatencyProfiler", "sample_key", "DEFAULT_MEMO_SIZE"]

DEFAULT_MEMO_SIZE = 100_000


def predict_frozen(network: nn.Module, example_input: torch.Tensor | Sequence[int], device_model: LatencyModel
                   ) -> float:
    """The device model's prediction of a network without choices (``predict_module`` on the example input's shape):
    the number ``LatencyProfiler.profile`` equals for the frozen architecture."""
    shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else tuple(example_input)
    try:
        return device_model.predict_module(network, shape)
    except ValueError as error:
        raise ValueError(f"{type(network).__name__} fails on its example input: {error}") from None


def sample_key(sample: Any) -> Any:
    """A hashable form of a sample (dicts, lists and nested constraint values included)."""
    if isinstance(sample, dict):
        return tuple(sorted((str(k), sample_key(v)) for k, v in sample.items()))
    if isinstance(sample, (list, tuple)):
        return tuple(sample_key(v) for v in sample)
    return sample


class FrozenLatencyProfiler(Profiler):
    """Predicted latency (ms) of each architecture of a space, one frozen network at a time (the fallback).

    Use it where ``LatencyProfiler`` says a space's choices change shapes in ways its tables cannot follow
    (NasBench101's cells give every vertex a channel count that depends on the whole graph): ``profile(sample)``
    freezes the sample (``model_space.freeze``), counts the network's features in one forward pass and
    predicts them (``predict_frozen``). Results are memoised by sample (up to ``memo_size`` of them): a multi-trial search pays
    for freezing and counting each new architecture once (see docs/NAS.md for the time per call). It serves NNI's
    ``RangeProfilerFilter`` and ``SampleProfilerPenalty``; it has no latency tables, so NNI's
    ``ExpectationProfilerPenalty`` and the differentiable ``FBNetLatencyLoss`` do not apply.
    """

    def __init__(self, model_space: nn.Module, example_input: torch.Tensor | Sequence[int],
                 device_model: LatencyModel | str | Path, *, memo_size: int = DEFAULT_MEMO_SIZE):
        super().__init__(model_space)
        self.model_space = model_space
        self.device_model = _load_device_model(device_model)
        example = _example_tensor(example_input, model_space)
        self.example_input = example
        self.input_shape = tuple(example.shape)
        self.memo_size = memo_size
        self._memo: dict[Any, float] = {}

    def freeze(self, sample: Sample) -> nn.Module:
        """The frozen network of ``sample``, with NNI's one-line error for a sample that is not in the space."""
        nni_logger = logging.getLogger("nni")
        level = nni_logger.level
        nni_logger.setLevel(max(level, logging.WARNING))  # NNI logs every NasBench101 cell it builds at INFO
        try:
            return self.model_space.freeze(sample)
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"sample is not an architecture of {type(self.model_space).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        finally:
            nni_logger.setLevel(level)

    def profile(self, sample: Sample) -> float:
        """Predicted latency (ms) of the architecture ``sample`` (frozen, counted and predicted; memoised)."""
        key = sample_key(sample)
        if key in self._memo:
            return self._memo[key]
        with warnings.catch_warnings():  # a whole network exceeds the block range; uncovered ops warn once
            warnings.simplefilter("ignore", OutOfRangeWarning)
            latency = predict_frozen(self.freeze(sample), self.example_input, self.device_model)
        if len(self._memo) < self.memo_size:
            self._memo[key] = latency
        return latency
