"""Where the error sits, operator class by operator class: every aten call of the zoo's networks (and of HF's real
implementations, when ``transformers`` is installed) timed in place against what each model charges it. The
"Per operator class" section of docs/BENCHMARKS.md (``benchmarks/run.py`` calls ``run`` and ``render``).

    python benchmarks/op_classes.py --profile-dir runs/cpu --output /tmp/ops.md   # this section alone

Each network's measured time is normalised to 1, so that no network dominates: a class's *share* is its mean
share of a network's time, and its predicted / measured ratio compares the class's normalised predicted and
measured times summed over the networks. "Before" is the block-total fit (``relative_linear``) and "after" the
per-operator model (``op_linear``), both fitted on the same profile.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, ensure_profile  # noqa: E402
from report import pct, table  # noqa: E402

_logger = logging.getLogger("benchmarks.op_classes")

SELECTION = "all"
HF_SELECTION = "hf:all"
QUICK_SELECTION = "mobilenet_v2,resnet18,levit_128s"


def _models(profile) -> dict[str, Any]:
    """The models compared: the per-operator default and the block-total fit, on the same profiling rows."""
    from nni_latency.fit.fitting import fit_records

    models = {"after (op_linear)": profile.model}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models["before (relative_linear)"] = fit_records(profile.records, "relative_linear",
                                                         device=dict(profile.model.device))
    return models


def network_rows(specs, models: dict[str, Any], protocol) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Per network: each class's measured and (per model) predicted time, normalised by the network's measured
    time of all its calls; and the networks left out (calls that change from pass to pass, or a network the
    runtime cannot run), each with its reason."""
    from nni_latency.analysis.op_errors import class_rows, time_calls
    from nni_latency.errors import MeasurementError, first_line

    model = next(iter(models.values()))
    results, left_out = [], {}
    for spec in specs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            network = spec.build(None, {})
            shape = spec.input_shape(1, None)
            try:
                features, timed = time_calls(network, shape, model, protocol)
            except (ValueError, MeasurementError) as error:  # calls that change, or what the runtime cannot run
                _logger.info("%s left out: %s", spec.name, error)
                left_out[spec.name] = first_line(error)
                continue
        total = timed.total_ms or 1.0
        classes: dict[str, dict[str, float]] = {}
        for name, priced in models.items():
            for row in class_rows(features, timed, priced):
                entry = classes.setdefault(row.cls, {"measured": row.measured_ms / total, "calls": row.calls})
                entry[name] = row.predicted_ms / total
        results.append({"name": spec.name, "kind": spec.kind, "total_ms": timed.total_ms, "classes": classes})
        _logger.info("%s: %d calls, %.2f ms in place", spec.name, len(timed.ops), timed.total_ms)
    return results, left_out


def summarise(results: Sequence[dict], names: Sequence[str]) -> list[dict[str, Any]]:
    """Per class over ``results``: mean share of a network's time, and each model's predicted / measured ratio
    of the normalised sums; largest share first."""
    classes = sorted({cls for r in results for cls in r["classes"]})
    count = len(results) or 1
    rows = []
    for cls in classes:
        entries = [r["classes"][cls] for r in results if cls in r["classes"]]
        measured = sum(e["measured"] for e in entries)
        rows.append({"class": cls, "share": measured / count, "networks": len(entries),
                     "calls": int(sum(e["calls"] for e in entries)),
                     **{name: (sum(e.get(name, 0.0) for e in entries) / measured if measured > 0 else None)
                        for name in names}})
    return sorted(rows, key=lambda row: -row["share"])


def run(args, profile) -> dict[str, Any]:
    from nni_latency.evaluate.selection import select_networks
    from nni_latency.runtimes.protocol import protocol_of

    models = _models(profile)
    protocol = protocol_of(profile.model)
    selections = {"zoo": QUICK_SELECTION if args.quick else SELECTION}
    try:
        import transformers  # noqa: F401

        selections["HF implementations"] = "hf:MobileNetV2,hf:LeViT" if args.quick else HF_SELECTION
    except ImportError:
        _logger.info("transformers is not installed: the HF implementations are left out")
    summary = {}
    for label, selection in selections.items():
        specs = select_networks(selection, seed=args.seed, spaces={})
        results, left_out = network_rows(specs, models, protocol)
        summary[label] = {"networks": len(results), "rows": summarise(results, list(models)),
                          "per_network": results, "left_out": left_out}
    return {"models": list(models), "sets": summary, "runtime": profile.model.runtime}


def render(summary: dict[str, Any]) -> str:
    names = summary["models"]
    from nni_latency.runtimes import get_table

    runtime = summary.get("runtime", "torch")
    title = "" if runtime == "torch" else " (ONNX Runtime)"
    parts = [f"## Per operator class: predicted against measured, in place{title}", "",
             f"Every call of each network timed inside the network ({get_table(runtime).op_clock}), against what "
             "each model charges that call from its own features "
             "(`nni-latency analyze NET --measure --ops` shows the same for one network). Each network's time is "
             "normalised to 1; *share* is a class's mean share of a network's time. Target: every class with ≥ 2% "
             "of the zoo's time within [0.9, 1.1].", ""]
    for label, data in summary["sets"].items():
        rows = [(row["class"], pct(row["share"]), row["calls"],
                 *["-" if row[name] is None else f"{row[name]:.2f}" for name in names]) for row in data["rows"]]
        parts += [f"### {label} ({data['networks']} networks, 1 thread, batch 1)", "",
                  table(["operator class", "share of time", "calls", *[f"{n}: pred / meas" for n in names]], rows),
                  ""]
        if data.get("left_out"):
            parts += ["Left out: " + "; ".join(f"{name}: {reason}" for name, reason in data["left_out"].items()),
                      ""]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    import hostcheck

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"a short check on {QUICK_SELECTION}")
    parser.add_argument("--profile-dir", default=None, help="reuse this profile instead of profiling")
    parser.add_argument("--cache-dir", default=None, help="where a fresh profile is kept")
    parser.add_argument("--output", default="runs/benchmarks/op_classes.md", help="the markdown to write")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    hostcheck.add_argument(parser)
    args = parser.parse_args(argv)
    args.threads, args.seed = 1, 100
    args.cache_dir = Path(args.cache_dir or REPO / "runs" / "benchmarks" / f"t1{'-quick' if args.quick else ''}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from nni_latency.files.fileio import atomic_write_json, atomic_write_text
    from nni_latency.measure.allocator import apply_allocator_policy
    from nni_latency.runtimes.protocol import MeasurementProtocol

    apply_allocator_policy(MeasurementProtocol(allocator="steady"))
    host = hostcheck.start(args, "benchmarks/op_classes.py")
    summary = run(args, ensure_profile(args))
    output = Path(args.output)
    atomic_write_json(output.with_suffix(".json"), summary)
    atomic_write_text(output, f"{hostcheck.header_line(host)}\n\n{render(summary)}")
    _logger.info("wrote %s", output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
