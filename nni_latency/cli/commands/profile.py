"""``nni-latency profile``: benchmark a device, fit its latency model, write device_model.json and a plot."""

from __future__ import annotations

import argparse

from ...errors import InvalidInput


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--runtime", default=None, choices=("torch", "onnxruntime"),
                        help="what runs the blocks: torch (eager PyTorch) or onnxruntime (each block exported to "
                             "ONNX and run in an InferenceSession with full graph optimization; needs pip install "
                             "'nni-latency[onnx]'); default: the config's runtime, torch in the shipped configs. A "
                             "model describes one runtime: profile each one you deploy on")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads used while timing (default: the config's, 1 in the shipped configs; "
                             "1 gives the most stable numbers)")
    parser.add_argument("--batches", default=None, metavar="B,B,...",
                        help="batch sizes the model must predict, e.g. 1,8 (default: the config's batch, with a few "
                             "blocks at its extra_batches); the blocks and chains are spread evenly over them")
    parser.add_argument("--config", default=None,
                        help="YAML suite config (default: the packaged configs/profile_cpu.yaml or "
                             "profile_cuda.yaml for the device)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set count=60 --set timing.protocol=hot")
    parser.add_argument("--output-dir", default="runs/profile",
                        help="where device_model.json, microbench.jsonl and fit.png/svg go (default: runs/profile); "
                             "rerunning the same config into the same directory resumes an interrupted run; "
                             "another config there is refused (see --force)")
    parser.add_argument("--force", action="store_true",
                        help="start a fresh dataset in --output-dir even though it holds measurements of another "
                             "config; the old microbench.jsonl and device_model.json are kept beside it, renamed "
                             "with the time")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from ...files.config import load_config, packaged_config
    from ...files.locking import folder_lock
    from ...files.outputs import PROFILE_OUTPUTS, check_profile_folder
    from ...measure.allocator import apply_allocator_policy
    from ...measure.hostload import watch_host
    from ...plots import plot_fit
    from ...profile.run import profile_protocol, run_profile
    from ...profile.summary import format_profile_summary
    from ...runtimes.torch.device import resolve_device
    from ...suite.config import ProfileConfig
    from . import check_threads

    device = resolve_device(args.device)
    config_path = args.config or packaged_config(f"profile_{'cuda' if device.type == 'cuda' else 'cpu'}.yaml")
    config = load_config(config_path, ProfileConfig, args.overrides)
    if args.batches is not None:
        config = config.covering_batches(_batch_sizes(args.batches))
    check_threads(args.threads)
    check_threads(config.threads, "threads")
    protocol = profile_protocol(config, args.device, args.threads, args.runtime)  # built once, passed down
    apply_allocator_policy(protocol)
    check_profile_folder(args.output_dir, PROFILE_OUTPUTS, {"--config": config_path})  # before any work
    with folder_lock(args.output_dir, "nni-latency profile"), watch_host("profiling") as host:  # one writer
        result = run_profile(config, protocol, args.output_dir, progress=not args.no_progress, force=args.force,
                             host_load=host.record)
    plots = plot_fit(result.records, result.model, result.reference, result.output_dir / "fit",
                     result.held_out[result.model.kind])
    print(format_profile_summary(result.model, result.records, result.reference, result.seconds,
                                 measured=result.measured, reused=result.reused))
    print(f"wrote {result.output_dir / 'device_model.json'}, {result.output_dir / 'microbench.jsonl'}, "
          f"{', '.join(str(p) for p in plots)}")
    return 0


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(size < 1 for size in sizes):
        raise InvalidInput(f"--batches {text!r} must list positive batch sizes, e.g. 1,8")
    return sorted(set(sizes))
