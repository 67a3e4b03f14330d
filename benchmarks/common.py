"""What the benchmark sections share: the repository root, the profile they all predict with (measured once, or
reused from ``--profile-dir``), and the timing settings every measurement of a run uses.

``run.py`` (the whole document) and each section run alone (``whole_networks.py``) import it; it imports no
other benchmark module, so the benchmarks import one another without a circle (tests/test_layout.py).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_logger = logging.getLogger("benchmarks")

REPO = Path(__file__).resolve().parent.parent


def timing_settings(profile_timing, threads: int, quick: bool) -> dict[str, Any]:
    """Keyword arguments of ``measure_latency`` for every measurement of this run (the profile's timing)."""
    return {"threads": threads, "working_set_mb": profile_timing.working_set_mb,
            "min_run_time": 0.02 if quick else profile_timing.min_run_time,
            "max_run_time": 0.1 if quick else profile_timing.max_run_time,
            "max_spread": profile_timing.max_spread, "quantile": profile_timing.quantile}


def profile_timing(profile: Profile):
    """The timing budget the profile was measured with (its protocol's ``working_set_mb``, run times, spread)."""
    from nni_latency.runtimes.protocol import protocol_of

    return protocol_of(profile.model)


@dataclass
class Profile:
    model: Any
    records: list[dict]
    seconds: float
    directory: Path
    reused: bool


def ensure_profile(args: argparse.Namespace) -> Profile:
    from nni_latency.files.config import load_config, packaged_config
    from nni_latency.fit.fitting import fit_records
    from nni_latency.model.model import LatencyModel
    from nni_latency.profile.run import run_profile
    from nni_latency.rows.store import load_records
    from nni_latency.suite.config import ProfileConfig

    directory = Path(args.profile_dir) if args.profile_dir else args.cache_dir / "profile"
    if (directory / "device_model.json").exists():
        records = load_records(directory / "microbench.jsonl")
        try:
            model = LatencyModel.load(directory / "device_model.json")
        except ValueError as error:  # written by an older version: refit the same kind on the same rows
            _logger.warning("%s; refitting it from microbench.jsonl", error)
            stored = json.loads((directory / "device_model.json").read_text())
            model = fit_records(records, stored["kind"], device=stored.get("device", {}))
            model.metrics["profile_seconds"] = stored.get("metrics", {}).get("profile_seconds", float("nan"))
        seconds = float(model.metrics.get("profile_seconds", float("nan")))
        _logger.info("reusing the profile in %s (%d blocks, %.1f s when it was measured)", directory, len(records),
                     seconds)
        return Profile(model, records, seconds, directory, True)
    if args.profile_dir:
        raise ValueError(f"--profile-dir {directory} has no device_model.json; run `nni-latency profile` first")
    overrides = ["count=60", "timing.min_run_time=0.02", "timing.max_run_time=0.1"] if args.quick else []
    config = load_config(packaged_config("profile_cpu.yaml"), ProfileConfig, overrides)
    _logger.info("profiling %d blocks into %s", config.count, directory)
    result = run_profile(config, "cpu", directory, threads=args.threads, progress=not args.no_progress)
    return Profile(result.model, result.records, result.seconds, directory, False)
