"""``nni-latency fit``: refit a device model from a measured dataset, without measuring again."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a microbench.jsonl written by `nni-latency profile`")
    parser.add_argument("--kind", default="op_linear",
                        help="model kind: op_linear (the default: each operator class fitted on the in-place times "
                             "of its own calls), relative_linear (fitted to block totals), two_regime (the published "
                             "model) or flops (FLOPs-only proxy)")
    parser.add_argument("--output", default=None,
                        help="device model to write (default: device_model.json beside the dataset; a model of "
                             "another kind or fitted on other rows there is kept aside, renamed with the time)")
    parser.add_argument("--no-plot", action="store_true", help="do not write fit.png / fit.svg")
    parser.add_argument("--only", default=None, metavar="FIELD=VALUE",
                        help="fit only the rows measured so, e.g. threads=1 (for a dataset that mixes protocols)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ...files.fileio import set_aside
    from ...files.outputs import Output, check_outputs
    from ...fit.fitting import fit_with_cv, reference_model
    from ...model.model import LatencyModel
    from ...plots import plot_fit
    from ...profile.summary import format_profile_summary
    from ...rows.ops import op_check
    from ...rows.store import load_records
    from ...runtimes.protocol import protocol_of
    from . import check_not_a_directory

    check_not_a_directory(args.dataset, "dataset", "microbench.jsonl")
    check_not_a_directory(args.output, "--output", "device_model.json")
    output = Path(args.output) if args.output else Path(args.dataset).with_name("device_model.json")
    plots = [] if args.no_plot else [Output(output.with_name(f"fit.{e}"), "plot", "--output") for e in ("png", "svg")]
    check_outputs([Output(output, "model", "--output"), *plots], {"dataset": args.dataset})
    records = load_records(args.dataset, args.only)  # one machine and one protocol, or --only selects one
    previous: dict = {}
    replaced = None
    if output.exists():  # refitting beside a profiled model keeps the rest of its device description
        try:
            replaced = LatencyModel.load(output)
            previous = replaced.device
        except ValueError:
            pass
    first = records[0] if records else {}
    # Every row was measured under one protocol (a resumed run checks it); what rows written by an older
    # version do not record comes from the model beside them.
    protocol = protocol_of({**previous, **first})
    device = {**previous, "name": first.get("device_name", protocol.device), "type": protocol.device_type,
              **protocol.to_dict()}
    # fitted_keys: which blocks the model saw, so `evaluate --dataset` never scores them as held-out
    fitted = sorted({str(record["key"]) for record in records if record.get("key") is not None})
    model, held_out = fit_with_cv(records, args.kind, device={**device, "fitted_keys": fitted})
    model.device["op_sums"] = op_check(records, model)  # the op-level times with the fitted overheads
    if replaced is not None and (replaced.kind != model.kind or replaced.metrics.get("points") != len(records)):
        # Another kind, or other rows: never replace a good model silently, keep it beside the new one.
        kept = set_aside([output])[0]
        print(f"kept the previous {replaced.kind} model ({replaced.metrics.get('points', '?')} points) as {kept}")
    model.save(output)
    reference = reference_model(records, model)
    print(format_profile_summary(model, records, reference))
    written = [str(output)]
    if not args.no_plot:
        written += [str(p) for p in plot_fit(records, model, reference, output.with_name("fit"), held_out[model.kind])]
    print("wrote " + ", ".join(written))
    return 0
