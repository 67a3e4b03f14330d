"""``FrozenLatencyProfiler``: the fallback profiler for spaces whose latency is no sum of small tables (NasBench101
re-allocates channels with the graph, under a validity constraint that is no per-choice table).

``profile(sample)`` is what ``LatencyProfiler.profile(sample)`` equals where tables exist: the device model's
prediction of the frozen network, ``device_model.predict_module(model_space.freeze(sample), input_shape)``
(``predict_frozen``), here computed by freezing and counting the network, memoised by sample; a NasBench101 cell by
its canonical graph (``canonical_key``), so isomorphic cells hit the memo.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from nni.mutable import Sample
from nni.nas.profiler import Profiler
from torch import nn

from ..errors import InvalidInput
from ..model.model import LatencyModel, OutOfRangeWarning
from .profiler import _example_tensor, _load_device_model

_logger = logging.getLogger(__name__)

__all__ = ["predict_frozen", "FrozenLatencyProfiler", "sample_key", "canonical_key", "graph_labels", "graph_hash",
           "DEFAULT_MEMO_SIZE"]

DEFAULT_MEMO_SIZE = 100_000


def predict_frozen(network: nn.Module, example_input: torch.Tensor | Sequence[int], device_model: LatencyModel
                   ) -> float:
    """The device model's prediction of a network without choices (``predict_module`` on the example input's shape):
    the number ``LatencyProfiler.profile`` equals for the frozen architecture."""
    shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else tuple(example_input)
    try:
        return device_model.predict_module(network, shape)
    except ValueError as error:
        raise InvalidInput(f"{type(network).__name__} fails on its example input: {error}") from None


def sample_key(sample: Any) -> Any:
    """A hashable form of a sample (dicts, lists and nested constraint values included)."""
    if isinstance(sample, dict):
        return tuple(sorted((str(k), sample_key(v)) for k, v in sample.items()))
    if isinstance(sample, (list, tuple)):
        return tuple(sample_key(v) for v in sample)
    return sample


def graph_labels(space: nn.Module) -> dict[str, set[str]]:
    """Per NasBench101 cell constraint of ``space`` (its ``final`` label), the labels it summarises."""
    from nni.nas.hub.pytorch.modules.nasbench101 import NasBench101CellConstraint

    found = {}
    for label, mutable in space.simplify().items():
        if isinstance(mutable, NasBench101CellConstraint):
            found[label] = {m.label for m in mutable.leaf_mutables(lambda m: True)} - {label}
    return found


def canonical_key(sample: Mapping[str, Any], graphs: Mapping[str, set[str]], space: nn.Module) -> Any:
    """``sample_key`` with every NasBench101 cell replaced by the hash of its pruned graph (NAS-Bench-101's
    ``hash_module``: invariant to vertex order), so that isomorphic cells, and choices pruning drops, hit the memo."""
    if not graphs:
        return sample_key(sample)
    covered = set().union(*graphs.values())
    hashes = []
    for label in graphs:
        final = sample.get(label)
        if not isinstance(final, Mapping):  # a sample without the constraint's summary: let NNI compute it
            final = space.simplify()[label].freeze(dict(sample))
        hashes.append((label, graph_hash(final)))
    rest = {k: v for k, v in sample.items() if k not in covered and k not in graphs}
    return tuple(hashes), sample_key(rest)


def graph_hash(cell: Mapping[str, Any]) -> str:
    """NAS-Bench-101's graph-invariant hash of a pruned cell (``{'op1': ..., 'input1': [...], ...}``): vertex labels
    refined by their in- and out-neighbours' (Weisfeiler-Lehman), as ``nasbench.lib.graph_util.hash_module``."""
    vertices = len([k for k in cell if k.startswith("op")]) + 2
    labels = ["input"] + [str(cell[f"op{i}"]) for i in range(1, vertices - 1)] + ["output"]
    edges = {(k, i) for i in range(1, vertices) for k in cell[f"input{i}"]}
    ins = [sorted(k for k, j in edges if j == v) for v in range(vertices)]
    outs = [sorted(j for k, j in edges if k == v) for v in range(vertices)]
    hashes = [_md5(str((len(outs[v]), len(ins[v]), labels[v]))) for v in range(vertices)]
    for _ in range(vertices):
        hashes = [_md5("".join(sorted(hashes[w] for w in ins[v])) + "|" + "".join(sorted(hashes[w] for w in outs[v]))
                       + "|" + hashes[v]) for v in range(vertices)]
    return _md5(str(sorted(hashes)))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


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
        self._graphs = graph_labels(model_space)
        self.hits = self.misses = 0

    @property
    def hit_rate(self) -> float:
        """The share of ``profile`` calls the memo answered (0 before any)."""
        calls = self.hits + self.misses
        return self.hits / calls if calls else 0.0

    def freeze(self, sample: Sample) -> nn.Module:
        """The frozen network of ``sample``, with NNI's one-line error for a sample that is not in the space."""
        nni_logger = logging.getLogger("nni")
        level = nni_logger.level
        nni_logger.setLevel(max(level, logging.WARNING))  # NNI logs every NasBench101 cell it builds at INFO
        try:
            return self.model_space.freeze(sample)
        except (KeyError, ValueError, TypeError) as error:
            raise InvalidInput(f"sample is not an architecture of {type(self.model_space).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        finally:
            nni_logger.setLevel(level)

    def profile(self, sample: Sample) -> float:
        """Predicted latency (ms) of the architecture ``sample`` (frozen, counted and predicted; memoised)."""
        try:
            key = canonical_key(sample, self._graphs, self.model_space)
        except (KeyError, ValueError, TypeError) as error:  # NNI's ConstraintViolation is a ValueError
            raise InvalidInput(f"sample is not an architecture of {type(self.model_space).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        if key in self._memo:
            self.hits += 1
            return self._memo[key]
        self.misses += 1
        with warnings.catch_warnings():  # a whole network exceeds the block range; uncovered ops warn once
            warnings.simplefilter("ignore", OutOfRangeWarning)
            latency = predict_frozen(self.freeze(sample), self.example_input, self.device_model)
        if len(self._memo) < self.memo_size:
            self._memo[key] = latency
        return latency
