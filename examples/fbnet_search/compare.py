"""Compare FBNet searches by their latency source: none, the predicted latency, and a measured lookup table,
then sweep the latency weight to show the measured latency of the found network falling as it rises.

    python examples/fbnet_search/compare.py --output-dir runs/fbnet_compare
    python examples/fbnet_search/compare.py --device-model runs/profile/device_model.json \
        --sweep latency.target_ms=1.5,1.2,0.9 --sweep-set latency.mode=mul --sweep-set latency.alpha=1

Every search is a separate ``nni-latency search`` process (same config, same seed), so each starts from
the same allocator state; pin the whole script to one core (``taskset -c 0``) on a shared machine.
Writes comparison.md / comparison.json (the tables) and sweep.png into the output directory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from nni_latency.files.fileio import atomic_write_json, atomic_write_text
from nni_latency.model import LatencyModel
from nni_latency.search.config import load_search_config


def _run(command: list[str], log: Path) -> float:
    """Run a CLI command, its output to ``log``; returns the wall time, raises with the log's tail on failure."""
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-5:]
        raise SystemExit(f"command failed ({code}): {' '.join(command)}\n" + "\n".join(tail))
    return time.perf_counter() - started


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "nni_latency.cli", *args]


def _search(name: str, config: str, output: Path, overrides: list[str]) -> dict:
    run_dir = output / name
    result_path = run_dir / "result.json"
    if not result_path.exists():  # finished runs are reused, so an interrupted comparison resumes
        command = _cli("search", "--config", config, "--output-dir", str(run_dir), "--no-progress")
        for override in overrides:
            command += ["--set", override]
        print(f"search {name} ...", flush=True)
        _run(command, output / f"{name}.log")
    return json.loads(result_path.read_text(encoding="utf-8"))


def _space_args(config) -> list[str]:
    args = {key: tuple(value) if isinstance(value, list) else value for key, value in config.space.arguments.items()}
    return [item for key, value in args.items() for item in ("--space-arg", f"{key}={value!r}")]


def _row(label: str, result: dict, setup: str) -> dict:
    return {"run": label, "setup": setup, "predicted_ms": result["predicted_latency_ms"],
            "measured_ms": result["measured_latency_ms"], "accuracy": result["accuracy"],
            "search_s": result["timings_s"]["search"], "architecture": result["architecture"]}


def _markdown(rows: list[dict], first_column: str) -> str:
    lines = [f"| {first_column} | latency setup | predicted (ms) | measured (ms) | top-1 | search (s) |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['run']} | {row['setup']} | {row['predicted_ms']:.3f} | {row['measured_ms']:.3f} | "
                     f"{100 * row['accuracy']:.1f}% | {row['search_s']:.0f} |")
    return "\n".join(lines)


