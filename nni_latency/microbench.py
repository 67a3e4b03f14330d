"""The micro-benchmark suite and the profiling run: sample ~100 blocks, measure each (progress, one JSONL
row appended per block, resume after an interruption), then hand the rows to ``fit``.

Sampling is log-stratified on a work proxy (C_in * C_out * H * W / stride^2), so the suite spans the
FLOPs and bytes that CNNs use, from 7x7 maps with many channels to 112x112 maps with few, across
every family, instead of crowding around one size.
"""

from __future__ import annotations

import datetime
import logging
import math
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .blocks import FAMILIES, BlockSpec
from .config import ProfileConfig, config_to_dict
from .deprecation import deprecated_names
from .features import FEATURE_NAMES, extract_features
from .fileio import append_jsonl, ensure_writable_dir, read_jsonl
from .fit import MIN_POINTS, fit_records, reference_model
from .model import MODEL_KINDS, LatencyModel
from .protocol import ALLOCATORS, PROTOCOLS, MeasurementProtocol, protocol_of
from .timing import LatencyMeasurement, measure_latency, resolve_device, resolve_dtype

_logger = logging.getLogger(__name__)

__all__ = ["sample_specs", "round_channels", "measure_specs", "measure_modules", "run_profile", "ProfileResult",
           "profile_protocol", "validate_profile_config", "device_description", "load_records", "recount_features",
           "has_current_features",
           "MIN_POINTS"]


def round_channels(value: float, multiple: int = 8) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def _random_spec(family: str, rng: np.random.Generator, config: ProfileConfig) -> BlockSpec:
    low, high = config.channels
    c_in = round_channels(math.exp(rng.uniform(math.log(low), math.log(high))))
    c_out = round_channels(c_in * math.exp(rng.uniform(math.log(0.5), math.log(2.0))))
    resolution = int(rng.choice(config.resolutions))
    stride = int(rng.choice(config.strides)) if resolution > min(config.resolutions) else 1
    kernel = int(rng.choice(config.kernels))
    expansion, groups = 1, 1
    act = str(rng.choice(config.activations))
    se = family in ("mbconv", "basic", "bottleneck") and rng.random() < config.se_share
    batch = int(rng.choice(config.extra_batches)) if config.extra_batches and rng.random() < config.extra_batch_share \
        else config.batch
    if family == "mbconv":
        expansion = int(rng.choice(config.expansions))
        groups = int(rng.choice([g for g in config.groups if g <= 2] or [1]))  # FBNet groups its 1x1s by 2
    elif family in ("conv_bn_relu", "bottleneck"):
        groups = int(rng.choice(config.groups)) if rng.random() < 0.4 else 1
        kernel = 1 if family == "conv_bn_relu" and rng.random() < 0.3 else kernel
    elif family == "basic":
        kernel = 3
    elif family in ("skip", "maxpool", "avgpool"):
        c_out, act, se = c_in, "relu", False
        stride = 1 if family == "skip" else stride
        kernel = int(rng.choice([2, 3])) if family != "skip" else kernel
    if family == "bottleneck":
        c_out = max(c_out, 4 * 8 * groups)
    if family == "conv_bn_relu" and groups == 1 and rng.random() < 0.2:
        # A network stem: RGB input at full resolution (C_in = 3 is handled unlike any padded channel count).
        c_in, stride, resolution = 3, 2, int(rng.choice([max(config.resolutions), 2 * max(config.resolutions)]))
        kernel = int(rng.choice([3, 5, 7]))
    if family == "classifier":
        c_in = round_channels(c_in * 4)
        c_out, resolution, stride, kernel = int(rng.choice([10, 100, 1000])), int(rng.choice([1, 7])), 1, 1
    if family == "conv_bn_relu" and groups > 1:
        c_in, c_out = round_channels(c_in, 8 * groups), round_channels(c_out, 8 * groups)
    return BlockSpec(family, c_in, c_out, resolution, stride, kernel, expansion, groups, se, batch, act)


def _work_proxy(spec: BlockSpec) -> float:
    expansion = max(spec.expansion, 1)
    return spec.batch * spec.c_in * spec.c_out * expansion * spec.resolution**2 / spec.stride**2


