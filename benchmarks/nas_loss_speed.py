"""The latency term of one architecture step, forward and backward, at one CPU thread: the per-label path (a softmax per
label, ``FBNetLatencyLoss.forward``) against the packed one (``forward_logits``: one softmax, one gather, one dot), on
MobileNetV3Space (224 px), DARTS and the loose-end spaces (8 cells, width 16, 32 px); and each profiler's build time.
Prints a markdown table (medians of ``torch.utils.benchmark``), for docs/BENCHMARKS.md.

    python benchmarks/nas_loss_speed.py                                   # every space, the synthetic device model
    python benchmarks/nas_loss_speed.py --model runs/cpu/device_model.json --spaces darts,nasnet --min-run-time 0.2

The device model only changes the tables' values, not their size, so without ``--model`` a model fitted on synthetic
latencies (no timing) serves; build times are with that model too. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
import warnings
from pathlib import Path

_logger = logging.getLogger("benchmarks.nas_loss_speed")

# name -> (space arguments, input size); the cell spaces as the issue sizes them: width 16, 8 cells, 32 px
SPACES = {
    "mobilenetv3": ({}, 224),
    "darts": ({"width": 16, "num_cells": 8}, 32),
    "enas": ({"width": 16, "num_cells": 8}, 32),
    "nasnet": ({"width": 16, "num_cells": 8}, 32),
    "amoebanet": ({"width": 16, "num_cells": 8}, 32),
}
TARGET_MS = 1.0
TARGET_BUILD_S = 30.0


def synthetic_model():
    """A ``relative_linear`` model fitted on 30 random blocks with made-up latencies (as the tests' fixture)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import _random_specs, synthetic_latency  # noqa: E402  (tests/conftest.py: one definition)

    from nni_latency.model.model import LatencyModel
    from nni_latency.runtimes.torch.counting import extract_features

    rows = [extract_features(spec.build(), spec.input_shape) for spec in _random_specs(30, seed=0)]
    return LatencyModel.fit(rows, [synthetic_latency(row) for row in rows], kind="relative_linear")


class _Logits:
    """Hands ``architecture_probs`` the logits already found (``_arch_alpha`` as a dict): both paths skip the walk."""

    def __init__(self, logits):
        self._arch_alpha = logits


def step_times(profiler, space, min_run_time: float) -> dict[str, float]:
    """Median ms of one architecture step's latency term with backward: per label, and packed."""
    import torch
    import torch.utils.benchmark as benchmark

    from nni_latency.nas import FBNetLatencyLoss, LatencyDARTS
    from nni_latency.nas.strategy import ArchitectureParameters, architecture_probs

    loss = FBNetLatencyLoss(profiler, alpha=0.2, beta=0.6, mode="add")
    supernet = LatencyDARTS(penalty=loss).mutate_model(copy.deepcopy(space))  # NNI's parametrisation of the labels
    parameters = ArchitectureParameters(supernet.modules())  # found once, as the strategies' penalty does
    logits = parameters.logits
    ce = torch.tensor(1.0)

    def per_label():
        loss(ce, architecture_probs(parameters.cells + [_Logits(logits)]))[0].backward()

    def packed():
        loss.forward_logits(ce, logits, parameters.joints())[0].backward()

    per_label(), packed()  # plans are built on the first call
    times = {}
    for name, fn in (("per_label_ms", per_label), ("packed_ms", packed)):
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=1)
        times[name] = timer.blocked_autorange(min_run_time=min_run_time).median * 1e3
    times["labels"] = len(loss.expected_latency.required)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="device_model.json (default: a synthetic model; sizes are what matter)")
    parser.add_argument("--spaces", default=",".join(SPACES), help=f"comma-separated, of {', '.join(SPACES)}")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per timing (torch.utils.benchmark)")
    args = parser.parse_args(argv)
    names = [name for name in args.spaces.split(",") if name]
    unknown = [name for name in names if name not in SPACES]
    if unknown:
        parser.error(f"unknown space(s) {', '.join(unknown)}; use {', '.join(SPACES)}")
    print(section(args.model, names, args.min_run_time, title=False))
    return 0


def section(model_path: str | None = None, names=None, min_run_time: float = 1.0, title: bool = True) -> str:
    """The markdown table (and, with ``title``, its heading): build time and loss step per space."""
    warnings.filterwarnings("ignore")
    logging.getLogger("nni").setLevel(logging.WARNING)

    import torch

    from nni_latency.model.model import LatencyModel
    from nni_latency.nas import LatencyProfiler
    from nni_latency.spaces.hub import build_space

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    model = LatencyModel.load(model_path) if model_path else synthetic_model()
    lines = ["| space | input | build (s) | tables | entries | labels | per-label step (ms) | packed step (ms) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    try:
        for name in names or list(SPACES):
            arguments, size = SPACES[name]
            torch.manual_seed(0)
            space = build_space(name, size, 10, **arguments)
            started = time.perf_counter()
            profiler = LatencyProfiler(space, (1, 3, size, size), model)
            build = time.perf_counter() - started
            times = step_times(profiler, space, min_run_time)
            entries = sum(int(term.table.size) for term in profiler.terms)
            mark = "" if times["packed_ms"] <= TARGET_MS else " (over target)"
            lines.append(f"| {name} | {size} px | {build:.1f}{'' if build <= TARGET_BUILD_S else ' (over target)'} | "
                         f"{len(profiler.terms)} | {entries} | {times['labels']} | {times['per_label_ms']:.3f} | "
                         f"{times['packed_ms']:.3f}{mark} |")
            _logger.info("%s done", name)
    finally:
        torch.set_num_threads(previous)
    heading = ["## The FBNet latency loss step, and the profiler's build time", "",
               "The differentiable latency term on each space: `LatencyProfiler` build time, and one forward and "
               "backward of the expected latency, per label (one small op each) and packed (one padded softmax, "
               "one gather, one reduction).", ""] if title else []
    return "\n".join([*heading, *lines, "", f"One thread (torch.set_num_threads(1)); medians of torch.utils.benchmark; "
                      f"target: packed step <= {TARGET_MS:g} ms, build <= {TARGET_BUILD_S:g} s.", ""])


if __name__ == "__main__":
    sys.exit(main())
