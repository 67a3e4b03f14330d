"""One device model for every search space: per space of ``nni_latency.spaces.hub``, the profiler's build time,
``profile(sample)`` time and whole-network error on random architectures; and the FBNet loss step on the
largest space. The "spaces" section of docs/BENCHMARKS.md (``benchmarks/run.py`` calls ``run`` and ``render``).

    python benchmarks/search_spaces.py --profile-dir runs/cpu --output /tmp/spaces.md              # this section
    python benchmarks/search_spaces.py --profile-dir runs/cpu --quick --spaces nasbench201,darts ...  # quick check

Each space is built with its defaults at its natural input size (32 px for the CIFAR-style cell spaces, 224 px
for the others). Every random architecture is measured end to end in ``--rounds`` interleaved passes (median),
so a noisy stretch of the machine spreads over all of them instead of spoiling one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostcheck  # noqa: E402
from report import num, pct, table  # noqa: E402

_logger = logging.getLogger("benchmarks.spaces")

TARGETS = {"build_seconds": 30.0, "median_error": 0.10, "hub_median_error": 0.08, "loss_step_ms": 1.0}
HUB_TARGET_SPACES = ("proxylessnas", "mobilenetv3", "shufflenet")


def _profile_seconds(profiler, samples: list[dict]) -> tuple[float, float]:
    """(seconds per ``profile`` call on a new sample, on a memoised one)."""
    if hasattr(profiler, "terms"):
        started = time.perf_counter()
        for _ in range(200):
            for sample in samples:
                profiler.profile(sample)
        per_call = (time.perf_counter() - started) / (200 * len(samples))
        return per_call, per_call
    cold = []
    for sample in samples:
        started = time.perf_counter()
        profiler.profile(sample)
        cold.append(time.perf_counter() - started)
    started = time.perf_counter()
    profiler.profile(samples[0])
    return float(np.median(cold)), time.perf_counter() - started


def run_space(name: str, model, count: int, seed: int, rounds: int, timing: dict[str, Any], cache: Path,
              progress: bool, calibrate: int = 0) -> dict[str, Any]:
    """Build one space's profiler, time ``profile``, and measure ``count`` random architectures (``hub:SPACE:N``'s
    samples), each whole in a fresh process per round, in the model's runtime; with ``calibrate``, the same
    architectures against a profiler calibrated on that many others (``LatencyProfiler(calibrate=N)``)."""
    from nni_latency.evaluate.networks import measure_networks
    from nni_latency.evaluate.selection import hub_samples
    from nni_latency.runtimes.protocol import TIMING_FIELDS
    from nni_latency.spaces.hub import profiler_for, space_entry

    entry = space_entry(name)
    shape = (1, 3, entry.input_size, entry.input_size)
    spaces: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        specs = hub_samples(name, count, seed, spaces)
        started = time.perf_counter()
        profiler = profiler_for(name, spaces[name], shape, model)
        build = time.perf_counter() - started
        samples = [dict(spec.sample) for spec in specs]
        cold, warm = _profile_seconds(profiler, samples)
        predicted = np.array([profiler.profile(sample) for sample in samples])
    protocol = model.measuring_protocol(rounds=rounds, threads=timing["threads"],
                                        timing={k: timing[k] for k in TIMING_FIELDS if k in timing})
    rows = measure_networks(specs, protocol, cache / f"space_{name}_{model.runtime}.jsonl", 1, progress=progress,
                            spaces=spaces)
    measured = np.array([rows[spec.name]["latency_ms"] for spec in specs])
    signed = predicted / measured - 1
    result = {"space": name, "input": entry.input_size, "profiler": type(profiler).__name__, "build_s": build,
              "forward_passes": getattr(profiler, "forward_passes", None), "profile_s": cold, "memo_s": warm,
              "networks": len(samples), "median_error": float(np.median(np.abs(signed))),
              "median_signed": float(np.median(signed)), "within_10pct": float(np.mean(np.abs(signed) <= 0.10)),
              "entries": sum(int(np.size(t.table)) for t in getattr(profiler, "terms", [])),
              "profiler_object": profiler}
    if calibrate and type(profiler).__name__ == "LatencyProfiler":
        from nni_latency.errors import InvalidInput
        from nni_latency.nas.profiler import LatencyProfiler

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            started = time.perf_counter()
            try:
                calibrated = LatencyProfiler(spaces[name], shape, model, calibrate=calibrate)
            except InvalidInput as error:  # a space calibration cannot scale (NNI cells): the row says "-"
                _logger.info("space %s: %s", name, error)
                return result
            seconds = time.perf_counter() - started - build
            after = np.array([calibrated.profile(sample) for sample in samples]) / measured - 1
        result["calibrated"] = {"samples": calibrate, "seconds": seconds,
                                "median_error": float(np.median(np.abs(after))),
                                "median_signed": float(np.median(after)),
                                "scales": calibrated.calibration["scales"]}
    return result


def loss_step(profiler) -> dict[str, Any]:
    """Median time of one architecture step's latency term: softmax of every label's logits (as ``FBNet`` computes
    them), the FBNet loss and its backward; and the loss's forward alone (``torch.utils.benchmark``)."""
    import torch
    import torch.utils.benchmark as benchmark

    from nni_latency.nas import FBNetLatencyLoss

    loss = FBNetLatencyLoss(profiler, alpha=0.2, beta=0.6, mode="add")
    sizes = {label: len(profiler.space_labels.multiple[label][0]) if label in profiler.space_labels.multiple
             else len(values) for label, values in profiler.label_values.items()}
    logits = {label: torch.zeros(size, requires_grad=True) for label, size in sizes.items()}
    ce = torch.tensor(1.0)

    def step():
        value, _ = loss(ce, {label: torch.softmax(alpha, -1) for label, alpha in logits.items()})
        value.backward()

    step()
    probs = {label: torch.softmax(alpha, -1).detach() for label, alpha in logits.items()}
    timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=1)
    forward = benchmark.Timer(stmt="loss(ce, probs)", globals={"loss": loss, "ce": ce, "probs": probs}, num_threads=1)
    return {"median_ms": timer.blocked_autorange(min_run_time=1.0).median * 1e3,
            "forward_ms": forward.blocked_autorange(min_run_time=1.0).median * 1e3, "labels": len(logits),
            "tables": len(profiler.terms)}


