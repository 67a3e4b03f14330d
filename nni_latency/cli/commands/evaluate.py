"""``nni-latency evaluate``: score a device model on a held-out block test set, or on whole networks
(``--networks``), measured on this machine."""

from __future__ import annotations

import argparse
import contextlib

from ...errors import InvalidInput

_NETWORK_ONLY = ("batch", "image_size", "device", "rounds", "in_process")
_BLOCK_ONLY = ("config", "dataset")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="device_model.json written by `nni-latency profile` or `fit`")
    parser.add_argument("--config", default=None,
                        help="YAML test-set config (default: the packaged configs/testset_cpu.yaml, about 1,000 "
                             "blocks, 10-15 minutes at 1 thread; configs/testset_smoke.yaml is a 10-block check)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set seed=3 --set threshold_ms=1")
    parser.add_argument("--output-dir", default=None,
                        help="where the measurements, metrics.json, predictions.jsonl and the plot go (default: "
                             "runs/evaluate, or runs/evaluate_networks with --networks); rerunning into the same "
                             "directory resumes the measuring")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads while timing (default: the model's, so the test matches its profiling)")
    parser.add_argument("--dataset", default=None,
                        help="score on an already measured JSONL (a testset.jsonl or microbench.jsonl) instead of "
                             "measuring")
    networks = parser.add_argument_group("whole networks")
    networks.add_argument("--networks", default=None, metavar="SELECTION",
                          help="measure whole networks instead of blocks: all, cnn, transformer, hybrid, zoo names "
                               "hub:SPACE:N (N random architectures of a space of NNI's hub, at its own input size: "
                               "mobilenetv3, darts, autoformer, ...), "
                               "hf:NAME or hf:all / hf:cnn / hf:transformer / hf:hybrid (HF transformers "
                               "implementations, docs/HF_NETWORKS.md), comma-separated, e.g. cnn,hub:proxylessnas:5")
    networks.add_argument("--batch", type=int, default=None, help="batch size (default: the model's)")
    networks.add_argument("--image-size", type=int, default=None, metavar="PX",
                          help="input resolution of every network (default: each network's own, 224 for most)")
    networks.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the model's)")
    networks.add_argument("--rounds", type=int, default=None,
                          help="interleaved passes over the networks, combined into each latency (default: 3)")
    networks.add_argument("--in-process", action="store_true", default=None,
                          help="time every network in this process instead of a fresh process of its own (faster to "
                               "start; what ran before in a process can slow a network by tens of percent)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _refuse(args: argparse.Namespace, names: tuple[str, ...], where: str) -> None:
    given = [name for name in names if getattr(args, name) is not None]
    if given:
        raise InvalidInput(f"--{given[0].replace('_', '-')} applies {where}")


def run(args: argparse.Namespace) -> int:
    from . import check_not_a_directory, check_threads

    check_threads(args.threads)
    check_not_a_directory(args.dataset, "--dataset", "testset.jsonl")
    if args.networks is not None:
        _refuse(args, _BLOCK_ONLY, "to the block test set, not to --networks")
        if args.overrides:
            raise InvalidInput("--set applies to the block test set, not to --networks")
    else:
        _refuse(args, _NETWORK_ONLY, "with --networks only (the block test set is measured as its config says)")
    folder = args.output_dir = args.output_dir or f"runs/evaluate{'_networks' if args.networks is not None else ''}"
    with _one_writer(args, folder):
        return _run_networks(args) if args.networks is not None else _run_blocks(args)


def _one_writer(args: argparse.Namespace, folder: str):
    """Check the destinations in ``folder`` before anything is measured, then hold its lock."""
    from pathlib import Path

    from ...files.locking import folder_lock
    from ...files.outputs import Output, check_outputs

    rows = "networks.jsonl" if args.networks is not None else None if args.dataset else "testset.jsonl"
    names = {"metrics.json": "report", "predictions.jsonl": "report", **({rows: "rows"} if rows else {})}
    check_outputs([Output(Path(folder) / name, kind, f"{name} in --output-dir") for name, kind in names.items()],
                  {"--model": args.model, "--config": args.config, "--dataset": args.dataset})
    return folder_lock(folder, "nni-latency evaluate")


def _print_advice(protocol) -> None:
    from ...measure.allocator import allocator_advice

    advice = allocator_advice(protocol)
    if advice:
        print(advice)


def _run_blocks(args: argparse.Namespace) -> int:
    from ...evaluate.blocks import evaluate_model, format_metrics
    from ...evaluate.testset import TestSetConfig
    from ...files.config import find_config, load_config, packaged_config
    from ...measure.allocator import apply_allocator_policy
    from ...measure.hostload import watch_host
    from ...model.model import LatencyModel

    config_path = find_config(args.config) if args.config else packaged_config("testset_cpu.yaml")
    config = load_config(config_path, TestSetConfig, args.overrides)
    measuring = args.dataset is None and (args.threads is None or args.threads >= 1)
    model = LatencyModel.load(args.model)  # loaded once, passed down
    protocol = model.measuring_protocol(threads=args.threads, timing=config.timing) if measuring else None
    if protocol is not None:
        apply_allocator_policy(protocol)
    with watch_host("measuring the test set") if measuring else contextlib.nullcontext() as host:
        result = evaluate_model(model, config, args.output_dir, threads=args.threads, dataset=args.dataset,
                                progress=not args.no_progress, config_source=str(config_path),
                                host_load=host.record if measuring else None)
    testset = result.metrics["testset"]
    if args.dataset is None:
        source = f"held-out test set {config_path}"
    else:  # never the model's own rows: evaluate_model leaves them out (all of them: refused)
        left = testset["left_out_training_rows"]
        source = (f"held-out rows of {args.dataset}" + (f" ({left} row(s) the model was fitted on left out)"
                                                          if left else ""))
    print(f"device model {result.metrics['model']['kind']} on {result.metrics['model']['device']}, {source}")
    print(format_metrics(result.metrics))
    if result.metrics.get("drift"):
        print(f"drift: {result.metrics['drift']['message']}")
    if protocol is not None:
        _print_advice(protocol)
    print("wrote " + ", ".join(str(p) for p in result.paths))
    return 0


def _run_networks(args: argparse.Namespace) -> int:
    from ...evaluate.networks import DEFAULT_ROUNDS, evaluate_networks, format_networks
    from ...measure.allocator import apply_allocator_policy
    from ...measure.hostload import watch_host
    from ...model.model import LatencyModel

    rounds = DEFAULT_ROUNDS if args.rounds is None else args.rounds
    model = LatencyModel.load(args.model)  # loaded once, passed down
    protocol = model.measuring_protocol(threads=args.threads, device=args.device, rounds=rounds)
    apply_allocator_policy(protocol)
    with watch_host("measuring the networks") as host:
        result = evaluate_networks(model, args.networks, args.output_dir,
                                   batch=args.batch, image_size=args.image_size, threads=args.threads,
                                   device=args.device, rounds=rounds, progress=not args.no_progress,
                                   host_load=host.record, in_process=bool(args.in_process))
    where = "in this process" if args.in_process else "each in a fresh process"
    print(f"device model {result.metrics['model']['kind']} on {result.metrics['model']['device']}, "
          f"networks {args.networks} on {protocol.device} ({protocol.threads} thread(s), {protocol.runtime}, {where}); "
          f"latency: {protocol.statistic}")
    print(format_networks(result))
    _print_advice(protocol)
    print("wrote " + ", ".join(str(p) for p in result.paths))
    return 0
