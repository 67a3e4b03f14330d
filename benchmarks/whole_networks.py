"""Whole networks of the zoo and of NNI's hub spaces, measured end to end in several regimes, each beside its
repeat floor: the "zoo" section of docs/BENCHMARKS.md (``benchmarks/run.py`` calls ``run`` and ``render``).

    python benchmarks/whole_networks.py --quick --profile-dir runs/cpu --output /tmp/zoo.md   # this section alone

Every network is measured with ``nni_latency.evaluate.networks.measure_networks`` in 2 x ``rounds``
interleaved passes: its latency is the median of all of them, and the *repeat floor* compares the median of
the even passes with that of the odd ones (the same networks measured twice, interleaved), the error no
predictor can be judged below. The plain-glibc regime runs in a freshly spawned process, since the steady
allocator policy is process-wide and one-way; the 2-thread regime is scored with a model profiled at 2 threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also in spawned children

import baselines  # noqa: E402
import networks  # noqa: E402
from common import REPO, ensure_profile, profile_timing, timing_settings  # noqa: E402
from report import num, pct, table, target_status  # noqa: E402

_logger = logging.getLogger("benchmarks.whole_networks")

SELECTION = "all,hub:mobilenetv3:5,hub:proxylessnas:5,hub:shufflenet:5"
QUICK_SELECTION = "squeezenet1_1,mobilenet_v3_small,levit_128s,hub:proxylessnas:1"
ROWS = (baselines.DEFAULT, baselines.PREVIOUS, baselines.PUBLISHED, baselines.FLOPS, baselines.LUT)
FLOOR = "repeat floor (same networks, measured twice)"
HF_SELECTION, QUICK_HF = "hf:all", "hf:MobileNetV2,hf:LeViT"


@dataclass(frozen=True)
class Regime:
    name: str
    slug: str
    threads: int = 1
    batch: int = 1
    image_size: int | None = None
    allocator: str = "steady"
    profile_slug: str | None = None  # another regime's profile, when this one measures under the same setting
    runtime: str = "torch"


EAGER, ORT = "t1_b1", "ort_t1_b1"
REGIMES = (
    Regime("1 thread, batch 1", EAGER),
    Regime("1 thread, batch 8, 128 px", "t1_b8_128px", batch=8, image_size=128),
    Regime("2 threads, batch 1", "t2_b1", threads=2),
    Regime("plain glibc (fresh process), 1 thread, batch 1", "glibc_t1_b1", allocator="default"),
    Regime("ONNX Runtime, 1 thread, batch 1", ORT, runtime="onnxruntime"),
    Regime("ONNX Runtime, 2 threads, batch 1", "ort_t2_b1", threads=2, runtime="onnxruntime"),
)
HF_REGIMES = (Regime("HF transformers implementations, 1 thread, batch 1", "hf_t1_b1", profile_slug=EAGER),
              Regime("HF transformers implementations in ONNX Runtime, 1 thread, batch 1", "hf_ort_t1_b1",
                     profile_slug=ORT, runtime="onnxruntime"))


def _protocol(model, regime: Regime, timing: dict[str, Any], rounds: int):
    from nni_latency.runtimes.protocol import TIMING_FIELDS, protocol_of

    return protocol_of(model).replace(threads=regime.threads, allocator=regime.allocator, rounds=2 * rounds,
                                      **{k: timing[k] for k in TIMING_FIELDS})


def _measure(spec_dicts: list[dict], protocol_dict: dict, dataset: str, batch: int, image_size: int | None,
             progress: bool) -> None:
    """Measure in this process (run in a spawned child for the plain-glibc regime: it never set a policy)."""
    from nni_latency.evaluate.networks import measure_networks
    from nni_latency.evaluate.selection import NetworkSpec
    from nni_latency.runtimes.protocol import MeasurementProtocol

    specs = [NetworkSpec(**d) for d in spec_dicts]
    measure_networks(specs, MeasurementProtocol(**protocol_dict), Path(dataset), batch, image_size,
                     progress=progress, spaces={})


def _not_measured(module, shape):
    raise RuntimeError("the fresh process left networks unmeasured; rerun to resume")


def measured_rows(specs, protocol, dataset: Path, regime: Regime, progress: bool, spaces: dict) -> dict[str, dict]:
    """Name -> combined row of every network in ``regime`` (measured in a fresh process under plain glibc)."""
    from nni_latency.evaluate.networks import measure_networks

    if regime.allocator == "default":
        networks.in_fresh_process(_measure, ([s.to_dict() for s in specs], protocol.to_dict(), str(dataset),
                                             regime.batch, regime.image_size, progress), "plain-glibc measurement")
        return measure_networks(specs, protocol, dataset, regime.batch, regime.image_size, _not_measured,
                                progress=False, spaces=spaces)
    return measure_networks(specs, protocol, dataset, regime.batch, regime.image_size, progress=progress,
                            spaces=spaces)


def repeat_floor(rows: Sequence[dict]) -> dict[str, float] | None:
    """The even passes' median against the odd passes' per network (rows with ``round_ms``), scored like a
    predictor; None when no network was measured twice."""
    from nni_latency.fit.metrics import error_summary

    passes = [r["round_ms"] for r in rows if len(r.get("round_ms") or []) >= 2]
    if not passes:
        return None
    return error_summary([np.median(p[0::2]) for p in passes], [np.median(p[1::2]) for p in passes])


def _features(spec, regime: Regime, model, spaces: dict) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncovered operators are reported by `nni-latency evaluate --networks`
        network = spec.build(regime.image_size, spaces)
        return model.count(network, spec.input_shape(regime.batch, regime.image_size)).as_dict()


def lut_latency(spec, regime: Regime, table_path: Path, timing: dict[str, Any], spaces: dict) -> float:
    """FBNet's measured lookup table for a hub sample: its blocks, each timed alone (``rotate``), summed."""
    block_table = networks.BlockTable(table_path, {**timing, "threads": regime.threads, "allocator": "steady"})
    network = spec.build(regime.image_size, spaces)
    blocks = networks.network_blocks(network, spec.input_shape(regime.batch, regime.image_size))
    return float(sum(block_table.block_latency(block) for block in blocks))