def run(names: Sequence[str], model, count: int, seed: int, rounds: int, timing: dict[str, Any], cache: Path,
        progress: bool = True, calibrate: int = 0) -> dict[str, Any]:
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        _logger.info("space %s: building its profiler and measuring %d random architectures", name, count)
        rows.append(run_space(name, model, count, seed, rounds, timing, cache, progress, calibrate))
    with_tables = [row for row in rows if row["profiler"] == "LatencyProfiler"]
    largest = max(with_tables, key=lambda row: row["entries"], default=None)
    step = dict(loss_step(largest["profiler_object"]), space=largest["space"]) if largest else None
    for row in rows:
        row.pop("profiler_object")
    return {"rows": rows, "loss_step": step, "rounds": rounds, "runtime": model.runtime, "calibrate": calibrate}


def _mark(ok: bool) -> str:
    return "" if ok else " (over target)"


_RUNTIMES = {"torch": "eager PyTorch", "onnxruntime": "ONNX Runtime"}


def render(result: dict[str, Any]) -> str:
    """The markdown section."""
    calibrated = any("calibrated" in row for row in result["rows"])
    rows = []
    for row in result["rows"]:
        target = TARGETS["hub_median_error"] if row["space"] in HUB_TARGET_SPACES else TARGETS["median_error"]
        memo = "" if row["profiler"] == "LatencyProfiler" else f", memoised {num(row['memo_s'] * 1e6, 0)} us"
        cells = [row["space"], f"{row['input']} px", row["profiler"],
                 f"{num(row['build_s'], 1)} s{_mark(row['build_s'] <= TARGETS['build_seconds'])}",
                 f"{num(row['profile_s'] * 1e6, 0)} us{memo}" if row["profile_s"] < 0.01
                 else f"{num(row['profile_s'], 2)} s{memo}",
                 row["networks"], f"{pct(row['median_error'])}{_mark(row['median_error'] <= target)}",
                 pct(row["median_signed"]), pct(row["within_10pct"], 0)]
        if calibrated:
            after = row.get("calibrated")
            cells += [f"{pct(after['median_error'])} ({pct(after['median_signed'])}), {num(after['seconds'], 0)} s"
                      if after else "-"]
        rows.append(cells)
    runtime = _RUNTIMES.get(result.get("runtime", "torch"), result.get("runtime"))
    header = ["space", "input", "profiler", "build", "`profile(sample)`", "networks", "median error",
              "median signed", "within ±10%"]
    if calibrated:
        header.append(f"with calibrate={result['calibrate']}: median error (signed), its cost")
    lines = [
        f"## One device model for every search space ({runtime})",
        "",
        "Each space of NNI 3.0's hub (and FBNetSpace) built with its defaults at its natural input size, its "
        f"profiler built from a device model of {runtime} (no measurement), and random architectures "
        f"(`hub:SPACE:N`) measured whole in {runtime}, each in a fresh process per round ({result['rounds']} "
        "interleaved rounds, the profile's statistic), against `profile(sample)`. `FrozenLatencyProfiler` is "
        "the fallback for spaces whose choices change shapes in ways latency tables cannot follow; its "
        "`profile` freezes, counts and predicts the network (first call) and is memoised."
        + (" The last column scores the same architectures against a profiler built with "
           f"`calibrate={result['calibrate']}`: that many other architectures of the space measured, each in a "
           "fresh process, and a scale per cost role fitted with a strong prior toward 1 (build time included)."
           if calibrated else ""),
        "",
        table(header, rows),
        "",
        f"Targets: build ≤ {TARGETS['build_seconds']:.0f} s; median error ≤ {pct(TARGETS['median_error'], 0)} "
        f"(≤ {pct(TARGETS['hub_median_error'], 0)} on {', '.join(HUB_TARGET_SPACES)}); loss step ≤ "
        f"{TARGETS['loss_step_ms']:.0f} ms.",
    ]
    step = result.get("loss_step")
    if step:
        lines += ["", f"FBNet loss step on the largest space ({step['space']}: {step['labels']} labels, "
                      f"{step['tables']} tables): softmax + `FBNetLatencyLoss` + backward "
                      f"{num(step['median_ms'], 3)} ms{_mark(step['median_ms'] <= TARGETS['loss_step_ms'])}; the "
                      f"loss forward alone {num(step['forward_ms'], 3)} ms (medians, `torch.utils.benchmark`)."]
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    from nni_latency.spaces.hub import space_names

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile-dir", required=True, help="a profile (device_model.json) to predict with")
    parser.add_argument("--output", required=True, help="the markdown file to write")
    parser.add_argument("--cache-dir", default=None, help="measurement cache (default: PROFILE_DIR/../spaces)")
    parser.add_argument("--spaces", default=",".join(space_names()), help="comma-separated space names")
    parser.add_argument("--networks", type=int, default=None, help="random architectures per space (6, quick 2)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved measurement rounds (2, quick 1)")
    parser.add_argument("--calibrate", type=int, default=0,
                        help="also score a profiler calibrated on this many other architectures (0: off)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 networks, 1 round, short timings")
    parser.add_argument("--no-progress", action="store_true")
    hostcheck.add_argument(parser)
    args = parser.parse_args(argv)
    args.networks = args.networks or (2 if args.quick else 6)
    args.rounds = args.rounds or (1 if args.quick else 2)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("nni", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from nni_latency.files.fileio import atomic_write_text
    from nni_latency.measure.allocator import apply_allocator_policy
    from nni_latency.model.model import LatencyModel
    from nni_latency.runtimes.protocol import protocol_of

    host = hostcheck.start(args, "benchmarks/search_spaces.py")
    model = LatencyModel.load(Path(args.profile_dir) / "device_model.json")
    protocol = protocol_of(model)
    apply_allocator_policy(protocol.replace(allocator="steady"))
    timing = {"threads": args.threads, "working_set_mb": protocol.working_set_mb,
              "min_run_time": 0.02 if args.quick else protocol.min_run_time,
              "max_run_time": 0.1 if args.quick else protocol.max_run_time, "max_spread": protocol.max_spread,
              "quantile": protocol.quantile}
    cache = Path(args.cache_dir) if args.cache_dir else Path(args.profile_dir).parent / "spaces"
    result = run([name.strip() for name in args.spaces.split(",") if name.strip()], model, args.networks,
                 args.seed, args.rounds, timing, cache, not args.no_progress, args.calibrate)
    atomic_write_text(args.output, f"{hostcheck.header_line(host)}\n\n{render(result)}\n")
    _logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
