"""Search NNI's DARTS cell space with and without the latency term, then measure both found networks.

    taskset -c 0 python examples/darts_search/compare.py --device-model runs/cpu/device_model.json
    python examples/darts_search/compare.py --device-model ... --set latency.alpha=3 --rounds 9

Each search is a separate ``nni-latency search`` process (same config, same seed; ``darts_search.yaml`` by
default). The found networks are then measured again here, in ``--rounds`` interleaved passes under the device
model's protocol, and each latency is the median of its passes (a shared machine drifts by 10-20% over
seconds; interleaving spreads that over both networks). Writes comparison.md and comparison.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nni_latency.files.fileio import atomic_write_json, atomic_write_text
from nni_latency.search.config import load_search_config

RUNS = {"no_latency": ("no latency term (alpha=0)", ["latency.alpha=0"]), "latency": ("latency term", [])}


def _search(name: str, config: str, output: Path, overrides: list[str]) -> dict:
    run_dir = output / name
    if not (run_dir / "result.json").exists():  # finished runs are reused: an interrupted comparison resumes
        command = [sys.executable, "-m", "nni_latency.cli", "search", "--config", config, "--output-dir",
                   str(run_dir), "--no-progress"]
        for override in overrides:
            command += ["--set", override]
        print(f"search {name} ...", flush=True)
        with open(output / f"{name}.log", "w", encoding="utf-8") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
        if code != 0:
            tail = (output / f"{name}.log").read_text(encoding="utf-8").splitlines()[-5:]
            raise SystemExit(f"search {name} failed ({code}):\n" + "\n".join(tail))
    return json.loads((run_dir / "result.json").read_text(encoding="utf-8"))


def _measure(results: dict[str, dict], config, device_model: str, rounds: int) -> dict[str, list[float]]:
    """Every found network timed once per round, the networks interleaved within a round."""
    from nni_latency.measure.allocator import apply_allocator_policy
    from nni_latency.measure.latency import measure_latency
    from nni_latency.model import LatencyModel
    from nni_latency.runtimes.protocol import protocol_of
    from nni_latency.search.run import build_space

    protocol = protocol_of(LatencyModel.load(device_model))
    apply_allocator_policy(protocol)
    size = config.space.input_size
    networks = {name: build_space(config.space, result["data"]["num_classes"]).freeze(result["architecture"]).eval()
                for name, result in results.items()}
    times: dict[str, list[float]] = {name: [] for name in networks}
    for round_index in range(rounds):
        for name, network in networks.items():
            times[name].append(measure_latency(network, (protocol.batch, 3, size, size), protocol).latency_ms)
        print(f"round {round_index + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.3f} ms" for n, t in times.items()),
              flush=True)
    return times


def _markdown(rows: list[dict]) -> str:
    lines = ["| search | strategy | predicted (ms) | measured (ms, median) | IQR (ms) | top-1 | search (s) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['run']} | {row['strategy']} | {row['predicted_ms']:.3f} | {row['measured_ms']:.3f} | "
                     f"{row['iqr_ms']:.3f} | {100 * row['accuracy']:.1f}% | {row['search_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="darts_search.yaml", help="search YAML (default: the packaged one)")
    parser.add_argument("--device-model", required=True, help="a device_model.json from `nni-latency profile`")
    parser.add_argument("--output-dir", default="runs/darts_compare")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved measurement passes per network")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra overrides for both searches, e.g. --set trainer.epochs=4")
    args = parser.parse_args(argv)

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    base = [*args.overrides, f"latency.device_model={args.device_model}"]
    config = load_search_config(args.config, base)
    started = time.perf_counter()
    results = {name: _search(name, args.config, output, [*base, *extra]) for name, (_, extra) in RUNS.items()}
    times = _measure(results, config, args.device_model, args.rounds)
    rows = []
    for name, result in results.items():
        q1, median, q3 = np.percentile(times[name], [25, 50, 75])
        rows.append({"run": RUNS[name][0], "strategy": result["strategy"],
                     "predicted_ms": result["predicted_latency_ms"],
                     "measured_ms": float(median), "iqr_ms": float(q3 - q1), "measured_rounds_ms": times[name],
                     "accuracy": result["accuracy"], "search_s": result["timings_s"]["search"],
                     "architecture": result["architecture"]})
    table = _markdown(rows)
    space = config.space
    text = (f"DARTS space ({', '.join(f'{k}={v}' for k, v in space.arguments.items())}, {space.input_size} px), "
            f"{config.data.dataset}, alpha={config.latency.alpha}, {args.rounds} interleaved measurements per "
            f"network, {time.perf_counter() - started:.0f} s in all\n\n{table}\n")
    atomic_write_text(output / "comparison.md", text)
    atomic_write_json(output / "comparison.json", {"rows": rows, "config": args.config, "overrides": base})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