def _profile_child(config_dict: dict, directory: str, threads: int, progress: bool) -> None:
    """Profile in this (fresh, spawned) process without touching the allocator: plain glibc."""
    from nni_latency.files.config import config_from_dict
    from nni_latency.profile.run import run_profile
    from nni_latency.suite.config import ProfileConfig

    run_profile(config_from_dict(ProfileConfig, config_dict), "cpu", directory, threads=threads, progress=progress)


def regime_model(regime: Regime, profile, args) -> tuple[Any, dict]:
    """The device model a regime is scored with, profiled for it just before its networks are measured.

    A profile at the regime's threads, covering its batch, under its allocator (plain glibc in a fresh
    process), taken right before its networks: the machine's speed drifts by several percent within minutes
    here, so a profile from the start of the run would mix that drift into every regime's error.
    """
    from nni_latency.files.config import config_to_dict, load_config, packaged_config
    from nni_latency.model.model import LatencyModel
    from nni_latency.rows.store import load_records
    from nni_latency.suite.config import ProfileConfig

    directory = args.cache_dir / "whole_networks" / (regime.profile_slug or regime.slug) / "profile"
    if not (directory / "device_model.json").exists():
        overrides = ["count=60", "chains.count=10", "timing.min_run_time=0.02", "timing.max_run_time=0.1"] \
            if args.quick else []
        overrides += [f"timing.allocator={regime.allocator}", f"runtime={regime.runtime}"]
        config = load_config(packaged_config("profile_cpu.yaml"), ProfileConfig, overrides)
        if regime.batch > 1:
            config = config.covering_batches([1, regime.batch])
        if regime.allocator == "default":  # the steady policy is process-wide and one-way: profile elsewhere
            networks.in_fresh_process(_profile_child, (config_to_dict(config), str(directory), regime.threads,
                                                       not args.no_progress), "plain-glibc profiling")
        else:
            from nni_latency.profile.run import run_profile

            run_profile(config, "cpu", directory, threads=regime.threads, progress=not args.no_progress)
    model, records = LatencyModel.load(directory / "device_model.json"), load_records(directory / "microbench.jsonl")
    return model, baselines.fit_predictors(records, model)


