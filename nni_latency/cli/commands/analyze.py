"""``nni-latency analyze``: rank the blocks of a whole network by predicted latency and find its bottlenecks."""

from __future__ import annotations

import argparse
import contextlib

from ...errors import InvalidInput
from . import INPUT_SHAPE_HELP, TARGET_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help=f"the network: {TARGET_HELP}")
    parser.add_argument("--input-shape", default=None, metavar="SHAPE", help=INPUT_SHAPE_HELP)
    parser.add_argument("--model", required=True, metavar="FILE", help="device_model.json from `nni-latency profile`")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--depth", type=int, default=None, metavar="K",
                       help="split into the modules K levels below the network (1: its children); unset: a "
                            "transformer's encoder blocks and the modules around them, any other network's "
                            "children")
    split.add_argument("--blocks", default=None, metavar="NAME,...",
                       help="split into these modules instead (qualified names, e.g. layer1.0,layer1.1)")
    parser.add_argument("--top", type=int, default=None, metavar="K",
                        help="mark the K heaviest blocks as bottlenecks (unset: those making up 50%% of the time)")
    parser.add_argument("--measure", action="store_true",
                        help="also time every block and the whole network on this machine, under the model's protocol")
    parser.add_argument("--device", default=None,
                        help="device for --measure (unset: the one the model was profiled on)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for --measure (unset: the model's)")
    parser.add_argument("--ops", action="store_true",
                        help="with --measure: also time every call in place (each aten call in eager PyTorch, each "
                             "graph node from ORT's profiler with an onnxruntime model) and compare it, operator class "
                             "by class (depthwise convs, bmm, softmax, ...), with what the model charges it; the "
                             "classes that cost the most error come first")
    parser.add_argument("--ops-plot", default=None, metavar="OUT.png",
                        help="with --ops: draw measured against predicted time per operator class")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON")
    parser.add_argument("--plot", default=None, metavar="OUT.png", help="also draw the ranked blocks as a bar chart")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar of --measure")


def _check_runnable(network, input_shape, model, target: str) -> None:
    """Count the network first, on meta tensors when it is large (as ``predict`` does), so that a network too
    large to run here is refused before analyze allocates it block by block."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.count(network, input_shape)
    large = [w for w in caught if "too large to run here" in str(w.message)]
    if large:
        raise InvalidInput(f"{target} on {','.join(map(str, input_shape))} is too large for analyze, which runs every "
                         f"block ({str(large[0].message).split(': ')[0]}); give a smaller --input-shape, or use "
                         "`nni-latency predict` for its total")


def run(args: argparse.Namespace) -> int:
    from ...analysis.report import analyze_network
    from ...files.fileio import atomic_write_json
    from ...files.outputs import Output, check_outputs, keep_previous
    from ...measure.allocator import apply_allocator_policy
    from ...measure.hostload import watch_host
    from ...model.model import LatencyModel
    from ...plots import plot_op_classes, plot_report
    from ...runtimes.protocol import protocol_of
    from ..targets import input_hint, load_network
    from . import check_not_a_directory, check_threads

    if args.depth is not None and args.depth < 1:
        raise InvalidInput(f"--depth must be at least 1, got {args.depth}")
    if args.top is not None and args.top < 1:
        raise InvalidInput(f"--top must be at least 1, got {args.top}")
    check_threads(args.threads)
    blocks = [name.strip() for name in args.blocks.split(",") if name.strip()] if args.blocks is not None else None
    if blocks is not None and not blocks:
        raise InvalidInput("--blocks is empty: give qualified module names such as layer1,layer2")
    check_not_a_directory(args.json, "--json", "report.json")
    check_not_a_directory(args.plot, "--plot", "report.png")
    check_not_a_directory(args.ops_plot, "--ops-plot", "ops.png")
    if (args.ops or args.ops_plot) and not args.measure:
        raise InvalidInput("--ops compares measured with predicted time per operator class: add --measure")
    if args.ops_plot and not args.ops:
        raise InvalidInput("--ops-plot draws the per-operator view: add --ops")
    check_outputs([Output(p, kind, flag) for p, kind, flag in ((args.json, "report", "--json"),
                                                               (args.plot, "plot", "--plot"),
                                                               (args.ops_plot, "plot", "--ops-plot")) if p],
                  {"--model": args.model, "network file": args.target.rpartition(":")[0] or None})
    model = LatencyModel.load(args.model)
    network, input_shape = load_network(args.target, args.input_shape)
    if args.measure:
        apply_allocator_policy(protocol_of(model))
    try:
        _check_runnable(network, input_shape, model, args.target)
        with watch_host("measuring the network") if args.measure else contextlib.nullcontext() as host:
            report = analyze_network(network, input_shape, model, depth=args.depth, blocks=blocks,
                                     measure=args.measure, top=args.top, device=args.device, threads=args.threads,
                                     progress=not args.no_progress, ops=args.ops)
    except ValueError as error:
        hint = input_hint(network, args.target) if "does not fit" in str(error) else None
        raise InvalidInput(f"{error}; {hint}" if hint else str(error)) from None
    print(report.format_table())
    if args.measure:
        report.measurement["host_load"] = host.record()  # how busy other processes kept the host meanwhile
        from ...measure.allocator import allocator_advice

        advice = allocator_advice(protocol_of(model))
        if advice:
            print(advice)
    written = []
    keep_previous([Output(args.json, "report", "--json")] if args.json else [])
    if args.json:
        atomic_write_json(args.json, report.to_dict())
        written.append(args.json)
    if args.plot:
        written.append(str(plot_report(report, args.plot)))
    if args.ops_plot:
        written.append(str(plot_op_classes(report.op_classes, args.ops_plot, title=report.network)))
    if written:
        print(f"wrote {', '.join(written)}")
    return 0
