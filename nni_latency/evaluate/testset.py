"""The held-out test set of a device model: generate blocks from a config, and measure them.

The test set is drawn with its own seed, leaves out every block of the model's profiling suite, and
includes blocks the suite never shows (ShuffleNet units, ResNeXt with 16-32 groups, batch 8), because a
device model is only useful if it predicts blocks it was not fitted on. FBNet candidates are drawn
as whole layers (one input, every candidate) so the ranking inside a layer, which is what steers a
search, can be scored on its own. Scoring is ``evaluation``'s.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InvalidInput
from ..files.config import config_from_dict
from ..files.fileio import ensure_writable_dir
from ..measure.latency import measure_latency
from ..model.model import LatencyModel
from ..profile.run import measure_specs
from ..rows.store import has_current_features, recount_features
from ..runtimes.torch.counting import run_counted
from ..suite.blocks import ACTIVATIONS, FAMILIES, FBNET_CANDIDATES, BlockSpec
from ..suite.config import ProfileConfig, TimingConfig
from ..suite.sampling import round_channels, suite_specs

_logger = logging.getLogger(__name__)

__all__ = ["TestSetConfig", "BlockGroupConfig", "FBNetLayersConfig", "TestBlock", "generate_testset",
           "profiling_keys", "training_keys", "held_out_rows", "measure_testset", "refresh_features", "label_records"]

_FBNET_FAMILY = "fbnet_candidate"


@dataclass
class BlockGroupConfig:
    """One named group of test blocks (reported as a family): a block family and what to vary in it."""

    name: str
    family: str
    count: int
    kernels: list[int] = field(default_factory=lambda: [3])
    expansions: list[int] = field(default_factory=lambda: [1])
    groups: list[int] = field(default_factory=lambda: [1])
    se: bool = False
    activations: list[str] = field(default_factory=lambda: ["relu"])  # ignored by shuffle and skip
    strides: list[int] = field(default_factory=lambda: [1, 2])
    width_ratios: list[float] = field(default_factory=lambda: [0.5, 2.0])  # c_out / c_in, log-uniform
    channel_multiple: int = 8
    min_c_out: int = 8
    resolutions: list[int] | None = None  # None: the test set's
    channels: list[int] | None = None  # [low, high] input channels, log-uniform; None: the test set's
    batches: list[int] | None = None  # None: the test set's


@dataclass
class FBNetLayersConfig:
    """FBNet layers: each draws one input context and contributes every candidate block at it."""

    count: int = 0
    candidates: list[str] | None = None  # None: all of nni_latency.suite.blocks.FBNET_CANDIDATES
    strides: list[int] = field(default_factory=lambda: [1, 2])
    resolutions: list[int] | None = None
    channels: list[int] | None = None
    batches: list[int] | None = None


@dataclass
class TestSetConfig:
    """A held-out test set: the groups to draw, the shared ranges, the cap on block size, the error split."""

    __test__ = False  # not a pytest test class, despite the name

    seed: int = 7
    threshold_ms: float = 2.0  # mdape_low / mdape_high split (the published A100 results use 2 ms)
    resolutions: list[int] = field(default_factory=lambda: [7, 14, 28, 56, 112])
    channels: list[int] = field(default_factory=lambda: [16, 512])
    batches: list[int] | None = None  # drawn uniformly (repeat a value to weight it); None: the model's batch
    max_mflops: float = 1500.0  # blocks above are redrawn (keeps the whole set's measuring time bounded)
    max_mem_melements: float = 60.0  # same, for the memory traffic (input + output elements of non-conv ops)
    fbnet_layers: FBNetLayersConfig = field(default_factory=FBNetLayersConfig)
    groups: list[BlockGroupConfig] = field(default_factory=list)
    timing: TimingConfig | None = None  # None: the timing the model was profiled with


@dataclass(frozen=True)
class TestBlock:
    """A block of the test set, with the family it is reported under and its FBNet layer (if any)."""

    __test__ = False

    spec: BlockSpec
    family: str
    layer: str | None = None


class _Sampler:
    """Draws valid, distinct, size-capped specs; rejected draws are redrawn from the same stream."""

    def __init__(self, config: TestSetConfig, default_batch: int, exclude: set[str]):
        self.config = config
        self.default_batch = default_batch
        self.rng = np.random.default_rng(config.seed)
        self.taken: set[str] = set(exclude)

    def choice(self, values: Sequence, name: str):
        if not values:
            raise InvalidInput(f"test-set config: {name} must list at least one value")
        return values[int(self.rng.integers(len(values)))]

    def channels(self, bounds: Sequence[int] | None, multiple: int) -> int:
        low, high = bounds or self.config.channels
        if not 0 < low <= high:
            raise InvalidInput(f"test-set config: channels [{low}, {high}] must be two positive sizes, low first")
        return round_channels(math.exp(self.rng.uniform(math.log(low), math.log(high))), multiple)

    def batch(self, batches: Sequence[int] | None) -> int:
        options = batches or self.config.batches
        return int(self.choice(options, "batches")) if options else self.default_batch

    def resolution_stride(self, resolutions: Sequence[int] | None, strides: Sequence[int]) -> tuple[int, int]:
        options = resolutions or self.config.resolutions
        resolution = int(self.choice(options, "resolutions"))
        stride = int(self.choice(strides, "strides")) if resolution > min(options) else 1
        return resolution, stride

    def acceptable(self, spec: BlockSpec) -> bool:
        """Buildable, not drawn before, not in the profiling suite, and under the size caps."""
        if spec.key in self.taken:
            return False
        try:
            with torch.device("meta"):  # shapes only: no memory, no compute
                module = spec.build()
            features, _ = run_counted(module, (torch.empty(spec.input_shape, device="meta"),))
        except (RuntimeError, ValueError, IndexError) as error:
            _logger.debug("rejecting %s: %s", spec.key, error)
            return False
        return (features.flops <= self.config.max_mflops * 1e6
                and features.mem_elements <= self.config.max_mem_melements * 1e6)


def _draw_group_spec(group: BlockGroupConfig, sampler: _Sampler) -> BlockSpec:
    resolution, stride = sampler.resolution_stride(group.resolutions, group.strides)
    c_in = sampler.channels(group.channels, group.channel_multiple)
    low, high = group.width_ratios
    ratio = math.exp(sampler.rng.uniform(math.log(low), math.log(high)))
    c_out = max(group.min_c_out, round_channels(c_in * ratio, group.channel_multiple))
    if group.family == "shuffle" and stride == 1:
        c_out = c_in  # a stride-1 ShuffleNet unit keeps its width (half passes through)
    act = str(sampler.choice(group.activations, "activations"))
    act = "relu" if group.family in ("shuffle", "skip") else act  # these have no activation choice
    return BlockSpec(group.family, c_in, c_out, resolution, stride, int(sampler.choice(group.kernels, "kernels")),
                     int(sampler.choice(group.expansions, "expansions")), int(sampler.choice(group.groups, "groups")),
                     group.se, sampler.batch(group.batches), act)


def _draw(sampler: _Sampler, count: int, draw, what: str) -> list:
    """``count`` accepted draws of ``draw()`` (None means rejected); fails loudly if the ranges are too tight."""
    accepted, attempts = [], 0
    while len(accepted) < count:
        attempts += 1
        if attempts > 50 * count + 100:
            raise InvalidInput(f"test-set config: only {len(accepted)} of {count} {what} fit the ranges and size caps; "
                             "widen channels/resolutions or raise max_mflops / max_mem_melements")
        item = draw()
        if item is not None:
            accepted.append(item)
    return accepted


def _fbnet_layer(config: FBNetLayersConfig, sampler: _Sampler, candidates: dict) -> list[TestBlock] | None:
    resolution, stride = sampler.resolution_stride(config.resolutions, config.strides)
    c_in = sampler.channels(config.channels, 8)
    if stride == 2:
        c_out = round_channels(c_in * math.exp(sampler.rng.uniform(math.log(1.25), math.log(2.0))))
    elif sampler.rng.random() < 0.6:
        c_out = c_in  # most FBNet layers keep their width; these are the ones where skip is free
    else:
        c_out = round_channels(c_in * math.exp(sampler.rng.uniform(math.log(1.25), math.log(1.75))))
    batch = sampler.batch(config.batches)
    layer = f"layer_c{c_in}-{c_out}_r{resolution}_s{stride}_b{batch}"
    blocks = []
    for name in config.candidates or list(candidates):
        if name not in candidates:
            raise InvalidInput(f"test-set config: unknown FBNet candidate {name!r}; use names from "
                             f"{', '.join(candidates)}")
        if candidates[name] is None:
            if stride == 1 and c_in == c_out:
                continue  # an identity costs nothing to predict; a search prices it at zero
            spec = BlockSpec("skip", c_in, c_out, resolution, stride, 1, batch=batch)
        else:
            kernel, expansion, groups = candidates[name]
            spec = BlockSpec("mbconv", c_in, c_out, resolution, stride, kernel, expansion, groups, batch=batch)
        blocks.append(TestBlock(spec, _FBNET_FAMILY, layer))
    if not all(sampler.acceptable(b.spec) for b in blocks):
        return None
    sampler.taken.update(b.spec.key for b in blocks)
    return blocks


def generate_testset(config: TestSetConfig, default_batch: int = 1,
                     exclude_keys: Sequence[str] = ()) -> list[TestBlock]:
    """The test blocks of ``config``: deterministic for a seed, never one of ``exclude_keys``."""
    sampler = _Sampler(config, default_batch, set(exclude_keys))
    blocks: list[TestBlock] = []
    if config.fbnet_layers.count > 0:
        layers = _draw(sampler, config.fbnet_layers.count,
                       lambda: _fbnet_layer(config.fbnet_layers, sampler, FBNET_CANDIDATES), "FBNet layers")
        blocks.extend(block for layer in layers for block in layer)
    for group in config.groups:
        if group.family not in FAMILIES:
            raise InvalidInput(f"test-set config: group {group.name!r} has unknown family {group.family!r}; use one of "
                             f"{', '.join(FAMILIES)}")
        unknown = [a for a in group.activations if a not in ACTIVATIONS]
        if unknown:
            raise InvalidInput(f"test-set config: group {group.name!r} has unknown activation {unknown[0]!r}; use "
                             f"some of {', '.join(ACTIVATIONS)}")
        if len(group.width_ratios) != 2 or not 0 < group.width_ratios[0] <= group.width_ratios[1]:
            raise InvalidInput(f"test-set config: group {group.name!r} width_ratios must be [low, high], got "
                             f"{group.width_ratios}")

        def draw(group=group):
            spec = _draw_group_spec(group, sampler)
            if not sampler.acceptable(spec):
                return None
            sampler.taken.add(spec.key)
            return TestBlock(spec, group.name)

        blocks.extend(_draw(sampler, group.count, draw, f"blocks of group {group.name!r}"))
    if not blocks:
        raise InvalidInput("test-set config draws no blocks: give fbnet_layers.count or at least one group")
    return blocks


def profiling_keys(model: LatencyModel) -> set[str]:
    """Keys of the blocks the model was profiled on (regenerated from the config stored in the model)."""
    stored = model.device.get("config")
    if not isinstance(stored, dict):
        return set()
    try:
        return {spec.key for spec in suite_specs(config_from_dict(ProfileConfig, stored))}
    except (ValueError, TypeError, KeyError) as error:
        _logger.debug("cannot regenerate the profiling suite from the model (%s); nothing excluded", error)
        return set()


def training_keys(model: LatencyModel) -> set[str]:
    """Keys of every block the model was fitted on: its profiling suite (regenerated from the config it records)
    and the rows ``nni-latency fit`` recorded it was fitted on (``device.fitted_keys``)."""
    recorded = model.device.get("fitted_keys")
    return profiling_keys(model) | ({str(key) for key in recorded} if isinstance(recorded, list) else set())


def held_out_rows(records: Sequence[dict], model: LatencyModel, source: str | Path) -> tuple[list[dict], int]:
    """The rows of ``records`` the model was not fitted on, and how many were left out (with a warning): a model's
    error on its own training rows is a training error, never a held-out score. Rows that are all the model's own
    (its ``microbench.jsonl``) are refused in one line."""
    trained = training_keys(model)
    kept = [record for record in records if record.get("key") not in trained]
    left_out = len(records) - len(kept)
    if left_out and not kept:
        raise InvalidInput(f"dataset {str(source)!r}: all {left_out} rows are blocks this device model was fitted on "
                           f"(e.g. {records[0].get('key')}), so their error is its training error, not a held-out "
                           "score; measure the held-out test set instead (evaluate without --dataset), or give rows "
                           "measured apart (a testset.jsonl)")
    if left_out:
        example = next(r.get("key") for r in records if r.get("key") in trained)
        warnings.warn(f"dataset {str(source)}: left out {left_out} of {len(records)} rows, blocks this device model "
                      f"was fitted on (e.g. {example}); scoring the other {len(kept)}, which it never saw", stacklevel=3)
    return kept, left_out


def refresh_features(records: Sequence[dict]) -> list[dict]:
    """Rows whose features predate this version's feature set, recounted from their spec (the rows given
    are left as they are). A latency does not depend on how features are counted."""
    refreshed, recounted = [], 0
    for record in records:
        if not has_current_features(record) and isinstance(record.get("spec"), dict):
            record = recount_features(record)
            recounted += 1
        refreshed.append(record)
    if recounted:
        _logger.info("recounted the features of %d row(s) measured with an older feature set", recounted)
    return refreshed


def label_records(records: Sequence[dict], blocks: Sequence[TestBlock]) -> list[dict]:
    """Rows with the ``family`` and ``layer`` of their test block (a row of another set keeps its spec's family)."""
    by_key = {b.spec.key: b for b in blocks}
    labelled = []
    for record in refresh_features(records):
        block = by_key.get(record["key"])
        family = block.family if block else record.get("family") or record.get("spec", {}).get("family", "unknown")
        labelled.append({**record, "family": family, "layer": block.layer if block else record.get("layer")})
    return labelled


def measure_testset(blocks: Sequence[TestBlock], model: LatencyModel, output_dir: str | Path,
                    threads: int | None = None, timing: TimingConfig | None = None,
                    progress: bool = True) -> list[dict]:
    """Measure every block not yet in ``output_dir/testset.jsonl`` with the model's protocol; all rows, in order."""
    out = ensure_writable_dir(output_dir)
    protocol = model.measuring_protocol(threads=threads, timing=timing)
    specs = list({b.spec.key: b.spec for b in blocks}.values())

    def measure(module, shape):
        return measure_latency(module, shape, protocol)

    records = {r["key"]: r for r in measure_specs(specs, out / "testset.jsonl", protocol, measure, progress,
                                                  description="measuring test set")}
    return label_records([records[b.spec.key] for b in blocks], blocks)
