"""Speed and memory of the core (issue targets): profile wall time incl. fit, prediction rows/s, peak RSS.

Run: python benchmarks/core_speed.py [--output-dir runs/speed]   (not part of CI; takes about a minute)
Prints a markdown table that docs/BENCHMARKS.md quotes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import hostcheck
import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", default="runs/speed")
    parser.add_argument("--threads", type=int, default=1)
    hostcheck.add_argument(parser)
    args = parser.parse_args()
    out = Path(args.output_dir)

    host = hostcheck.start(args, "benchmarks/core_speed.py")
    # Profile in a child process so its wall time and peak memory are its own.
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", "nni_latency.cli.dispatch", "profile", "--device", "cpu", "--threads",
                            str(args.threads), "--output-dir", str(out), "--no-progress",
                            "--force"],  # a fresh profile; an earlier one there is kept aside, never deleted
                           capture_output=True, text=True, check=True)
    profile_seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    from nni_latency import FEATURE_NAMES, LatencyModel

    model = LatencyModel.load(out / "device_model.json")
    rows = np.abs(np.random.default_rng(0).normal(size=(200_000, len(FEATURE_NAMES)))) * 1e6
    model.predict(rows[:10])
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        model.predict(rows)
        best = min(best, time.perf_counter() - started)
    rows_per_second = len(rows) / best

    results = {"profile_seconds_incl_fit": round(profile_seconds, 1), "profile_peak_rss_mb": round(peak_mb),
               "predict_many_rows_per_s": round(rows_per_second), "blocks": model.metrics.get("points")}
    print(json.dumps(results, indent=2))
    print("\n| measure | goal | measured |\n|---|---|---|")
    print(f"| `nni-latency profile --device cpu` wall time, fit included | <= 60 s | {profile_seconds:.1f} s |")
    print(f"| peak memory (RSS) of that run | < 2 GB | {peak_mb:.0f} MB |")
    print(f"| `predict` throughput | >= 100k rows/s | {rows_per_second / 1e6:.1f} M rows/s |")
    print(child.stdout.splitlines()[-1] if child.stdout else "")
    print(hostcheck.header_line(host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
