"""The profiling run: sample the suite (about 110 blocks and 30 chains), measure each block through the protocol's
runtime and the in-place time of every operator call it makes (progress, one JSONL row appended per block and
round, resume after an interruption), then fit the device model on those rows.

Each block is counted, timed whole and timed operator by operator by one runtime (``runtimes``), under one protocol
(thread count, rotated copies, allocator), so that the operator times add up to the block: the profile summary
prints how closely they do (``rows.ops.op_sum_ratios``).
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..count.features import BlockFeatures
from ..errors import ConfigError
from ..files.config import config_to_dict
from ..files.fileio import ensure_writable_dir, set_aside
from ..fit.fitting import MIN_POINTS, fit_with_cv, reference_model
from ..measure.drift import record_probe
from ..measure.latency import measure_latency
from ..measure.rounds import measure_rounds
from ..model.model import LatencyModel
from ..model.regressors import MODEL_KINDS
from ..rows.ops import op_check
from ..rows.resume import check_resume
from ..rows.store import RowStore
from ..runtimes import RUNTIMES, get_runtime
from ..runtimes.measurement import LatencyMeasurement
from ..runtimes.protocol import ALLOCATORS, PROTOCOLS, MeasurementProtocol, protocol_of
from ..runtimes.torch.device import device_description, resolve_device, resolve_dtype
from ..suite.blocks import BlockSpec
from ..suite.config import ProfileConfig
from ..suite.sampling import suite_specs

_logger = logging.getLogger(__name__)

__all__ = ["run_profile", "ProfileResult", "measure_specs", "profile_protocol", "validate_profile_config",
           "MAX_COUNT"]

# The largest suite a config may ask for (``count``): far beyond what a fit needs, and sampled in minutes.
MAX_COUNT = 2000


def _op_fields(features: BlockFeatures, module, shape, protocol: MeasurementProtocol) -> dict:
    """The row's ``ops`` (each call as [operator, class, ms, features]) and the clock's removed cost."""
    timed = get_runtime(protocol.runtime).time_ops(module, shape, protocol)
    if timed is None or list(timed.ops) != [record.op for record in features.ops]:
        return {}
    ops = [[record.op, record.cls, float(f"{ms:.6g}"), record.features] for record, ms in zip(features.ops, timed.ms)]
    return {"ops": ops, "op_overhead_ms": float(f"{timed.overhead_ms:.6g}")}


def measure_specs(specs: Sequence[BlockSpec], dataset: Path, protocol: MeasurementProtocol | dict[str, Any],
                  measure: Callable[[Any, tuple], LatencyMeasurement] | None = None,
                  progress: bool = True, description: str = "profiling", device_name: str | None = None,
                  existing: dict[str, list[dict]] | None = None, ops: bool = True) -> list[dict]:
    """Measure every spec in ``protocol.rounds`` interleaved passes, appending one row per (block, pass) to
    ``dataset`` as it is taken and skipping what is already there; return one combined row per spec.

    Every row holds the block, its features, the measurement, the fields of ``protocol`` and (``ops``) the
    in-place time of each of its operator calls. ``existing``: the rows already in ``dataset``, checked by the
    caller (``rows.resume.check_resume``); otherwise they are read and checked here. ``measure(module, shape)``
    defaults to ``measure_latency`` under ``protocol``.
    """
    protocol = protocol_of(protocol)
    runtime = get_runtime(protocol.runtime)
    if measure is None:
        def measure(module, shape):
            # With several rounds a noisy pass is outvoted by the others: no need to re-time it at once.
            return measure_latency(module, shape, protocol, retries=0 if protocol.rounds > 1 else 1)

    by_key = {spec.key: spec for spec in specs}
    extra = {} if device_name is None else {"device_name": device_name}
    counted: dict[str, BlockFeatures] = {}  # features once per block, whatever the number of rounds
    timed: set[str] = set()

    def measure_one(key: str) -> dict[str, Any]:
        spec = by_key[key]
        module = spec.build(seed=0)
        if key not in counted:
            counted[key] = runtime.count_shape(module, spec.input_shape, protocol.counting)
        measurement = measure(module, spec.input_shape)
        # Each block's calls are timed in place once per run (their medians over many passes); its total in
        # every round.
        op_fields = _op_fields(counted[key], module, spec.input_shape, protocol) if ops and key not in timed else {}
        timed.add(key)
        return {"spec": spec.to_dict(), "features": counted[key].as_dict(), **measurement.to_dict(), **op_fields,
                **extra}

    combined = measure_rounds(by_key, measure_one, RowStore(dataset), protocol, progress=progress,
                              description=description, existing=existing)
    return [combined[key] for key in by_key if key in combined]


@dataclass
class ProfileResult:
    model: LatencyModel
    records: list[dict]
    reference: LatencyModel  # the published two-regime model, fitted on the same rows (for the plot)
    output_dir: Path
    seconds: float
    measured: int = 0  # measurements (block x round) taken by this run
    reused: int = 0  # measurements this run found in the dataset (a resumed run)
    held_out: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> cross-validated predictions per row


def validate_profile_config(config: ProfileConfig, threads: int) -> None:
    """Check every value before anything is measured, so a typo never costs a whole run."""
    checks = [
        (config.runtime in RUNTIMES, f"unknown runtime {config.runtime!r}: use one of {', '.join(RUNTIMES)}"),
        (config.model_kind in MODEL_KINDS,
         f"unknown model kind {config.model_kind!r} in model_kind: use one of {', '.join(MODEL_KINDS)}"),
        (threads >= 1, f"threads must be at least 1, got {threads}"),
        (config.count >= MIN_POINTS, f"count must be at least {MIN_POINTS} to fit and cross-validate, got {config.count}"),
        (config.count <= MAX_COUNT, f"count must be at most {MAX_COUNT}, got {config.count}: the default 110 blocks "
                                    "and 30 chains take about a minute; sampling alone grows with count squared"),
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
            raise ConfigError(message)


def profile_protocol(config: ProfileConfig, device: str = "cpu", threads: int | None = None,
                     runtime: str | None = None) -> MeasurementProtocol:
    """The protocol a profiling run of ``config`` on ``device`` measures under (the YAML ``timing`` section
    becomes the protocol here, and only here); every value is checked first, and the runtime's packages are
    looked for (one line naming the extra when they are missing). Commands build it once and pass it down."""
    torch_device = resolve_device(device)
    resolve_dtype(config.dtype, torch_device)
    threads = config.threads if threads is None else threads
    runtime = config.runtime if runtime is None else runtime
    validate_profile_config(config, threads)
    get_runtime(runtime)  # installed?
    timing = config.timing
    return MeasurementProtocol(device=str(torch_device), threads=threads, dtype=config.dtype, batch=config.batch,
                               protocol=timing.protocol, allocator=timing.allocator,
                               runtime=runtime).with_timing(timing)


def run_profile(config: ProfileConfig, protocol: MeasurementProtocol | str = "cpu",
                output_dir: str | Path = "runs/profile", threads: int | None = None, progress: bool = True,
                force: bool = False, host_load: Callable[[], dict] | None = None) -> ProfileResult:
    """Benchmark the suite under ``protocol`` (or on a device, e.g. ``"cpu"``, under ``profile_protocol(config,
    device, threads)``), fit ``config.model_kind`` and write the device model and dataset.

    A rerun into the same ``output_dir`` resumes only if it measures the same thing (``rows.resume``); ``force``
    moves the old dataset and model aside and starts afresh. The allocator policy is left to the caller
    (``measure.allocator.apply_allocator_policy``; the command line does it). ``host_load()`` describes how busy
    the host was while measuring (``measure.hostload``), recorded in the model.
    """
    started = time.perf_counter()
    if not isinstance(protocol, MeasurementProtocol):
        protocol = profile_protocol(config, protocol, threads)
    out = ensure_writable_dir(output_dir)
    _logger.info("sampling %d blocks and %d chains (seed %d)", config.count, config.chains.count, config.seed)
    specs = suite_specs(config)
    dataset, model_path = out / "microbench.jsonl", out / "device_model.json"
    if force:
        set_aside([dataset, model_path])
    name = device_description(protocol.device)
    existing = check_resume(RowStore(dataset), model_path, config_to_dict(config), protocol,
                            (spec.key for spec in specs), name)
    records = measure_specs(specs, dataset, protocol, progress=progress, device_name=name, existing=existing)
    records = [r for r in records if math.isfinite(r["latency_ms"]) and r["latency_ms"] > 0]
    keys = {spec.key for spec in specs}
    reused = sum(min(len(rows), protocol.rounds) for key, rows in existing.items() if key in keys)
    device_info = {
        "name": name, "type": protocol.device_type, **protocol.to_dict(),
        **get_runtime(protocol.runtime).describe(protocol), "date": datetime.date.today().isoformat(),
        "statistic": protocol.statistic,
        "measurement": (f"quantile {protocol.quantile:g} of adaptive runs over {protocol.rounds} interleaved "
                        f"round(s) in {protocol.runtime}; eval mode, no grad; protocol={protocol.protocol}, "
                        f"allocator={protocol.allocator}; every operator call also timed in place"),
        "noisy_points": sum(bool(r.get("noisy")) for r in records), "config": config_to_dict(config),
        "probe": record_probe(protocol),  # the device's speed now, for the drift check of later measurements
        **({"host_load": host_load()} if host_load else {}),  # how busy the host was (hostload.HostLoad)
    }
    model, held_out = fit_with_cv(records, config.model_kind, device=device_info)
    model.device["op_sums"] = op_check(records, model)  # the op-level times with the fitted overheads
    reference = reference_model(records, model)
    model.metrics["profile_seconds"] = round(time.perf_counter() - started, 2)
    model.save(model_path)
    return ProfileResult(model, records, reference, out, time.perf_counter() - started,
                         measured=protocol.rounds * len(specs) - reused, reused=reused, held_out=held_out)
