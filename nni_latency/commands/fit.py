"""``nni-latency fit``: refit a device model from a measured dataset, without measuring again."""

from __future__ import annotations

import argparse

HELP = "refit a device model from a microbench.jsonl without measuring again"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a microbench.jsonl written by `nni-latency profile`")
    parser.add_argument("--kind", default="relative_linear",
                        help="model kind: relative_linear (default, best on held-out blocks), "
                             "two_regime (the published model) or flops (FLOPs-only proxy)")
    parser.add_argument("--output", default=None,
                        help="device model to write (default: device_model.json beside the dataset)")
    parser.add_argument("--no-plot", action="store_true", help="do not write fit.png / fit.svg")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..microbench import cross_validated_predictions, fit_records, load_records
    from ..model import LatencyModel
    from ..plots import plot_fit
    from ..summary import format_profile_summary

    records = load_records(args.dataset)
    output = Path(args.output) if args.output else Path(args.dataset).with_name("device_model.json")
    first = records[0] if records else {}
    device = {key: first.get(key) for key in ("device", "threads", "dtype", "protocol", "allocator")}
    device.update(name=first.get("device_name", device.get("device")), batch=first.get("spec", {}).get("batch"))
    previous = output if output.exists() else None
    if previous is not None:
        try:
            device = {**LatencyModel.load(previous).device, **{k: v for k, v in device.items() if v is not None}}
        except ValueError:
            pass
    model = fit_records(records, args.kind, device=device)
    model.save(output)
    reference = model if model.kind == "two_regime" else LatencyModel.fit(
        [r["features"] for r in records], [r["latency_ms"] for r in records], kind="two_regime")
    print(format_profile_summary(model, records, reference))
    written = [str(output)]
    if not args.no_plot:
        held_out = cross_validated_predictions(records, model.kind)
        written += [str(p) for p in plot_fit(records, model, reference, output.with_name("fit"), held_out)]
    print("wrote " + ", ".join(written))
    return 0
