"""The micro-benchmark suite: sample ~100 blocks, measure them (resumable JSONL), fit the device model.

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
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from .blocks import FAMILIES, BlockSpec
from .config import ProfileConfig, config_to_dict
from .features import FEATURE_NAMES, extract_features
from .fileio import append_jsonl, ensure_writable_dir, read_jsonl
from .metrics import regression_metrics
from .model import MODEL_KINDS, LatencyModel
from .timing import measure_latency, resolve_device, resolve_dtype

_logger = logging.getLogger(__name__)

__all__ = ["sample_specs", "measure_specs", "fit_records", "cross_validated_predictions", "run_profile", "ProfileResult", "device_description",
           "load_records", "MIN_POINTS"]

# Enough that every kind still fits on the 4/5 of the rows a cross-validation fold trains on.
MIN_POINTS = max(math.ceil(cls.min_points * 5 / 4) for cls in MODEL_KINDS.values())
# What a measured row must agree on with the current run to be reused on resume.
PROTOCOL_KEYS = ("device", "threads", "dtype", "protocol", "allocator")


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


def load_records(path: str | Path) -> list[dict]:
    """Measured rows of a JSONL dataset; rows with NaN/inf/non-positive latency are dropped with a warning."""
    if not Path(path).exists():
        raise ValueError(f"dataset {str(path)!r} does not exist; create one with `nni-latency profile`")
    records, dropped = [], 0
    for record in read_jsonl(path):
        latency = record.get("latency_ms")
        if not isinstance(latency, (int, float)) or not math.isfinite(latency) or latency <= 0:
            dropped += 1
            continue
        features = record.get("features")
        if not isinstance(features, dict) or any(n not in features for n in FEATURE_NAMES):
            # Rows from an older feature set: recount from the block spec (a forward pass, no timing).
            if not isinstance(record.get("spec"), dict):
                raise ValueError(f"{path}: row {record.get('key', '?')!r} lacks features and a block spec; "
                                 "re-profile to recreate it")
            spec = BlockSpec(**record["spec"])
            record["features"] = extract_features(spec.build(), spec.input_shape).as_dict()
        records.append(record)
    if dropped:
        warnings.warn(f"{path}: dropped {dropped} row(s) with NaN, inf or non-positive latency", stacklevel=2)
    return records


def measure_specs(specs: Sequence[BlockSpec], dataset: Path, protocol_info: dict[str, Any],
                  measure: Callable[[torch.nn.Module, tuple], Any], progress: bool = True,
                  description: str = "profiling") -> list[dict]:
    """Measure every spec not already in ``dataset`` (appending each row as it is measured); return all rows."""
    existing = {r["key"]: r for r in read_jsonl(dataset)} if dataset.exists() else {}
    for record in existing.values():
        mismatch = [k for k in PROTOCOL_KEYS if record.get(k) != protocol_info.get(k)]
        if mismatch:
            key = mismatch[0]
            raise ValueError(f"{dataset} was measured with {key}={record.get(key)!r}, this run uses "
                             f"{protocol_info.get(key)!r}; use another --output-dir or delete the file")
    todo = [s for s in specs if s.key not in existing]
    if existing and todo:
        _logger.info("resuming: %d of %d blocks already measured in %s", len(specs) - len(todo), len(specs), dataset)
    from tqdm.auto import tqdm

    for spec in tqdm(todo, desc=description, unit="block", disable=not progress, dynamic_ncols=True):
        torch.manual_seed(0)
        module = spec.build()
        features = extract_features(module, spec.input_shape)
        measurement = measure(module, spec.input_shape)
        record = {"key": spec.key, "spec": spec.to_dict(), "features": features.as_dict(),
                  "latency_ms": measurement.median_ms, "iqr_ms": measurement.iqr_ms, "noisy": measurement.noisy,
                  "repeats": measurement.repeats, "copies": measurement.copies, **protocol_info}
        append_jsonl(dataset, record)
        existing[spec.key] = record
    wanted = {s.key for s in specs}
    return [r for k, r in existing.items() if k in wanted]


def cross_validated_predictions(records: Sequence[dict], kind: str, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each row's prediction by a ``kind`` model fitted on the other folds (never on the row itself)."""
    from sklearn.model_selection import KFold

    y = np.array([r["latency_ms"] for r in records])
    rows = [r["features"] for r in records]
    predictions = np.empty_like(y)
    splitter = KFold(n_splits=min(folds, len(y)), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for train, test in splitter.split(y):
            fold_model = LatencyModel.fit([rows[i] for i in train], y[train], kind=kind)
            predictions[test] = fold_model.predict_many([rows[i] for i in test])
    return predictions


def cross_validated_metrics(records: Sequence[dict], kind: str, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Metrics of ``kind`` on held-out folds of the profiling rows."""
    y = np.array([r["latency_ms"] for r in records])
    return regression_metrics(y, cross_validated_predictions(records, kind, folds, seed))


def fit_records(records: Sequence[dict], kind: str, device: dict[str, Any] | None = None,
                notes: str = "") -> LatencyModel:
    """Fit ``kind`` on measured rows and attach cross-validated metrics of every kind for comparison."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}: use one of {', '.join(MODEL_KINDS)}")
    if len(records) < MIN_POINTS:
        raise ValueError(f"only {len(records)} measured point(s); fitting needs at least {MIN_POINTS} "
                         "(raise `count` in the config or profile again)")
    y = [r["latency_ms"] for r in records]
    model = LatencyModel.fit([r["features"] for r in records], y, kind=kind, device=device, notes=notes)
    model.metrics = {"points": len(records), "cv_folds": 5,
                     "cv": {k: cross_validated_metrics(records, k) for k in MODEL_KINDS}}
    return model


@dataclass
class ProfileResult:
    model: LatencyModel
    records: list[dict]
    reference: LatencyModel  # the published two-regime model, fitted on the same rows (for the plot)
    output_dir: Path
    seconds: float


def validate_profile_config(config: ProfileConfig, threads: int) -> None:
    """Check every value before anything is measured, so a typo never costs a whole run."""
    from .timing import ALLOCATORS, PROTOCOLS

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


def run_profile(config: ProfileConfig, device: str = "cpu", output_dir: str | Path = "runs/profile",
                threads: int | None = None, progress: bool = True) -> ProfileResult:
    """Benchmark the suite on ``device``, fit ``config.model_kind`` and write the device model and dataset."""
    started = time.perf_counter()
    torch_device = resolve_device(device)
    resolve_dtype(config.dtype, torch_device)
    threads = config.threads if threads is None else threads
    validate_profile_config(config, threads)
    out = ensure_writable_dir(output_dir)
    specs = sample_specs(config)
    timing = config.timing
    protocol_info = {"device": str(torch_device), "threads": threads, "dtype": config.dtype,
                     "protocol": timing.protocol, "allocator": timing.allocator,
                     "device_name": device_description(torch_device)}

    def measure(module, shape):
        return measure_latency(module, shape, torch_device, threads=threads, dtype=config.dtype,
                               protocol=timing.protocol, allocator=timing.allocator,
                               working_set_mb=timing.working_set_mb, min_run_time=timing.min_run_time,
                               max_run_time=timing.max_run_time, max_spread=timing.max_spread)

    records = measure_specs(specs, out / "microbench.jsonl", protocol_info, measure, progress)
    records = [r for r in records if math.isfinite(r["latency_ms"]) and r["latency_ms"] > 0]
    noisy = sum(bool(r.get("noisy")) for r in records)
    device_info = {
        "name": protocol_info.pop("device_name"), "type": torch_device.type, **protocol_info,
        "batch": config.batch, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
        "measurement": ("median of torch.utils.benchmark adaptive_autorange; eval mode, no grad; "
                        f"protocol={timing.protocol}, allocator={timing.allocator}"),
        "noisy_points": noisy, "config": config_to_dict(config),
    }
    model = fit_records(records, config.model_kind, device=device_info)
    reference = model if model.kind == "two_regime" else LatencyModel.fit(
        [r["features"] for r in records], [r["latency_ms"] for r in records], kind="two_regime")
    model.metrics["profile_seconds"] = round(time.perf_counter() - started, 2)
    model.save(out / "device_model.json")
    return ProfileResult(model, records, reference, out, time.perf_counter() - started)