def run_regime(regime: Regime, specs, args, profile, timing: dict[str, Any], spaces: dict) -> dict[str, Any]:
    """Measure, predict and score ``specs`` in ``regime``; a JSON-able summary (also written to the cache)."""
    from nni_latency.errors import MeasurementError, first_line
    from nni_latency.evaluate.networks import score_networks
    from nni_latency.measure.drift import check_drift
    from nni_latency.runtimes.protocol import protocol_of

    model, predictors = regime_model(regime, profile, args)
    protocol = _protocol(model, regime, timing, args.zoo_rounds)
    directory = args.cache_dir / "whole_networks" / regime.slug
    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drift = check_drift(model, protocol)
    counted, left_out = {}, {}
    for spec in specs:  # counted first: a network this runtime cannot run is left out, with its reason
        try:
            counted[spec.name] = _features(spec, regime, model, spaces)
        except MeasurementError as error:
            _logger.info("%s left out of %s: %s", spec.name, regime.slug, error)
            left_out[spec.name] = first_line(error)
    specs = [spec for spec in specs if spec.name in counted]
    rows = measured_rows(specs, protocol, directory / "networks.jsonl", regime, not args.no_progress, spaces)
    features = [counted[spec.name] for spec in specs]
    measured = [rows[spec.name] for spec in specs]
    scores = {FLOOR: repeat_floor(measured)}
    for name in ROWS[:-1]:
        if name not in predictors:
            continue
        predicted = predictors[name].predict(features)
        scores[name] = score_networks([{"name": s.name, "kind": s.kind, "measured_ms": r["latency_ms"],
                                        "predicted_ms": float(p)} for s, r, p in zip(specs, measured, predicted)])
    hub = [(s, r) for s, r in zip(specs, measured) if s.kind == "hub"]
    if hub and regime.slug == REGIMES[0].slug:  # the table a search would build, at the profiled setting
        lut = [lut_latency(s, regime, args.cache_dir / "whole_networks" / "hub_blocks.jsonl", timing, spaces)
               for s, _ in hub]
        scores[baselines.LUT] = score_networks([{"name": s.name, "kind": s.kind, "measured_ms": r["latency_ms"],
                                                 "predicted_ms": p} for (s, r), p in zip(hub, lut)])
    summary = {"regime": dataclasses.asdict(regime), "networks": len(specs), "rounds": 2 * args.zoo_rounds,
               "profile_seconds": model.metrics.get("profile_seconds"),
               "profile_cv_mdape": model.metrics.get("cv", {}).get(model.kind, {}).get("mdape"),
               "model_threads": protocol_of(model).threads, "model_batches": model.device.get("batches"),
               "drift": drift.to_dict() if drift else None,
               "warnings": sorted({str(w.message) for w in caught}), "left_out": left_out,
               "measured_ms": [min(r["latency_ms"] for r in measured), max(r["latency_ms"] for r in measured)],
               "scores": scores,
               "rows": [{"name": s.name, "kind": s.kind, "measured_ms": r["latency_ms"], "round_ms": r["round_ms"],
                         "predicted_ms": float(p)}
                        for s, r, p in zip(specs, measured, predictors[baselines.DEFAULT].predict(features))]}
    from nni_latency.files.fileio import atomic_write_json

    atomic_write_json(directory / "summary.json", summary)
    return summary


def run(args, profile, timing: dict[str, Any]) -> list[dict[str, Any]]:
    """Every regime on the zoo and hub samples of ``args.zoo_selection``; one summary per regime."""
    from nni_latency.evaluate.selection import select_networks

    spaces: dict = {}
    specs = select_networks(args.zoo_selection, seed=args.seed, spaces=spaces)
    regimes = [regime for regime in REGIMES if regime.slug in args.regimes]
    _logger.info("whole networks: %d networks in %d regimes", len(specs), len(regimes))
    summaries = [run_regime(regime, specs, args, profile, timing, spaces) for regime in regimes]
    try:  # real implementations: a second test set, beside the zoo, at the first regime's setting
        import transformers  # noqa: F401
    except ImportError:
        _logger.info("transformers is not installed: the HF implementations are left out")
        return summaries
    hf_specs = select_networks(QUICK_HF if args.quick else HF_SELECTION, seed=args.seed, spaces=spaces)
    summaries.extend(run_regime(regime, hf_specs, args, profile, timing, spaces) for regime in HF_REGIMES
                     if regime.slug in args.regimes)
    return summaries


