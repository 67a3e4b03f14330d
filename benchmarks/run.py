"""Regenerate docs/BENCHMARKS.md: accuracy and setup cost of the device model against its baselines.

    python benchmarks/run.py                       # the full run (about 100 minutes from scratch)
    python benchmarks/run.py --quick --output /tmp/bench/BENCHMARKS.md   # a few minutes, smaller everything
    python benchmarks/run.py --profile-dir runs/profile                  # reuse a measured profile

Not part of CI. Run it on an otherwise idle machine and leave it both cores (its 2-thread regime needs them).
Every expensive measurement is cached as JSONL under ``--cache-dir`` and reused, so an interrupted run resumes.

What it measures: the profiling suite (setup cost of the device model); the held-out test set of
``configs/testset_cpu.yaml`` scored for the published two-regime model, the default model, a FLOPs
proxy and a random forest; random FBNet and ProxylessNAS architectures measured end to end against the
NNI ``LatencyProfiler``, the sum of block predictions and a measured lookup table (FBNet's approach);
the allocator before/after table, measured in fresh processes because the policy is one-way; the zoo and
NNI hub samples measured whole in four eager regimes and two ONNX Runtime ones, beside their repeat floor
(``whole_networks.py``; its 2-thread regimes want two cores), with eager against ORT on the same networks; one
FBNet search steered by each runtime's model (``search_compare.py``); the GPU section, re-rendered from
``docs/gpu/*.json`` (``gpu_section.py``, written by ``benchmarks/gpu_check.sh`` on a GPU machine); and every
search space of ``nni_latency.spaces.hub`` in both runtimes: profiler build time, ``profile`` time, whole-network
error, and with ``calibrate=10`` (``search_spaces.py``). Every whole network is timed in a fresh process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also in spawned children

import baselines  # noqa: E402
import gpu_section  # noqa: E402
import hostcheck  # noqa: E402
import nas_loss_speed  # noqa: E402
import nas_memo_hits  # noqa: E402
import networks  # noqa: E402
import op_classes  # noqa: E402
import report  # noqa: E402
import search_compare  # noqa: E402
import search_engine  # noqa: E402
import search_spaces  # noqa: E402
import whole_networks  # noqa: E402
from common import REPO, Profile, ensure_profile, profile_timing, timing_settings  # noqa: E402

_logger = logging.getLogger("benchmarks")

TARGETS = {"block_mdape": 0.06, "block_within_10pct": 0.75, "kendall_tau": 0.95, "within_layer_tau": 0.90,
           "network_within_10pct": 0.90, "profile_seconds": 60.0}
WIDTH_CHOICES = {"FBNet, 3 widths per layer": (0.5, 0.75, 1.0),
                 "FBNet, 6 widths per layer": (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a short check: small profile, ~60 test blocks, 3 networks per space, short timings")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads while timing (default 1)")
    parser.add_argument("--output", default=str(REPO / "docs" / "BENCHMARKS.md"),
                        help="the markdown file to write; plots go to img/ beside it (default docs/BENCHMARKS.md)")
    parser.add_argument("--profile-dir", default=None,
                        help="reuse this profile (device_model.json + microbench.jsonl) instead of profiling")
    parser.add_argument("--cache-dir", default=None,
                        help="where measurements are cached (default runs/benchmarks/t{threads}[-quick])")
    parser.add_argument("--networks", type=int, default=None,
                        help="random architectures per space (default 20, 3 with --quick)")
    parser.add_argument("--seed", type=int, default=100, help="seed of the random architectures (default 100)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    whole_networks.add_arguments(parser)
    hostcheck.add_argument(parser)
    args = parser.parse_args(argv)
    whole_networks.finish_arguments(args)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    args.networks = args.networks or (3 if args.quick else 20)
    suffix = "-quick" if args.quick else ""
    args.cache_dir = Path(args.cache_dir or REPO / "runs" / "benchmarks" / f"t{args.threads}{suffix}")
    return args


# ------------------------------------------------------------------------------------------------
# Machine and settings


def machine_description(threads: int) -> dict[str, str]:
    """CPU model, cores and caches from lscpu, plus the software versions."""
    import nni
    import torch

    info: dict[str, str] = {}
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in output.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        for label, key in (("CPU", "Model name"), ("logical CPUs", "CPU(s)"),
                           ("threads per core", "Thread(s) per core"),
                           ("L1d", "L1d cache"), ("L2", "L2 cache"), ("L3", "L3 cache"),
                           ("hypervisor", "Hypervisor vendor")):
            if key in fields:
                info[label] = fields[key]
    except (OSError, subprocess.CalledProcessError):
        info["CPU"] = platform.processor() or platform.machine()
    info.update({"timing threads": str(threads), "torch": torch.__version__, "nni": nni.__version__,
                 "python": platform.python_version(), "OS": platform.platform(terse=True),
                 "date": datetime.date.today().isoformat()})
    return info


# ------------------------------------------------------------------------------------------------
# Held-out blocks


@dataclass
class TestSetResult:
    records: list[dict]
    scores: dict[str, dict]           # predictor name -> score_predictions(...)
    predictions: dict[str, np.ndarray]
    config_name: str
    seconds: float
    measured_now: int                 # blocks measured in this run (the others came from the cache)
    repeat: dict = field(default_factory=dict)  # noise floor: the same blocks measured a second time


def quick_testset(config):
    """A ~60-block version of a test-set config: 3 FBNet layers, a few blocks per group."""
    config.fbnet_layers.count = min(config.fbnet_layers.count, 3)
    for group in config.groups:
        group.count = max(2, group.count // 20)
    return config


def run_testset(args, profile: Profile, predictors: dict, timing: dict[str, Any]) -> TestSetResult:
    from nni_latency.evaluate.blocks import score_predictions
    from nni_latency.evaluate.testset import TestSetConfig, generate_testset, measure_testset, profiling_keys
    from nni_latency.files.config import load_config, packaged_config
    from nni_latency.files.fileio import read_jsonl
    from nni_latency.runtimes.protocol import protocol_of
    from nni_latency.suite.config import TimingConfig

    config_name = "testset_cpu.yaml"
    config = load_config(packaged_config(config_name), TestSetConfig)
    if args.quick:
        config = quick_testset(config)
    blocks = generate_testset(config, protocol_of(profile.model).batch, sorted(profiling_keys(profile.model)))
    timing_config = TimingConfig(working_set_mb=timing["working_set_mb"], min_run_time=timing["min_run_time"],
                                 max_run_time=timing["max_run_time"], max_spread=timing["max_spread"])
    dataset = args.cache_dir / "testset" / "testset.jsonl"
    cached = {r["key"] for r in read_jsonl(dataset)} if dataset.exists() else set()
    started = time.perf_counter()
    records = measure_testset(blocks, profile.model, args.cache_dir / "testset", args.threads, timing_config,
                              progress=not args.no_progress)
    seconds = time.perf_counter() - started
    measured_now = len({b.spec.key for b in blocks} - cached)
    rows = [r["features"] for r in records]
    predictions = {name: np.maximum(np.asarray(p.predict(rows), float), 1e-6) for name, p in predictors.items()}
    scores = {name: score_predictions(records, predicted, config.threshold_ms)
              for name, predicted in predictions.items()}
    return TestSetResult(records, scores, predictions, config_name, seconds, measured_now,
                         repeat_noise(args, blocks, records, profile, timing_config))


def repeat_noise(args, blocks, records, profile: Profile, timing_config) -> dict[str, float]:
    """Measure every 5th test block a second time: how far two measurements of one block are apart.

    No predictor can be expected to beat this floor, so it is the yardstick for the error targets.
    """
    from nni_latency.evaluate.testset import measure_testset

    chosen = blocks[::5]
    again = measure_testset(chosen, profile.model, args.cache_dir / "testset_repeat", args.threads, timing_config,
                            progress=not args.no_progress)
    first = {r["key"]: r["latency_ms"] for r in records}
    differences = np.array([abs(r["latency_ms"] / first[r["key"]] - 1) for r in again])
    return {"blocks": len(differences), "median": float(np.median(differences)),
            "within_10pct": float(np.mean(differences <= 0.10)), "p90": float(np.quantile(differences, 0.9))}


# ------------------------------------------------------------------------------------------------
# Whole networks of the NNI spaces


@dataclass
class SpaceResult:
    space: str
    measured: np.ndarray
    predictions: dict[str, np.ndarray]  # row name -> one prediction per network
    lut_entries: int                    # candidate entries (every candidate of every layer)
    lut_distinct: int                   # distinct configurations among them (each measured once)
    lut_seconds: float                  # measuring them and the fixed parts
    entry_seconds: float                # measuring the candidate entries only
    lut_misses: int                     # blocks measured on demand (fixed parts and any unmatched block)
    profiler_seconds: float
    samples: list[dict] = field(default_factory=list)


PROFILER_ROW = "default model (NNI LatencyProfiler)"
MODULE_ROW = "default model (predict_module, whole network)"


def _block_features(blocks, cache: dict, model) -> list[dict]:
    rows = []
    for block in blocks:
        if block.signature not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[block.signature] = model.count(block.module, block.shape_argument).as_dict()
        rows.append(cache[block.signature])
    return rows


def run_space(kind: str, args, profile: Profile, predictors: dict, timing: dict[str, Any]) -> SpaceResult:
    """Measure ``args.networks`` random architectures of a space end to end, and every predictor on them."""
    from tqdm.auto import tqdm

    from nni_latency.files.fileio import append_jsonl, read_jsonl
    from nni_latency.measure.isolated import measure_module_fresh
    from nni_latency.nas.profiler import LatencyProfiler
    from nni_latency.runtimes.protocol import protocol_of
    from nni_latency.spaces.hub import build_space

    # Each architecture is timed whole in a fresh process, as a user's script would: this process has built the
    # space's profiler and lookup table, and what a process ran before changes what it measures.
    protocol = protocol_of(profile.model).replace(allocator="steady", **timing)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        space = build_space(kind)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profiler = LatencyProfiler(space, networks.NETWORK_INPUT, profile.model)
    profiler_seconds = time.perf_counter() - started

    # The measured lookup table, built as FBNet does: every candidate of every layer, alone.
    table = networks.BlockTable(args.cache_dir / f"{kind}_blocks.jsonl", {**timing, "allocator": "steady"})
    # Layers with the same input and width share entries (the same op at the same shape), as in NNI's
    # FBNet table, so each distinct configuration is measured once.
    entries = list(profiler.choices)
    lut_signatures = set()
    for record in tqdm(entries, desc=f"{kind} lookup table", unit="entry", disable=args.no_progress):
        module = networks.plain_module(space.get_submodule(record.module))
        block = networks.Block(record.module, module, (tuple(record.input_shape),))
        table.latency(module, block.input_shapes, block.signature, lut=True, label=record.label,
                      candidate=record.candidate)
        lut_signatures.add(block.signature)

    samples = networks.random_samples(space, args.networks, args.seed)
    cached = {r["index"]: r for r in read_jsonl(args.cache_dir / f"{kind}_networks.jsonl")} \
        if (args.cache_dir / f"{kind}_networks.jsonl").exists() else {}
    measured, rows = [], {name: [] for name in (PROFILER_ROW, MODULE_ROW, *predictors, baselines.LUT)}
    feature_cache: dict[str, dict] = {}
    misses = set()
    for index, sample in enumerate(tqdm(samples, desc=f"{kind} networks", unit="net", disable=args.no_progress)):
        network = networks.build_network({"kind": kind, "sample": sample}, space)
        record = cached.get(index)
        if record is None or record.get("sample") != sample or record.get("seed") != args.seed:
            m = measure_module_fresh(network, networks.NETWORK_INPUT, protocol)
            record = {"index": index, "seed": args.seed, "sample": sample, "measured_ms": m.median_ms,
                      "iqr_ms": m.iqr_ms, "noisy": m.noisy}
            append_jsonl(args.cache_dir / f"{kind}_networks.jsonl", record)
        measured.append(record["measured_ms"])
        blocks = networks.network_blocks(network)
        block_rows = _block_features(blocks, feature_cache, profile.model)
        rows[PROFILER_ROW].append(profiler.profile(sample))
        features = _network_features(network, profile.model)
        rows[MODULE_ROW].append(float(predictors[baselines.DEFAULT].predict([features])[0]))
        for name, predictor in predictors.items():
            rows[name].append(float(np.sum(predictor.predict(block_rows))))
        lut_total = 0.0
        for block in blocks:
            if block.signature not in lut_signatures:
                misses.add(block.signature)
            lut_total += table.block_latency(block, lut=False)
        rows[baselines.LUT].append(lut_total)
    # The table's cost: every candidate entry plus the fixed parts (stem, head, classifier) measured alone.
    return SpaceResult(kind, np.array(measured), {k: np.array(v, float) for k, v in rows.items()},
                       len(entries), len(lut_signatures), table.seconds(),
                       table.seconds(lambda r: r["signature"] in lut_signatures), len(misses), profiler_seconds,
                       samples)


def _network_features(network, model) -> dict:
    """Features of the whole network, counted as the model counts: one forward pass (includes functional code
    between blocks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.count(network, networks.NETWORK_INPUT).as_dict()


# ------------------------------------------------------------------------------------------------
# Allocator before/after, in fresh processes


def run_allocator(args, profile: Profile, timing: dict[str, Any], fbnet_sample: dict,
                  proxyless_sample: dict) -> list[dict]:
    descriptions = [{"name": "MobileNetV2", "kind": "mobilenetv2"}]
    if not args.quick:
        descriptions += [{"name": "ResNet-18", "kind": "resnet18"},
                         {"name": "FBNet (random sample 0)", "kind": "fbnet", "sample": fbnet_sample},
                         {"name": "ProxylessNAS (random sample 0)", "kind": "proxylessnas", "sample": proxyless_sample}]
    results = []
    for allocator in ("default", "steady"):
        output = args.cache_dir / f"allocator_{allocator}.json"
        if not output.exists():
            _logger.info("measuring %d network(s) whole and block by block under the %s allocator, in a fresh process",
                         len(descriptions), allocator)
            networks.in_fresh_process(networks.allocator_breakdown, (descriptions, allocator, timing, str(output)),
                                      f"{allocator}-allocator measurement")
        results.extend(json.loads(output.read_text()))
    predicted = {}
    for description in descriptions:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            network = networks.build_network(description)
            predicted[description["name"]] = profile.model.predict_module(network, networks.NETWORK_INPUT)
    wanted = {d["name"] for d in descriptions}
    return [{**r, "predicted_ms": predicted[r["name"]]} for r in results if r["name"] in wanted]


# ------------------------------------------------------------------------------------------------
# Setup cost of a table for a space with width choices


def width_space_entries(multipliers: Sequence[float]) -> tuple[int, int]:
    """Table size of FBNet where every layer also picks its width: (layer, candidate, input width, output
    width) entries, and the distinct (candidate, input width, output width, resolution, stride) among them."""
    from nni_latency.spaces.fbnet import CANDIDATE_NAMES, make_divisible
    from nni_latency.spaces.hub import build_space

    space = build_space("fbnet")
    in_widths = {space.stem[0].out_channels}
    resolution = networks.NETWORK_INPUT[-1] // space.stem_stride
    entries, distinct = 0, set()
    for depth, width, stage_stride in zip(space.depths, space.widths, space.stage_strides):
        for index in range(depth):
            stride = stage_stride if index == 0 else 1
            out_widths = {make_divisible(width * m) for m in multipliers}
            entries += len(CANDIDATE_NAMES) * len(in_widths) * len(out_widths)
            distinct.update((name, c_in, c_out, resolution, stride) for name in CANDIDATE_NAMES
                            for c_in in in_widths for c_out in out_widths)
            in_widths, resolution = out_widths, resolution // stride
    return entries, len(distinct)


# ------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", module="nni")
    for name in ("nni", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # This process measures under the steady allocator; the allocator table measures both policies in fresh
    # child processes (``run_allocator``). The library leaves the policy to its caller.
    from nni_latency.measure.allocator import apply_allocator_policy
    from nni_latency.runtimes.protocol import MeasurementProtocol

    apply_allocator_policy(MeasurementProtocol(allocator="steady"))
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    host = hostcheck.start(args, "benchmarks/run.py")
    output = Path(args.output)
    images = output.parent / "img"
    images.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    machine = machine_description(args.threads)
    profile = ensure_profile(args)
    timing = timing_settings(profile_timing(profile), args.threads, args.quick)
    predictors = baselines.fit_predictors(profile.records, profile.model)

    testset = run_testset(args, profile, predictors, timing)
    spaces = {kind: run_space(kind, args, profile, predictors, timing) for kind in networks.SPACES}
    allocator = run_allocator(args, profile, timing, spaces["fbnet"].samples[0], spaces["proxylessnas"].samples[0])
    # The search spaces and the loss step before the zoo: a process that has built and run a hundred large
    # networks runs slower than a fresh one (its drift probe moved +15% to +27% here), so what is timed late
    # would carry that drift. The zoo's regimes each check the probe themselves.
    ort = ort_profile(args, profile)  # profiled here, right before its search spaces; the zoo regime reuses it
    spaces_section = run_search_spaces(args, profile.model, timing, calibrate=0 if args.quick else 10)
    ort_spaces_section = run_search_spaces(args, ort.model, timing)
    model_path = str(profile.directory / "device_model.json")
    nas_sections = [nas_loss_speed.section(model_path, min_run_time=0.3 if args.quick else 1.0),
                    nas_memo_hits.section(40 if args.quick else 300),
                    search_engine.section(model_path, *((4, 1, 100) if args.quick else (16, 2, 600)))]
    ops_section = op_classes.render(op_classes.run(args, profile))  # beside the whole-network tables
    ort_ops_section = op_classes.render(op_classes.run(args, ort))
    zoo_section = whole_networks.render(whole_networks.run(args, profile, timing), images)
    search_section = search_compare.render(search_compare.run(model_path, str(ort.directory / "device_model.json"),
                                                               args.cache_dir / "search_compare", timing, args.quick))
    per_entry = spaces["fbnet"].entry_seconds / max(spaces["fbnet"].lut_distinct, 1)
    width_spaces = {name: width_space_entries(multipliers) for name, multipliers in WIDTH_CHOICES.items()}

    plots = report.make_plots(images, testset, spaces, predictors)
    text = report.render(args=args, machine=machine, profile=profile, timing=timing, predictors=predictors,
                         testset=testset, spaces=spaces, allocator=allocator, width_spaces=width_spaces,
                         per_entry_seconds=per_entry, plots=plots, targets=TARGETS,
                         seconds=time.perf_counter() - started, output=output, host_line=hostcheck.header_line(host),
                         sections={"zoo": "\n\n".join([ops_section, ort_ops_section, zoo_section, search_section,
                                                         spaces_section, ort_spaces_section, *nas_sections]),
                                   "gpu": gpu_section.render()})
    from nni_latency.files.fileio import atomic_write_text

    atomic_write_text(output, text)
    _logger.info("wrote %s (%.0f s)", output, time.perf_counter() - started)
    return 0


def run_search_spaces(args, model, timing: dict[str, Any], calibrate: int = 0) -> str:
    """The per-space section for ``model``'s runtime: every space of ``nni_latency.spaces.hub``
    (``search_spaces.py``), each architecture measured in a fresh process."""
    from nni_latency.spaces.hub import space_names

    result = search_spaces.run(space_names(), model, 2 if args.quick else 6, args.seed, 1 if args.quick else 2,
                               timing, args.cache_dir / "spaces", not args.no_progress, calibrate)
    return search_spaces.render(result)


def ort_profile(args, profile: Profile) -> Profile:
    """The ONNX Runtime device model of the whole-network section's first ORT regime (profiled once, cached)."""
    from nni_latency.rows.store import load_records

    regime = next(r for r in whole_networks.REGIMES if r.slug == whole_networks.ORT)
    model, _ = whole_networks.regime_model(regime, profile, args)
    directory = args.cache_dir / "whole_networks" / regime.slug / "profile"
    return Profile(model, load_records(directory / "microbench.jsonl"), model.metrics.get("profile_seconds") or 0.0,
                   directory, True)


if __name__ == "__main__":
    sys.exit(main())