def _plot_sweep(sweep: list[dict], key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [row["value"] for row in sweep]
    figure, axis = plt.subplots(figsize=(5, 3.4))
    axis.plot(values, [row["measured_ms"] for row in sweep], "o-", label="measured")
    axis.plot(values, [row["predicted_ms"] for row in sweep], "s--", label="predicted")
    axis.set(xlabel=key, ylabel="latency of the found network (ms)")
    if min(values) >= 0 and max(values) > 10 * min([v for v in values if v > 0] or [1]):
        axis.set_xscale("symlog", linthresh=min(v for v in values if v > 0))
    twin = axis.twinx()
    twin.plot(values, [100 * row["accuracy"] for row in sweep], "^:", color="tab:green", label="top-1")
    twin.set_ylabel("top-1 (%)")
    lines = axis.get_lines() + twin.get_lines()
    axis.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="fbnet_search.yaml", help="search YAML (default: the packaged one)")
    parser.add_argument("--output-dir", default="runs/fbnet_compare")
    parser.add_argument("--device-model", default=None,
                        help="a device_model.json; unset: profile this CPU first (nni-latency profile)")
    parser.add_argument("--sweep", default="latency.alpha=0,0.1,0.3,1,3", metavar="KEY=V1,V2,...",
                        help="the key swept and its values (default: latency.alpha=0,0.1,0.3,1,3); 0 for "
                             "latency.alpha reuses the no-latency search")
    parser.add_argument("--sweep-set", action="append", default=None, metavar="KEY=VALUE",
                        help="overrides for the sweep's searches only (default: latency.mode=add, where alpha "
                             "weighs latency against cross-entropy; in FBNet's mul mode alpha scales the whole "
                             "architecture loss, which NNI's Adam architecture optimizer cancels)")
    parser.add_argument("--no-lut", action="store_true", help="skip the measured lookup-table search")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra overrides for every search, e.g. --set trainer.epochs=4")
    args = parser.parse_args(argv)

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    config = load_search_config(args.config, args.overrides)
    device_model = args.device_model
    if device_model is None:
        device_model = str(output / "profile" / "device_model.json")
        if not Path(device_model).exists():
            print("profiling this CPU ...", flush=True)
            _run(_cli("profile", "--output-dir", str(output / "profile"), "--no-progress"), output / "profile.log")
    model = LatencyModel.load(device_model)
    profile_seconds = model.metrics.get("profile_seconds")
    base = [*args.overrides, f"latency.device_model={device_model}"]
    alpha = config.latency.alpha

    rows = []
    none = _search("no_latency", args.config, output, [*base, "latency.alpha=0"])
    rows.append(_row("no latency term (alpha=0)", none, "none"))
    predicted = _search("predicted", args.config, output, base)
    profiled = f"{profile_seconds:.0f} s profile" if profile_seconds else "device model given"
    profiler_seconds = predicted["timings_s"].get("profiler", predicted["timings_s"]["setup"])
    rows.append(_row(f"predicted latency (alpha={alpha})", predicted,
                     f"{profiled} + {profiler_seconds:.1f} s profiler"))
    if not args.no_lut:
        lut_dir = output / "lut_table"
        if not (lut_dir / "lut.json").exists():
            print("measuring the lookup table ...", flush=True)
            _run(_cli("lut", "--model", device_model, "--space", "fbnet", "--input-size", str(config.space.input_size),
                      "--output-dir", str(lut_dir), "--measure", *_space_args(config)), output / "lut.log")
        lut = _search("lut", args.config, output, [*base, f"latency.lut={lut_dir / 'lut.json'}"])
        rows.append(_row(f"measured lookup table (alpha={alpha})", lut,
                         f"{lut['lut']['measured_seconds']:.0f} s measuring {len(lut['architecture'])} layers"))

    key, _, values = args.sweep.partition("=")
    sweep_set = ["latency.mode=add"] if args.sweep_set is None else args.sweep_set
    sweep = []
    for raw in values.split(","):
        value = float(raw)
        if key == "latency.alpha" and value == 0:
            result = none
        else:
            result = _search(f"sweep_{key.split('.')[-1]}_{value:g}", args.config, output,
                             [*base, *sweep_set, f"{key}={value}"])
        sweep.append({**_row(f"{value:g}", result, "" if result is none else "predicted"), "value": value})

    text = "\n\n".join([
        f"Device model: {device_model} ({model.device.get('name', '?')}, {model.kind}); searches: {args.config} "
        f"{' '.join(args.overrides)}",
        _markdown(rows, "latency source"),
        f"Sweep of {key} ({' '.join(sweep_set)}; predicted latency):",
        _markdown(sweep, key.split(".")[-1]),
    ])
    atomic_write_text(output / "comparison.md", text + "\n")
    atomic_write_json(output / "comparison.json", {"device_model": device_model, "runs": rows, "sweep": sweep})
    _plot_sweep(sweep, key, output / "sweep.png")
    print(text)
    print(f"wrote {output / 'comparison.md'}, {output / 'comparison.json'}, {output / 'sweep.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