def render(summaries: Sequence[dict], images: Path, image_dir: str = "img") -> str:
    """The markdown section: a table per regime (the repeat floor first), then the default model per kind."""
    from nni_latency.plots import plot_networks

    parts = ["## Whole networks: the zoo and NNI hub samples", "",
             "Every network of `nni_latency.zoo` (written from its paper) and random samples of NNI's hub spaces "
             "(`hub:SPACE:N`), measured whole with `nni-latency evaluate --networks`'s measuring loop: "
             f"{summaries[0]['rounds']} interleaved passes, the latency is the profile's statistic (its `quantile` "
             "of the timed runs) over all of them. The *repeat floor* scores "
             "the median of the even passes against that of the odd ones, as if it were a predictor: no predictor "
             "can be judged below it. The other rows predict from the whole network's features (one forward pass); "
             "the LUT row (hub samples, first regime only) sums the network's blocks timed alone, as FBNet's "
             "measured table does. Bias is the median signed error (positive: predicted too slow).", ""]
    for summary in summaries:
        regime = summary["regime"]
        low, high = summary["measured_ms"]
        notes = [f"{summary['networks']} networks, measured {low:.3g}-{high:.3g} ms"]
        if summary.get("profile_seconds") and not regime.get("profile_slug"):
            notes.append(f"its model profiled in {summary['profile_seconds']:.0f} s (held-out blocks: MdAPE "
                         f"{pct(summary['profile_cv_mdape'])})")
        if summary["drift"]:
            notes.append(f"drift probe before measuring: {100 * (summary['drift']['ratio'] - 1):+.1f}% "
                         f"(noise ±{100 * summary['drift']['noise']:.1f}%)")
        if regime["threads"] != 1:
            notes.append(f"scored with a model profiled at {regime['threads']} threads")
        if summary.get("left_out"):
            notes.append("left out, as this runtime cannot run them: " + "; ".join(
                f"{name} ({reason.split(';')[0]})"
                for name, reason in summary["left_out"].items()))
        if regime["batch"] > max(summary["model_batches"] or [1]):
            notes.append(f"batch {regime['batch']} lies outside the profiled batches "
                         f"{summary['model_batches']}: an extrapolation")
        rows = []
        for name, s in summary["scores"].items():
            worst = ", ".join(f"{w['name']} {pct(w['error'])}" for w in s.get("worst", [])[:3]) or "-"
            rows.append((name, s["count"], pct(s["mdape"]), pct(s["within_5pct"], 0), pct(s["within_10pct"], 0),
                         pct(s["bias"]), num(s["kendall_tau"], 3), worst))
        parts += [f"### {regime['name']}", "", "; ".join(notes) + ".", "",
                  table(["predictor", "networks", "MdAPE", "within ±5%", "within ±10%", "bias", "Kendall τ",
                         "worst three"], rows), ""]
    kinds = sorted({k for s in summaries for k in s["scores"][baselines.DEFAULT]["kinds"]})
    rows = [(kind, *[f"{pct(s['scores'][baselines.DEFAULT]['kinds'][kind]['mdape'])} "
                     f"({s['scores'][baselines.DEFAULT]['kinds'][kind]['count']})"
                     if kind in s["scores"][baselines.DEFAULT]["kinds"] else "-" for s in summaries])
            for kind in kinds]
    parts += ["Default model, MdAPE per kind (networks):", "",
              table(["kind", *[s["regime"]["name"] for s in summaries]], rows), ""]
    first = summaries[0]
    rows = [(name, kind, k["count"], pct(k["mdape"]), pct(k["within_10pct"], 0), pct(k["bias"]),
             num(k["kendall_tau"], 3))
            for name, s in first["scores"].items() for kind, k in s.get("kinds", {}).items()
            if kind in ("transformer", "hybrid")]
    if rows:
        parts += [f"### Transformers and hybrids ({first['regime']['name']})", "",
                  "The zoo's attention networks by predictor (targets: MdAPE ≤ 8%, ≥ 75% within ±10%, "
                  "τ ≥ 0.95).", "",
                  table(["predictor", "kind", "networks", "MdAPE", "within ±10%", "bias", "Kendall τ"], rows), ""]
    parts += runtime_comparison(summaries)
    parts += issue_targets(summaries)
    paths = plot_networks(first["rows"], images / "zoo_networks",
                          f"default model, whole networks ({first['regime']['name']})")
    parts += [f"![whole networks of the zoo and hub samples]({image_dir}/{paths[0].name})", ""]
    return "\n".join(parts)


