"""``nni-latency search``: a YAML-configured search in NNI, on any space of ``nni_latency.spaces.hub``, whose latency
term is the device model's prediction."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="search YAML; unset: the packaged configs/fbnet_search.yaml (darts_search.yaml searches "
                             "NNI's DARTS cell space). A bare name such as fbnet_search.yaml is looked up among the "
                             "packaged configs when no such file exists")
    parser.add_argument("--output-dir", default=None,
                        help="where result.json, the probability table/heat map and the curves go; "
                             "unset: the config's output_dir")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (value parsed as YAML), e.g. --set latency.alpha=0 "
                             "--set trainer.epochs=4")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _quiet_after_import(verbose: bool) -> None:
    """NNI and Lightning set their loggers to INFO when imported; keep their per-epoch chatter out of the summary."""
    import logging

    import nni  # noqa: F401
    import pytorch_lightning  # noqa: F401

    if not verbose:
        for name in ("nni", "pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.ERROR if name == "nni" else logging.WARNING)


def run(args: argparse.Namespace) -> int:
    from ...files.locking import folder_lock
    from ...measure.allocator import apply_allocator_policy
    from ...search.config import load_search_config, resolve_config_path
    from ...search.engine import SearchInterrupted
    from ...search.preflight import check_search, latency_protocol
    from ...search.run import run_search

    _quiet_after_import(getattr(args, "verbose", False))

    config = load_search_config(args.config, args.overrides, args.output_dir)
    check_search(config, resolve_config_path(args.config))  # every check before any work (profiling, training)
    apply_allocator_policy(latency_protocol(config.latency))
    progress = config.trainer.progress and not args.no_progress
    with folder_lock(config.output_dir, "nni-latency search"):  # one writer per folder
        try:
            result = run_search(config, progress=progress)
        except SearchInterrupted as interrupted:  # NNI's engine: its manager and trials are stopped; how to resume
            print(f"nni-latency search: {interrupted}", file=sys.stderr)
            return 130
    if result.is_main_process:
        print(result.summary())
    return 0
