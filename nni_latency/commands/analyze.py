"""``nni-latency analyze``: rank the blocks of a whole network by predicted latency and find its bottlenecks."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET",
                        help="the network: path/to/file.py:callable or package.module:callable (a class or "
                             "factory called with no arguments, or an nn.Module instance)")
    parser.add_argument("--input-shape", required=True, metavar="N,C,H,W", help="input shape, e.g. 1,3,224,224")
    parser.add_argument("--model", required=True, metavar="FILE", help="device_model.json from `nni-latency profile`")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--depth", type=int, default=1, metavar="K",
                       help="split into the modules K levels below the network (1: its children)")
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
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON")
    parser.add_argument("--plot", default=None, metavar="OUT.png", help="also draw the ranked blocks as a bar chart")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar of --measure")


def run(args: argparse.Namespace) -> int:
    from ..analysis import analyze_network
    from ..fileio import atomic_write_json
    from ..model import LatencyModel
    from ..plots import plot_report
    from ..protocol import protocol_of
    from ..targets import load_module_target, parse_input_shape
    from ..timing import apply_allocator_policy

    input_shape = parse_input_shape(args.input_shape)
    if args.depth < 1:
        raise ValueError(f"--depth must be at least 1, got {args.depth}")
    if args.top is not None and args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    blocks = [name.strip() for name in args.blocks.split(",") if name.strip()] if args.blocks is not None else None
    if blocks is not None and not blocks:
        raise ValueError("--blocks is empty: give qualified module names such as layer1,layer2")
    model = LatencyModel.load(args.model)
    network = load_module_target(args.target)
    if args.measure:
        apply_allocator_policy(protocol_of(model))
    report = analyze_network(network, input_shape, model, depth=args.depth, blocks=blocks, measure=args.measure,
                             top=args.top, device=args.device, threads=args.threads, progress=not args.no_progress)
    print(report.format_table())
    written = []
    if args.json:
        atomic_write_json(args.json, report.to_dict())
        written.append(args.json)
    if args.plot:
        written.append(str(plot_report(report, args.plot)))
    if written:
        print(f"wrote {', '.join(written)}")
    return 0