# (regime slug, kinds, what, goal, higher is better, unit): the whole-network targets of the runtime and attention
# work, each scored on the default model's rows of one regime
NETWORK_TARGETS = (
    (EAGER, ("cnn",), "within ±10%", 0.90, True), (EAGER, ("cnn",), "MdAPE", 0.04, False),
    (EAGER, ("transformer", "hybrid"), "MdAPE", 0.06, False),
    (EAGER, ("transformer", "hybrid"), "Kendall τ", 0.95, True),
    ("t2_b1", None, "MdAPE", 0.06, False),
    (ORT, ("cnn",), "within ±10%", 0.90, True), (ORT, ("cnn",), "MdAPE", 0.05, False),
    ("hf_ort_t1_b1", ("cnn",), "within ±10%", 0.90, True), ("hf_ort_t1_b1", ("cnn",), "MdAPE", 0.05, False),
    (ORT, ("transformer", "hybrid"), "MdAPE", 0.08, False),
    ("hf_ort_t1_b1", ("transformer", "hybrid"), "MdAPE", 0.08, False),
    ("ort_t2_b1", None, "MdAPE", 0.06, False),
)
_STATISTIC = {"within ±10%": "within_10pct", "MdAPE": "mdape", "Kendall τ": "kendall_tau"}


def issue_targets(summaries: Sequence[dict]) -> list[str]:
    """The whole-network targets, each measured on the default model's rows of its regime (kinds pooled)."""
    from nni_latency.fit.metrics import error_summary

    found = {s["regime"]["slug"]: s for s in summaries}
    rows = []
    for slug, kinds, what, goal, higher in NETWORK_TARGETS:
        if slug not in found:
            continue
        picked = [r for r in found[slug]["rows"] if kinds is None or r.get("kind") in kinds]
        if len(picked) < 2:
            continue
        score = error_summary(np.array([r["measured_ms"] for r in picked]),
                              np.array([r["predicted_ms"] for r in picked]))
        value = score[_STATISTIC[what]]
        unit = "tau" if what == "Kendall τ" else "pct"
        shown = num(value, 3) if unit == "tau" else pct(value)
        goal_text = f"{'≥' if higher else '≤'} {num(goal, 2) if unit == 'tau' else pct(goal, 0)}"
        rows.append((found[slug]["regime"]["name"], " and ".join(kinds) if kinds else "all", len(picked), what,
                     goal_text, shown, target_status(value, goal, higher, unit)))
    if not rows:
        return []
    return ["### Whole-network targets (default model)", "",
            table(["regime", "networks", "count", "statistic", "goal", "measured", "status"], rows), ""]


