"""Wall time of a multi-trial search in process and on NNI's experiment engine (local training service): the same
16-trial random search, trial after trial in one process, then as trial processes 2 at a time. Prints a
markdown table for docs/BENCHMARKS.md.

    python benchmarks/search_engine.py --device-model runs/cpu/device_model.json            # the table
    python benchmarks/search_engine.py --device-model runs/cpu/device_model.json --quick    # 4 trials, a check

Each search is one run of the ``nni-latency search`` command in a fresh process (so the in-process search pays
its imports once, like the engine's manager start), and its wall time is a single long measurement: a search of
minutes is not a loop torch.utils.benchmark can repeat, so ``--repeats`` runs each one again and the table shows
the median and the spread. The "search" column is the search phase alone (``timings_s.search`` of result.json:
for the engine, NNI's manager start, the trial processes and their imports); the "trial" column is the mean
training time a trial reports, so the difference is what running trials as processes costs or saves.
Run it on a quiet machine: concurrent trials share the cores with whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import num, table  # noqa: E402

CONFIG = """\
space: {{name: nasbench201, input_size: 16}}
data: {{dataset: digits, limit: {limit}, batch_size: 32}}
strategy: {{name: random}}
multi_trial: {{trials: {trials}, trial_epochs: {epochs}, latency: objective}}
latency: {{target_ms: 5.0}}
retrain: {{epochs: 1}}
"""
ENGINES = {"in process": [], "NNI engine, local, 2 at a time":
           ["execution.engine=nni", "execution.trial_concurrency=2", "execution.port={port}"]}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def run_once(config: Path, device_model: str, overrides: list[str], output: Path) -> dict[str, Any]:
    """One ``nni-latency search``; its wall time, search time, and trials."""
    command = [sys.executable, "-m", "nni_latency.cli.dispatch", "search", "--config", str(config), "--output-dir",
               str(output), "--no-progress", "--set", f"latency.device_model={device_model}"]
    for override in overrides:
        command += ["--set", override.format(port=_free_port())]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=config.parent, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"search failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result = json.loads((output / "result.json").read_text())
    trials = result["trials"]
    return {"wall": wall, "search": result["timings_s"]["search"], "trials": len(trials),
            "trial": statistics.mean(t["seconds"] for t in trials), "processes": len({t["pid"] for t in trials})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device-model", required=True, help="device_model.json from `nni-latency profile`")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--trial-epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=600, help="digits samples used")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each search (the table shows the median)")
    parser.add_argument("--quick", action="store_true", help="4 trials of 1 epoch on 100 samples (checks the script)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.trial_epochs, args.limit = 4, 1, 100
    print(section(args.device_model, args.trials, args.trial_epochs, args.limit, args.repeats, title=False))
    return 0


def section(device_model: str, trials: int = 16, trial_epochs: int = 2, limit: int = 600, repeats: int = 1,
            title: bool = True) -> str:
    """The markdown table (and, with ``title``, its heading): in-process against NNI's local engine."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="search_engine_") as folder:
        config = Path(folder) / "search.yaml"
        config.write_text(CONFIG.format(trials=trials, epochs=trial_epochs, limit=limit))
        device_model = str(Path(device_model).resolve())
        for name, overrides in ENGINES.items():
            runs = [run_once(config, device_model, overrides, Path(folder) / f"run{i}_{len(rows)}")
                    for i in range(repeats)]
            walls, searches = [r["wall"] for r in runs], [r["search"] for r in runs]
            spread = f" ({num(min(walls), 1)}-{num(max(walls), 1)})" if len(runs) > 1 else ""
            rows.append([name, runs[0]["trials"], num(statistics.median(searches), 1),
                         num(statistics.median(walls), 1) + spread, num(statistics.median(r["trial"] for r in runs), 2),
                         runs[0]["processes"]])
    heading = ["## Multi-trial search: in-process against NNI's experiment engine", ""] if title else []
    return "\n".join([*heading, f"{trials} trials of {trial_epochs} epoch(s), NNI's nasbench201 space at 16 px on "
                      f"{limit} digits, random strategy; {repeats} run(s) each", "",
                      table(["engine", "trials", "search (s)", "whole command (s)", "training per trial (s)",
                             "trial processes"], rows), ""])


if __name__ == "__main__":
    sys.exit(main())
