"""``nni-latency evaluate``: measure a held-out test set and score a device model on it."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="device_model.json written by `nni-latency profile` or `fit`")
    parser.add_argument("--config", default=None,
                        help="YAML test-set config (default: the packaged configs/testset_cpu.yaml, about 1,000 "
                             "blocks, 10-15 minutes at 1 thread; configs/testset_smoke.yaml is a 10-block check)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set seed=3 --set threshold_ms=1")
    parser.add_argument("--output-dir", default="runs/evaluate",
                        help="where testset.jsonl, metrics.json, predictions.jsonl and pred_vs_measured.png/svg go "
                             "(default: runs/evaluate); rerunning into the same directory resumes the measuring")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads while timing (default: the model's, so the test matches its profiling)")
    parser.add_argument("--dataset", default=None,
                        help="score on an already measured JSONL (a testset.jsonl or microbench.jsonl) instead of "
                             "measuring")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config, packaged_config
    from ..evaluation import TestSetConfig, evaluate_model, format_metrics, measurement_protocol
    from ..model import LatencyModel
    from ..timing import apply_allocator_policy

    config_path = args.config or packaged_config("testset_cpu.yaml")
    config = load_config(config_path, TestSetConfig, args.overrides)
    if args.dataset is None and (args.threads is None or args.threads >= 1):  # it will measure
        apply_allocator_policy(measurement_protocol(LatencyModel.load(args.model), args.threads, config.timing))
    result = evaluate_model(args.model, config, args.output_dir, threads=args.threads, dataset=args.dataset,
                            progress=not args.no_progress, config_source=str(config_path))
    print(f"device model {result.metrics['model']['kind']} on {result.metrics['model']['device']}, "
          f"test set {config_path}")
    print(format_metrics(result.metrics))
    print("wrote " + ", ".join(str(p) for p in result.paths))
    return 0
