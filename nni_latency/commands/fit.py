"""``nni-latency fit``: refit a device model from a measured dataset, without measuring again."""

from __future__ import annotations

import argparse


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

    from ..fit import cross_validated_predictions, fit_records, reference_model
    from ..microbench import load_records
    from ..model import LatencyModel
    from ..plots import plot_fit
    from ..protocol import protocol_of
    from ..summary import format_profile_summary

    records = load_records(args.dataset)
    output = Path(args.output) if args.output else Path(args.dataset).with_name("device_model.json")
    previous: dict = {}
    if output.exists():  # refitting beside a profiled model keeps the rest of its device description
        try:
            previous = LatencyModel.load(output).device
        except ValueError:
            pass
    first = records[0] if records else {}
    # Every row was measured under one protocol (a resumed run checks it); what rows written by an older
    # version do not record comes from the model beside them.
    protocol = protocol_of({**previous, **first})
    device = {**previous, "name": first.get("device_name", protocol.device), "type": protocol.device_type,
              **protocol.to_dict()}
    model = fit_records(records, args.kind, device=device)
    model.save(output)
    reference = reference_model(records, model)
    print(format_profile_summary(model, records, reference))
    written = [str(output)]
    if not args.no_plot:
        held_out = cross_validated_predictions(records, model.kind)
        written += [str(p) for p in plot_fit(records, model, reference, output.with_name("fit"), held_out)]
    print("wrote " + ", ".join(written))
    return 0
