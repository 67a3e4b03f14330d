"""One FBNet search steered by the eager PyTorch device model and one by the ONNX Runtime device model, then every
architecture found measured in both runtimes: what a search picks when its latency term describes the machine it
deploys on, and what it picks when it describes eager PyTorch. The "search" part of the ONNX Runtime section of
docs/BENCHMARKS.md (``benchmarks/run.py`` calls ``run`` and ``render``).

    python benchmarks/search_compare.py --eager runs/cpu/device_model.json --ort runs/ort/device_model.json

Each search is one run of ``nni-latency search --config fbnet_search.yaml`` in a process of its own, on the digits
upsampled to ``INPUT_SIZE`` px, with a latency budget (``latency.target_ms``) so the latency term decides which
operators survive. Every architecture found is then rebuilt and measured whole, each in a fresh process, in both
runtimes.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import num, table  # noqa: E402

_logger = logging.getLogger("benchmarks.search_compare")

INPUT_SIZE = 64
SETTINGS = [f"space.input_size={INPUT_SIZE}", "trainer.epochs=4", "strategy.warmup_epochs=1", "retrain.epochs=0",
            "data.limit=800", "latency.alpha=1.0", "trainer.progress=false"]
QUICK = ["space.depth_mult=0.25", "trainer.epochs=2", "data.limit=300"]


def _frozen(space: dict[str, Any], architecture: dict[str, Any]):
    """The architecture a search found, rebuilt from its result (a fresh process calls this)."""
    import warnings

    import torch

    from nni_latency.spaces.hub import build_space

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        built = build_space(space["name"], space["input_size"], num_classes=space.get("num_classes") or 10,
                            **space.get("arguments", {}))
        return built.freeze(dict(architecture)).eval()


def settings(quick: bool) -> list[str]:
    """The search's ``--set`` overrides, the quick ones replacing the keys they name."""
    chosen = dict(item.split("=", 1) for item in SETTINGS + (QUICK if quick else []))
    return [f"{key}={value}" for key, value in chosen.items()]


def search(label: str, device_model: str, output: Path, quick: bool) -> dict[str, Any]:
    """One ``nni-latency search`` (or its result from an earlier run of this benchmark)."""
    if not (output / "result.json").exists():
        command = [sys.executable, "-m", "nni_latency.cli.dispatch", "search", "--config", "fbnet_search.yaml", "--set",
                   f"latency.device_model={device_model}", "--set", f"output_dir={output}"]
        for setting in settings(quick):
            command += ["--set", setting]
        _logger.info("searching with the %s model", label)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((output / "result.json").read_text())


def run(eager_model: str, ort_model: str, cache: Path, timing: dict[str, Any], quick: bool = False) -> dict:
    """Both searches, and every architecture they found measured in both runtimes (fresh processes)."""
    from nni_latency.measure.isolated import measure_fresh
    from nni_latency.model.model import LatencyModel
    from nni_latency.runtimes.protocol import TIMING_FIELDS

    models = {"eager PyTorch": LatencyModel.load(eager_model), "ONNX Runtime": LatencyModel.load(ort_model)}
    paths = {"eager PyTorch": eager_model, "ONNX Runtime": ort_model}
    rows = []
    for label, model in models.items():
        result = search(label, paths[label], cache / f"search_{model.runtime}", quick)
        space = result["config"]["space"]
        space = {**space, "num_classes": space.get("num_classes") or result["data"].get("num_classes")}
        shape = (1, 3, space["input_size"], space["input_size"])
        builder = functools.partial(_frozen, space, result["architecture"])
        measured = {}
        for runtime_label, runtime_model in models.items():
            protocol = runtime_model.measuring_protocol(timing={k: timing[k] for k in TIMING_FIELDS if k in timing})
            measured[runtime_label] = measure_fresh(builder, shape, protocol).latency_ms
        rows.append({"steered by": label, "architecture": result["architecture"],
                     "predicted_ms": result["predicted_latency_ms"], "measured_ms": measured,
                     "accuracy": result.get("val_accuracy")})
    return {"rows": rows, "input_size": INPUT_SIZE, "settings": settings(quick)}


def _short(architecture: dict[str, Any]) -> str:
    """``k3_e6 x4, skip x2, ...``: how often each candidate was chosen."""
    from collections import Counter

    return ", ".join(f"{op} x{n}" for op, n in Counter(map(str, architecture.values())).most_common())


def render(result: dict) -> str:
    rows = [(row["steered by"], _short(row["architecture"]), num(row["predicted_ms"], 3),
             num(row["measured_ms"]["eager PyTorch"], 3), num(row["measured_ms"]["ONNX Runtime"], 3))
            for row in result["rows"]]
    return "\n".join([
        "### One FBNet search per runtime", "",
        f"`nni-latency search --config fbnet_search.yaml` on the digits upsampled to {result['input_size']} px "
        f"({', '.join(f'`{s}`' for s in result['settings'])}), once with the eager device model and once with the "
        "ONNX Runtime one; every architecture found is then measured whole in both runtimes, each in a fresh "
        "process. The candidates each search kept, and what its architecture costs where it is deployed:", "",
        table(["latency term", "candidates chosen", "predicted ms (its model)", "eager ms", "ORT ms"], rows), ""])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eager", required=True, help="an eager PyTorch device_model.json")
    parser.add_argument("--ort", required=True, help="an ONNX Runtime device_model.json")
    parser.add_argument("--cache-dir", default="runs/benchmarks/search_compare")
    parser.add_argument("--quick", action="store_true", help="a shallower space, 2 epochs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from nni_latency.model.model import LatencyModel
    from nni_latency.runtimes.protocol import protocol_of

    protocol = protocol_of(LatencyModel.load(args.eager))
    timing = {"min_run_time": protocol.min_run_time, "max_run_time": protocol.max_run_time}
    print(render(run(args.eager, args.ort, Path(args.cache_dir), timing, args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