def sample_specs(config: ProfileConfig) -> list[BlockSpec]:
    """``config.count`` distinct blocks, allocated to families by weight, log-stratified on work per family."""
    unknown = [f for f in config.families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown block family {unknown[0]!r} in families: use some of {', '.join(FAMILIES)}")
    rng = np.random.default_rng(config.seed)
    weights = np.array(list(config.families.values()), float)
    if weights.sum() <= 0:
        raise ValueError("families: give at least one family a positive weight")
    counts = np.floor(weights / weights.sum() * config.count).astype(int)
    for i in np.argsort(-weights)[: config.count - counts.sum()]:
        counts[i] += 1
    specs: list[BlockSpec] = []
    for family, count in zip(config.families, counts):
        if count == 0:
            continue
        pool = {s.key: s for s in (_random_spec(family, rng, config) for _ in range(40 * count))}
        pool = sorted(pool.values(), key=_work_proxy)
        # Drop blocks whose FLOPs exceed the cap, using the proxy (2 MACs x kernel area) as an upper bound.
        pool = [s for s in pool if 2 * _work_proxy(s) * s.kernel**2 / 1e6 <= config.max_mflops * 4] or pool
        strata = np.linspace(math.log(_work_proxy(pool[0])), math.log(_work_proxy(pool[-1])), count + 1)
        chosen: dict[str, BlockSpec] = {}
        for low, high in zip(strata[:-1], strata[1:]):
            members = [s for s in pool if low <= math.log(_work_proxy(s)) <= high and s.key not in chosen]
            pick = members[rng.integers(len(members))] if members else None
            if pick is not None:
                chosen[pick.key] = pick
        leftovers = [s for s in pool if s.key not in chosen]
        while len(chosen) < count and leftovers:
            pick = leftovers.pop(rng.integers(len(leftovers)))
            chosen[pick.key] = pick
        specs.extend(chosen.values())
    return specs


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_current_features(record: dict) -> bool:
    """Whether a row holds every feature of this version (else ``recount_features`` recounts them)."""
    features = record.get("features")
    return isinstance(features, dict) and all(name in features for name in FEATURE_NAMES)


def recount_features(record: dict) -> dict:
    """A copy of ``record`` whose features are counted again from its block spec, at its protocol's vector width.

    Rows measured with an older feature set stay usable: a latency does not depend on how features are counted.
    """
    spec = BlockSpec(**record["spec"])
    features = extract_features(spec.build(seed=0), spec.input_shape, protocol_of(record).vector_width)
    return {**record, "features": features.as_dict()}


def load_records(path: str | Path) -> list[dict]:
    """Measured rows of a JSONL dataset; rows with NaN/inf/non-positive latency are dropped with a warning,
    rows from an older feature set are recounted from their block spec."""
    if not Path(path).exists():
        raise ValueError(f"dataset {str(path)!r} does not exist; create one with `nni-latency profile`")
    records, dropped = [], 0
    for record in read_jsonl(path):
        latency = record.get("latency_ms")
        if not isinstance(latency, (int, float)) or not math.isfinite(latency) or latency <= 0:
            dropped += 1
            continue
        if not has_current_features(record):
            if not isinstance(record.get("spec"), dict):
                raise ValueError(f"{path}: row {record.get('key', '?')!r} lacks features and a block spec; "
                                 "re-profile to recreate it")
            record = recount_features(record)
        records.append(record)
    if dropped:
        warnings.warn(f"{path}: dropped {dropped} row(s) with NaN, inf or non-positive latency", stacklevel=2)
    return records


def _progress(items: Sequence, description: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, unit="block", disable=not progress, dynamic_ncols=True)


def measure_specs(specs: Sequence[BlockSpec], dataset: Path, protocol: MeasurementProtocol | dict[str, Any],
                  measure: Callable[[torch.nn.Module, tuple], LatencyMeasurement] | None = None,
                  progress: bool = True, description: str = "profiling", device_name: str | None = None) -> list[dict]:
    """Measure every spec not already in ``dataset`` (appending each row as it is measured); return all rows.

    Every row holds the block, its features, the measurement and the fields of ``protocol``; rows already
    in ``dataset`` must have been measured under the same protocol. ``measure(module, shape)`` defaults to
    ``measure_latency`` under ``protocol``.
    """
    protocol = protocol_of(protocol)
    if measure is None:
        def measure(module, shape):
            return measure_latency(module, shape, protocol)

    existing = {r["key"]: r for r in read_jsonl(dataset)} if dataset.exists() else {}
    for record in existing.values():
        recorded = protocol_of(record)
        mismatch = recorded.differences(protocol)
        if mismatch:
            key = mismatch[0]
            raise ValueError(f"{dataset} was measured with {key}={getattr(recorded, key)!r}, this run uses "
                             f"{getattr(protocol, key)!r}; use another --output-dir or delete the file")
    todo = [s for s in specs if s.key not in existing]
    if existing and todo:
        _logger.info("resuming: %d of %d blocks already measured in %s", len(specs) - len(todo), len(specs), dataset)
    extra = {} if device_name is None else {"device_name": device_name}
    for spec in _progress(todo, description, progress):
        module = spec.build(seed=0)
        features = extract_features(module, spec.input_shape, protocol.vector_width)
        measurement = measure(module, spec.input_shape)
        record = {"key": spec.key, "spec": spec.to_dict(), "features": features.as_dict(),
                  "latency_ms": measurement.median_ms, "iqr_ms": measurement.iqr_ms, "noisy": measurement.noisy,
                  "repeats": measurement.repeats, "copies": measurement.copies, **protocol.to_dict(), **extra}
        append_jsonl(dataset, record)
        existing[spec.key] = record
    wanted = {s.key for s in specs}
    return [r for k, r in existing.items() if k in wanted]


def measure_modules(jobs: Sequence[tuple[str, torch.nn.Module, Any]], protocol: MeasurementProtocol,
                    progress: bool = False, description: str = "measuring",
                    **options: Any) -> list[LatencyMeasurement]:
    """Measure each ``(label, module, input_shape)`` job under ``protocol`` (``options`` go to
    ``measure_latency``), showing the label of the one being measured."""
    results = []
    with _progress(jobs, description, progress) as bar:
        for label, module, shape in bar:
            bar.set_postfix_str(label, refresh=False)
            results.append(measure_latency(module, shape, protocol, **options))
    return results


@dataclass
class ProfileResult:
    model: LatencyModel
    records: list[dict]
    reference: LatencyModel  # the published two-regime model, fitted on the same rows (for the plot)
    output_dir: Path
    seconds: float


def validate_profile_config(config: ProfileConfig, threads: int) -> None:
    """Check every value before anything is measured, so a typo never costs a whole run."""
    checks = [
        (config.model_kind in MODEL_KINDS,
         f"unknown model kind {config.model_kind!r} in model_kind: use one of {', '.join(MODEL_KINDS)}"),
        (threads >= 1, f"threads must be at least 1, got {threads}"),
        (config.count >= MIN_POINTS, f"count must be at least {MIN_POINTS} to fit and cross-validate, got {config.count}"),
        (config.batch >= 1 and all(b >= 1 for b in config.extra_batches), "batch sizes must be at least 1"),
        (len(config.channels) == 2 and 1 <= config.channels[0] <= config.channels[1],
         f"channels must be [low, high] with 1 <= low <= high, got {config.channels}"),
        (bool(config.resolutions) and all(r >= 1 for r in config.resolutions), "resolutions must be positive"),
        (config.timing.protocol in PROTOCOLS, f"timing.protocol must be one of {', '.join(PROTOCOLS)}"),
        (config.timing.allocator in ALLOCATORS, f"timing.allocator must be one of {', '.join(ALLOCATORS)}"),
        (0 < config.timing.min_run_time <= config.timing.max_run_time,
         "timing: need 0 < min_run_time <= max_run_time"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def profile_protocol(config: ProfileConfig, device: str = "cpu", threads: int | None = None) -> MeasurementProtocol:
    """The protocol a profiling run of ``config`` on ``device`` measures under (the YAML ``timing`` section
    becomes the protocol here, and only here); every value is checked first."""
    torch_device = resolve_device(device)
    resolve_dtype(config.dtype, torch_device)
    threads = config.threads if threads is None else threads
    validate_profile_config(config, threads)
    timing = config.timing
    return MeasurementProtocol(device=str(torch_device), threads=threads, dtype=config.dtype, batch=config.batch,
                               protocol=timing.protocol, allocator=timing.allocator).with_timing(timing)


def run_profile(config: ProfileConfig, device: str = "cpu", output_dir: str | Path = "runs/profile",
                threads: int | None = None, progress: bool = True) -> ProfileResult:
    """Benchmark the suite on ``device``, fit ``config.model_kind`` and write the device model and dataset.

    The allocator policy is left to the caller (``timing.apply_allocator_policy``; the command line does it).
    """
    started = time.perf_counter()
    protocol = profile_protocol(config, device, threads)
    out = ensure_writable_dir(output_dir)
    specs = sample_specs(config)
    name = device_description(torch.device(protocol.device))
    records = measure_specs(specs, out / "microbench.jsonl", protocol, progress=progress, device_name=name)
    records = [r for r in records if math.isfinite(r["latency_ms"]) and r["latency_ms"] > 0]
    device_info = {
        "name": name, "type": protocol.device_type, **protocol.to_dict(), "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "measurement": ("median of torch.utils.benchmark adaptive_autorange; eval mode, no grad; "
                        f"protocol={protocol.protocol}, allocator={protocol.allocator}"),
        "noisy_points": sum(bool(r.get("noisy")) for r in records), "config": config_to_dict(config),
    }
    model = fit_records(records, config.model_kind, device=device_info)
    reference = reference_model(records, model)
    model.metrics["profile_seconds"] = round(time.perf_counter() - started, 2)
    model.save(out / "device_model.json")
    return ProfileResult(model, records, reference, out, time.perf_counter() - started)


__getattr__ = deprecated_names(__name__, {
    "cross_validated_predictions": "nni_latency.fit:cross_validated_predictions",
    "cross_validated_metrics": "nni_latency.fit:cross_validated_metrics",
    "PROTOCOL_KEYS": "nni_latency.protocol:RESUME_FIELDS",
})