def runtime_comparison(summaries: Sequence[dict]) -> list[str]:
    """Eager PyTorch against ONNX Runtime on the same networks, each measured whole in a fresh process: the speedup
    per network, and how far the two runtimes agree on which network is faster (Kendall tau of the measured
    latencies; the eager model's predictions scored against ORT's measurements, as a search steered by eager
    latency would be)."""
    from nni_latency.fit.metrics import error_summary

    parts = []
    for eager_slug, ort_slug in ((EAGER, ORT), ("hf_t1_b1", "hf_ort_t1_b1")):
        found = {s["regime"]["slug"]: s for s in summaries}
        if eager_slug not in found or ort_slug not in found:
            continue
        eager = {r["name"]: r for r in found[eager_slug]["rows"]}
        ort = {r["name"]: r for r in found[ort_slug]["rows"]}
        names = [name for name in eager if name in ort]
        if len(names) < 3:
            continue
        eager_ms = np.array([eager[n]["measured_ms"] for n in names])
        ort_ms = np.array([ort[n]["measured_ms"] for n in names])
        speedup = eager_ms / ort_ms
        tau = error_summary(eager_ms, ort_ms)["kendall_tau"]
        pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
        flips = sum((eager_ms[i] - eager_ms[j]) * (ort_ms[i] - ort_ms[j]) < 0 for i, j in pairs)
        steered = error_summary(ort_ms, np.array([eager[n]["predicted_ms"] for n in names]))
        own = error_summary(ort_ms, np.array([ort[n]["predicted_ms"] for n in names]))
        order = list(np.argsort(speedup))
        shown = order if len(order) <= 10 else order[:5] + order[-5:]
        rows = [(names[i], ort[names[i]].get("kind", "-"), num(eager_ms[i], 3), num(ort_ms[i], 3),
                 f"{speedup[i]:.2f}") for i in shown]
        parts += [f"### Eager PyTorch against ONNX Runtime ({found[eager_slug]['regime']['name']} / "
                  f"{found[ort_slug]['regime']['name']})", "",
                  f"{len(names)} networks, each measured whole in a fresh process in both runtimes. Eager latency "
                  f"over ORT latency: {speedup.min():.2f}-{speedup.max():.2f} (median {np.median(speedup):.2f}), "
                  f"not one factor: Kendall τ between the two runtimes' latencies {tau:.3f}, {flips} of "
                  f"{len(pairs)} pairs of networks change order. Scored against ORT's measurements, the eager "
                  "device model (what a "
                  f"search steered by eager latency sees) has Kendall τ {steered['kendall_tau']:.3f} and bias "
                  f"{pct(steered['bias'])}; the ORT device model τ {own['kendall_tau']:.3f}, MdAPE "
                  f"{pct(own['mdape'])}.", "",
                  "Where ORT gains least and most:", "",
                  table(["network", "kind", "eager ms", "ORT ms", "eager / ORT"], rows), ""]
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    """This section alone, from an existing profile (``--profile-dir``) or a fresh one in the cache."""
    import hostcheck
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"a short check: {QUICK_SELECTION}, short timings")
    parser.add_argument("--profile-dir", default=None, help="reuse this profile instead of profiling")
    parser.add_argument("--cache-dir", default=None, help="where measurements are cached")
    parser.add_argument("--output", default="runs/benchmarks/whole_networks.md", help="the markdown to write")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_arguments(parser)
    hostcheck.add_argument(parser)
    args = parser.parse_args(argv)
    args.threads, args.seed, args.networks = 1, 100, 0
    args.cache_dir = Path(args.cache_dir or REPO / "runs" / "benchmarks" /
                          f"t1{'-quick' if args.quick else ''}")
    finish_arguments(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from nni_latency.measure.allocator import apply_allocator_policy
    from nni_latency.runtimes.protocol import MeasurementProtocol

    apply_allocator_policy(MeasurementProtocol(allocator="steady"))  # this process; glibc runs in a child
    host = hostcheck.start(args, "benchmarks/whole_networks.py")
    profile = ensure_profile(args)
    timing = timing_settings(profile_timing(profile), 1, args.quick)
    output = Path(args.output)
    (output.parent / "img").mkdir(parents=True, exist_ok=True)
    text = render(run(args, profile, timing), output.parent / "img")
    text = f"{hostcheck.header_line(host)}\n\n{text}"
    from nni_latency.files.fileio import atomic_write_text

    atomic_write_text(output, text)
    _logger.info("wrote %s", output)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of this section, shared with ``benchmarks/run.py``."""
    parser.add_argument("--zoo", dest="zoo_selection", default=None,
                        help=f"networks of the whole-network section (default {SELECTION}; with --quick "
                             f"{QUICK_SELECTION})")
    parser.add_argument("--zoo-rounds", type=int, default=None,
                        help="passes per half of the repeat floor (each network is measured twice as often; "
                             "default 2, 1 with --quick)")
    slugs = [regime.slug for regime in (*REGIMES, *HF_REGIMES)]
    parser.add_argument("--regimes", default=",".join(slugs),
                        help=f"comma-separated regimes of the whole-network section (default all: {','.join(slugs)})")


def finish_arguments(args: argparse.Namespace) -> None:
    args.zoo_selection = args.zoo_selection or (QUICK_SELECTION if args.quick else SELECTION)
    args.zoo_rounds = args.zoo_rounds or (1 if args.quick else 2)
    if args.zoo_rounds < 1:
        raise SystemExit(f"--zoo-rounds must be at least 1, got {args.zoo_rounds}")
    known = {regime.slug for regime in (*REGIMES, *HF_REGIMES)}
    args.regimes = [slug.strip() for slug in args.regimes.split(",") if slug.strip()]
    unknown = sorted(set(args.regimes) - known)
    if unknown or not args.regimes:
        raise SystemExit(f"--regimes: unknown {unknown or 'none given'}; choose from {','.join(sorted(known))}")


if __name__ == "__main__":
    sys.exit(main())
