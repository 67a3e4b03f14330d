"""The micro-benchmark suite and the profiling run: sample ~110 blocks and 30 chains, measure each (progress, one
JSONL row appended per block, resume after an interruption), then hand the rows to ``fit``.

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

import torch

from .blocks import BlockSpec, spec_from_dict
from .suite import round_channels, sample_specs, suite_specs
from .config import ProfileConfig, config_to_dict
from .deprecation import deprecated_names
from .drift import record_probe
from .features import FEATURE_NAMES, extract_features
from .fileio import ensure_writable_dir, read_jsonl
from .measuring import combine_rounds, measure_rounds, progress_bar
from .fit import MIN_POINTS, fit_records, reference_model
from .model import MODEL_KINDS, LatencyModel
from .protocol import ALLOCATORS, PROTOCOLS, MeasurementProtocol, protocol_of
from .resume import check_resume, set_aside
from .timing import LatencyMeasurement, measure_latency, resolve_device, resolve_dtype

_logger = logging.getLogger(__name__)

# The largest suite a config may ask for (``count``): far beyond what a fit needs, and sampled in minutes.
MAX_COUNT = 2000

__all__ = ["sample_specs", "round_channels", "measure_specs", "measure_modules", "run_profile", "ProfileResult",
           "profile_protocol", "validate_profile_config", "device_description", "load_records", "recount_features",
           "has_current_features",
           "MIN_POINTS", "MAX_COUNT"]


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
    spec = spec_from_dict(record["spec"])
    protocol = protocol_of(record)
    features = extract_features(spec.build(seed=0), spec.input_shape, protocol.vector_width, protocol.threads)
    return {**record, "features": features.as_dict()}


def _combined_rows(rows) -> list[dict]:
    # Rows of one block measured in several rounds become one row (``measuring.combine_rounds``).
    by_key: dict[str, list[dict]] = {}
    for index, row in enumerate(rows):
        by_key.setdefault(row.get("key", f"<row {index}>"), []).append(row)
    return [combine_rounds(group) if len(group) > 1 else group[0] for group in by_key.values()]


def load_records(path: str | Path) -> list[dict]:
    """Measured rows of a JSONL dataset; rows with NaN/inf/non-positive latency are dropped with a warning,
    rows from an older feature set are recounted from their block spec."""
    if not Path(path).exists():
        raise ValueError(f"dataset {str(path)!r} does not exist; create one with `nni-latency profile`")
    records, dropped = [], 0
    for record in _combined_rows(read_jsonl(path)):
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
    if dropped and not records:
        raise ValueError(f"{path}: all {dropped} row(s) have a NaN, inf or non-positive latency, so there is nothing "
                         "to fit; profile again to measure them")
    if dropped:
        warnings.warn(f"{path}: dropped {dropped} row(s) with NaN, inf or non-positive latency", stacklevel=2)
    return records


def measure_specs(specs: Sequence[BlockSpec], dataset: Path, protocol: MeasurementProtocol | dict[str, Any],
                  measure: Callable[[torch.nn.Module, tuple], LatencyMeasurement] | None = None,
                  progress: bool = True, description: str = "profiling", device_name: str | None = None) -> list[dict]:
    """Measure every spec in ``protocol.rounds`` interleaved passes, appending one row per (block, pass) to
    ``dataset`` as it is taken and skipping what is already there; return one combined row per spec.

    Every row holds the block, its features, the measurement and the fields of ``protocol``; rows already
    in ``dataset`` must have been measured under the same protocol. ``measure(module, shape)`` defaults to
    ``measure_latency`` under ``protocol``.
    """
    protocol = protocol_of(protocol)
    if measure is None:
        def measure(module, shape):
            # With several rounds a noisy pass is outvoted by the others: no need to re-time it at once.
            return measure_latency(module, shape, protocol, retries=0 if protocol.rounds > 1 else 1)

    by_key = {spec.key: spec for spec in specs}
    extra = {} if device_name is None else {"device_name": device_name}

    counted: dict[str, dict[str, float]] = {}  # features once per block, whatever the number of rounds

    def measure_one(key: str) -> dict[str, Any]:
        spec = by_key[key]
        module = spec.build(seed=0)
        if key not in counted:
            counted[key] = extract_features(module, spec.input_shape, protocol.vector_width, protocol.threads).as_dict()
        measurement = measure(module, spec.input_shape)
        return {"spec": spec.to_dict(), "features": counted[key], **measurement.to_dict(), **extra}

    combined = measure_rounds(by_key, measure_one, dataset, protocol, progress=progress, description=description)
    return [combined[key] for key in by_key if key in combined]


def measure_modules(jobs: Sequence[tuple[str, torch.nn.Module, Any]], protocol: MeasurementProtocol,
                    progress: bool = False, description: str = "measuring",
                    **options: Any) -> list[LatencyMeasurement]:
    """Measure each ``(label, module, input_shape)`` job under ``protocol`` (``options`` go to
    ``measure_latency``), showing the label of the one being measured."""
    results = []
    with progress_bar(len(jobs), description, progress) as bar:
        for label, module, shape in jobs:
            bar.set_postfix_str(label, refresh=False)
            results.append(measure_latency(module, shape, protocol, **options))
            bar.update()
    return results


@dataclass
class ProfileResult:
    model: LatencyModel
    records: list[dict]
    reference: LatencyModel  # the published two-regime model, fitted on the same rows (for the plot)
    output_dir: Path
    seconds: float
    measured: int = 0  # blocks measured by this run
    reused: int = 0  # blocks whose measurements this run found in the dataset (a resumed run)


def validate_profile_config(config: ProfileConfig, threads: int) -> None:
    """Check every value before anything is measured, so a typo never costs a whole run."""
    checks = [
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
                threads: int | None = None, progress: bool = True, force: bool = False,
                host_load: Callable[[], dict] | None = None) -> ProfileResult:
    """Benchmark the suite on ``device``, fit ``config.model_kind`` and write the device model and dataset.

    A rerun into the same ``output_dir`` resumes only if it measures the same thing (``resume.check_resume``);
    ``force`` moves the old dataset and model aside and starts afresh. The allocator policy is left to the
    caller (``timing.apply_allocator_policy``; the command line does it).
    """
    started = time.perf_counter()
    protocol = profile_protocol(config, device, threads)
    out = ensure_writable_dir(output_dir)
    _logger.info("sampling %d blocks and %d chains (seed %d)", config.count, config.chains.count, config.seed)
    specs = suite_specs(config)
    dataset, model_path = out / "microbench.jsonl", out / "device_model.json"
    if force:
        set_aside([dataset, model_path])
    reused = check_resume(dataset, model_path, config_to_dict(config), protocol, (spec.key for spec in specs))
    name = device_description(torch.device(protocol.device))
    records = measure_specs(specs, dataset, protocol, progress=progress, device_name=name)
    records = [r for r in records if math.isfinite(r["latency_ms"]) and r["latency_ms"] > 0]
    device_info = {
        "name": name, "type": protocol.device_type, **protocol.to_dict(), "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "measurement": (f"quantile {protocol.quantile:g} of torch.utils.benchmark adaptive_autorange runs over "
                        f"{protocol.rounds} interleaved round(s); eval mode, no grad; "
                        f"protocol={protocol.protocol}, allocator={protocol.allocator}"),
        "noisy_points": sum(bool(r.get("noisy")) for r in records), "config": config_to_dict(config),
        "probe": record_probe(protocol),  # the device's speed now, for the drift check of later measurements
        **({"host_load": host_load()} if host_load else {}),  # how busy the host was (hostload.HostLoad)
    }
    model = fit_records(records, config.model_kind, device=device_info)
    reference = reference_model(records, model)
    model.metrics["profile_seconds"] = round(time.perf_counter() - started, 2)
    model.save(model_path)
    return ProfileResult(model, records, reference, out, time.perf_counter() - started,
                         measured=len(specs) - len(reused), reused=len(reused))


__getattr__ = deprecated_names(__name__, {
    "cross_validated_predictions": "nni_latency.fit:cross_validated_predictions",
    "cross_validated_metrics": "nni_latency.fit:cross_validated_metrics",
    "PROTOCOL_KEYS": "nni_latency.protocol:RESUME_FIELDS",
})
