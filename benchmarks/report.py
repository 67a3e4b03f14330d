"""Plots and the markdown of docs/BENCHMARKS.md, from the results of ``benchmarks/run.py``.

Every number in the document comes from the run's measurements; the prose only explains the method.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import baselines
import numpy as np
from scipy import stats

from nni_latency.plots import identity_band, plot_predictions, pyplot, save_figure

_WHOLE_ROWS_ORDER = ("default model (NNI LatencyProfiler)", "default model (predict_module, whole network)",
                     baselines.PUBLISHED, baselines.FLOPS, baselines.FOREST, baselines.LUT)


# ------------------------------------------------------------------------------------------------
# formatting


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}%"


def num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.1f}" if value < 600 else f"{value:.0f} ({value / 3600:.1f} h)"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def network_errors(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    errors = np.abs(predicted - measured) / measured
    tau = stats.kendalltau(measured, predicted).statistic if len(measured) > 1 and np.ptp(predicted) > 0 else math.nan
    return {"within_10pct": float(np.mean(errors <= 0.10)), "mdape": float(np.median(errors)),
            "worst": float(errors.max()), "kendall_tau": float(tau), "count": len(measured)}


# ------------------------------------------------------------------------------------------------
# plots


def _save(figure, stem: Path) -> str:
    return save_figure(figure, stem)[0].name


def make_plots(images: Path, testset, spaces: dict, predictors: dict) -> dict[str, str]:
    """Write the figures under ``images``; returns name -> file name (relative to ``images``)."""

    plt = pyplot()
    plots = {}
    default = testset.scores[baselines.DEFAULT]
    title = (f"default model on held-out blocks: MdAPE {pct(default['mdape'])}, within ±10% "
             f"{pct(default['within_10pct'], 0)}, Kendall τ {num(default['kendall_tau'])}")
    plot_predictions(testset.records, testset.predictions[baselines.DEFAULT], images / "testset_pred_vs_measured",
                     title)
    plots["testset"] = "testset_pred_vs_measured.png"

    measured = np.array([r["latency_ms"] for r in testset.records])
    names = list(predictors)
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.4), squeeze=False)
    everything = np.concatenate([measured, *[testset.predictions[n] for n in names]])
    low, high = max(everything.min(), 1e-3) * 0.8, everything.max() * 1.25
    for axis, name in zip(axes[0], names):
        axis.scatter(measured, np.maximum(testset.predictions[name], low), s=5, alpha=0.6)
        identity_band(axis, low, high)
        scores = testset.scores[name]
        axis.set_title(f"{name}\nMdAPE {pct(scores['mdape'])}, ±10% {pct(scores['within_10pct'], 0)}", fontsize=9)
        axis.set_xlabel("measured (ms)")
    axes[0][0].set_ylabel("predicted (ms)")
    plots["baselines"] = _save(figure, images / "testset_baselines")
    plt.close(figure)

    rows = [row for row in _WHOLE_ROWS_ORDER if all(row in s.predictions for s in spaces.values())]
    figure, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 4.4), squeeze=False)
    everything = np.concatenate([s.measured for s in spaces.values()]
                                + [s.predictions[r] for s in spaces.values() for r in rows])
    low, high = max(everything.min(), 1e-3) * 0.8, everything.max() * 1.25
    for axis, row in zip(axes[0], rows):
        for marker, (kind, result) in zip("os", spaces.items()):
            axis.scatter(result.measured, np.maximum(result.predictions[row], low), s=16, marker=marker, label=kind)
        identity_band(axis, low, high)
        axis.set_title(row.replace(" (", "\n("), fontsize=9)
        axis.set_xlabel("measured (ms)")
    axes[0][0].set_ylabel("predicted (ms)")
    axes[0][0].legend(fontsize=8)
    plots["networks"] = _save(figure, images / "whole_networks")
    plt.close(figure)
    return plots


# ------------------------------------------------------------------------------------------------
# markdown


def target_status(value: float, goal: float, higher_is_better: bool, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "not measured"
    met = value >= goal if higher_is_better else value <= goal
    if met:
        return "met"
    gap = abs(value - goal)
    if unit == "pct":
        return f"missed by {100 * gap:.1f} points"
    if unit == "s":
        return f"missed: {gap:.1f} s over ({value / goal:.2f}x the budget)"
    return f"missed by {gap:.3f}"


def _targets(targets: dict, testset, spaces: dict, profile) -> str:
    default = testset.scores[baselines.DEFAULT]
    measured = np.concatenate([s.measured for s in spaces.values()])
    predicted = np.concatenate([s.predictions["default model (NNI LatencyProfiler)"] for s in spaces.values()])
    whole = network_errors(measured, predicted)
    layer_tau = default["within_layer_kendall"]["mean"]
    rows_spec = [
        ("Held-out block median error (default model)", f"≤ {pct(targets['block_mdape'], 0)}", default["mdape"],
         targets["block_mdape"], False, "pct", pct(default["mdape"])),
        ("Held-out blocks within ±10%", f"≥ {pct(targets['block_within_10pct'], 0)}", default["within_10pct"],
         targets["block_within_10pct"], True, "pct", pct(default["within_10pct"])),
        ("Kendall τ, all held-out blocks", f"≥ {targets['kendall_tau']}", default["kendall_tau"],
         targets["kendall_tau"], True, "", num(default["kendall_tau"])),
        ("Kendall τ within an FBNet layer (mean over layers)", f"≥ {targets['within_layer_tau']}", layer_tau,
         targets["within_layer_tau"], True, "", num(layer_tau)),
        (f"Whole networks within ±10% of measured (LatencyProfiler, {whole['count']} FBNet + ProxylessNAS)",
         f"≥ {pct(targets['network_within_10pct'], 0)}", whole["within_10pct"], targets["network_within_10pct"],
         True, "pct", pct(whole["within_10pct"])),
        ("Profiling incl. fit", f"≤ {targets['profile_seconds']:.0f} s", profile.seconds, targets["profile_seconds"],
         False, "s", f"{seconds(profile.seconds)} s"),
    ]
    rows = [(name, goal, shown, target_status(value, target, higher, unit))
            for name, goal, value, target, higher, unit, shown in rows_spec]
    return table(["target", "goal", "measured", "status"], rows)


def _limits(testset, spaces: dict) -> str:
    """What the data says limits accuracy: measurement noise, the hardest families, in-network effects."""
    from baselines import DEFAULT

    noise = testset.repeat
    default = testset.scores[DEFAULT]
    families = sorted(default["families"].items(), key=lambda item: -item[1]["mdape"])[:3]
    lines = []
    if noise:
        lines.append(
            f"- **Measurement noise.** {noise['blocks']} test blocks measured a second time in this run differ "
            f"from their first measurement by a median of {pct(noise['median'])} (90th percentile "
            f"{pct(noise['p90'])}); {pct(noise['within_10pct'])} of them repeat within ±10%. That is the floor "
            f"for any predictor; the default model's {pct(default['mdape'])} MdAPE and "
            f"{pct(default['within_10pct'])} within ±10% are above it, so the rest is model error, concentrated "
            "in the families below.")
    lines.append("- **Hardest families** for the default model: " + ", ".join(
        f"{name} ({pct(stats['mdape'])})" for name, stats in families) + ". Grouped convolutions with few "
        "channels per group run far below the vector units' efficiency, in a way a linear cost per FLOP and per "
        "op does not capture.")
    for kind, result in spaces.items():
        lut = network_errors(result.measured, result.predictions["LUT"])
        ratio = float(np.median(result.predictions["LUT"] / result.measured))
        lines.append(
            f"- **{kind} networks.** Even the *measured* lookup table, every block timed alone, sums to a median "
            f"{ratio:.2f} of the measured network (MdAPE {pct(lut['mdape'])}): that part of the whole-network "
            "error is a cost blocks pay only inside a network, which no per-block predictor trained on isolated "
            "blocks can see.")
    return "\n".join(lines)


def _allocator(results: list[dict]) -> str:
    rows = []
    for r in sorted(results, key=lambda r: (r["name"], r["allocator"] != "default")):
        whole = r["whole_ms"]
        rows.append((r["name"], r["allocator"], ms(whole), ms(r["hot_sum_ms"]), num(r["hot_sum_ms"] / whole, 2),
                     ms(r["rotate_sum_ms"]), num(r["rotate_sum_ms"] / whole, 2), ms(r["predicted_ms"]),
                     num(r["predicted_ms"] / whole, 2)))
    return table(["network", "allocator", "measured whole (ms)", "Σ hot blocks (ms)", "Σ hot / whole",
                  "Σ rotate blocks (ms)", "Σ rotate / whole", "prediction (ms)", "prediction / whole"], rows)


def _ratio_range(results: list[dict], allocator: str, key: str) -> str:
    ratios = [r[key] / r["whole_ms"] for r in results if r["allocator"] == allocator]
    if not ratios:
        return "n/a"
    return f"{min(ratios):.2f}" if len(ratios) == 1 else f"{min(ratios):.2f}-{max(ratios):.2f}"


def _blocks(testset, predictors: dict, profile) -> str:
    setup = profile.seconds
    rows = []
    for name, predictor in predictors.items():
        s = testset.scores[name]
        layer = s["within_layer_kendall"]
        rows.append((name, f"`{predictor.kind}`", seconds(setup), f"{predictor.fit_seconds:.2f}", pct(s["mdape"]),
                     pct(s["mdape_low"]), pct(s["mdape_high"]), pct(s["within_10pct"]), num(s["pearson_r"]),
                     num(s["r2"]), num(s["kendall_tau"]), f"{num(layer['mean'])} / {num(layer['median'])}"))
    rows.append((baselines.LUT, "measured", "one measurement per block", "-", "0 (it is the measurement)", "-", "-",
                 "-", "-", "-", "-", "-"))
    threshold = testset.scores[baselines.DEFAULT]["threshold_ms"]
    return table(["predictor", "kind", "setup: measuring (s)", "fit (s)", "MdAPE", f"MdAPE < {threshold:g} ms",
                  f"MdAPE ≥ {threshold:g} ms", "within ±10%", "Pearson r", "R²", "Kendall τ",
                  "within-layer τ mean / median"], rows)


def _families(testset, predictors: dict, profile) -> str:
    profiled = set(profile.model.device.get("config", {}).get("families", {}))
    families = sorted({r["family"] for r in testset.records})
    block_families = {}
    for r in testset.records:
        block_families.setdefault(r["family"], set()).add(r["spec"]["family"])
    rows = []
    for family in families:
        count = testset.scores[baselines.DEFAULT]["families"][family]["count"]
        seen = "yes" if block_families[family] <= profiled else "no"
        rows.append((family, count, seen, *[pct(testset.scores[n]["families"][family]["mdape"]) for n in predictors]))
    return table(["family", "blocks", "block type in the profiling suite", *[f"MdAPE {n}" for n in predictors]], rows)


def _networks(spaces: dict) -> str:
    rows = []
    names = [row for row in _WHOLE_ROWS_ORDER if all(row in s.predictions for s in spaces.values())]
    for name in names:
        cells = [name]
        for result in spaces.values():
            e = network_errors(result.measured, result.predictions[name])
            cells += [pct(e["within_10pct"], 0), pct(e["mdape"]), pct(e["worst"]), num(e["kendall_tau"], 2)]
        all_errors = network_errors(np.concatenate([s.measured for s in spaces.values()]),
                                    np.concatenate([s.predictions[name] for s in spaces.values()]))
        cells += [pct(all_errors["within_10pct"], 0), pct(all_errors["mdape"])]
        rows.append(cells)
    header = ["predictor"]
    for kind in spaces:
        header += [f"{kind} within ±10%", f"{kind} MdAPE", f"{kind} worst", f"{kind} τ"]
    header += ["all within ±10%", "all MdAPE"]
    return table(header, rows)


def _cost(spaces: dict, profile, width_spaces: dict, per_entry: float) -> str:
    model_seconds = profile.seconds
    rows = []
    for kind, result in spaces.items():
        rows.append((f"{kind} (measured)", result.lut_entries,
                     f"{result.lut_distinct} + {result.lut_misses} fixed parts",
                     seconds(result.lut_seconds), seconds(model_seconds), f"{result.profiler_seconds:.1f}",
                     f"{result.lut_seconds / model_seconds:.1f}x"))
    for name, (entries, distinct) in width_spaces.items():
        estimate = distinct * per_entry
        rows.append((f"{name} (estimated)", entries, distinct, seconds(estimate), seconds(model_seconds), "-",
                     f"{estimate / model_seconds:.0f}x"))
    return table(["space", "(layer, candidate) entries", "distinct configurations measured", "measuring the table (s)",
                  "device model: profiling + fit (s)", "LatencyProfiler build (s)", "table / device model"], rows)


def render(*, args, machine: dict, profile, timing: dict, predictors: dict, testset, spaces: dict,
           allocator: list[dict], width_spaces: dict, per_entry_seconds: float, plots: dict, targets: dict,
           seconds: float, output: Path, sections: dict[str, str] | None = None, host_line: str = "") -> str:
    """The whole document; ``sections`` holds ready sections by place: ``zoo`` (after the whole networks of the
    search spaces) and ``gpu`` (before the data); ``host_line`` says how busy other processes kept the host
    while it was measured (``hostcheck.header_line``)."""
    sections = sections or {}
    flags = " --quick" if args.quick else ""
    flags += f" --threads {args.threads}" if args.threads != 1 else ""
    flags += f" --profile-dir {args.profile_dir}" if args.profile_dir else ""
    img = "img"
    test_config = testset.config_name
    protocol_rounds = getattr(profile.model, "device", {}).get("rounds", 1)
    lut_fbnet = spaces["fbnet"]
    families = sorted({r["family"] for r in testset.records})
    parts = [
        "# Benchmarks",
        "",
        f"Generated by `python benchmarks/run.py{flags}` ({seconds / 60:.0f} min); do not edit by hand, rerun it.",
        *(["", host_line] if host_line else []),
    ]
    if args.quick:
        parts += ["", f"> **Quick run**: a small profile, {len(testset.records)} test blocks, "
                  f"{args.networks} networks per space and short timings. These numbers only check that the "
                  "benchmark works; they are not the project's results."]
    parts += [
        "",
        "## Targets",
        "",
        _targets(targets, testset, spaces, profile),
        "",
        "## What limits accuracy",
        "",
        _limits(testset, spaces),
        "",
        "## Machine",
        "",
        table(["", ""], list(machine.items())),
        "",
        "## Protocol",
        "",
        "- Every whole network (zoo, HF, search-space samples, calibration samples) is timed in a process of its "
        "own (`nni_latency.measure.isolated`), built afresh there: what a process ran before changes what it "
        "measures (docs/PROTOCOL.md).",
        f"- Every latency is `nni_latency.measure.latency.measure_latency` (eager PyTorch on "
        "`torch.utils.benchmark`'s timer; ONNX Runtime sessions in the ORT sections): runs of about 10 ms of calls "
        f"(at least three), eval mode, no grad, {timing['threads']} thread(s), fp32, batch as "
        f"stated, {timing['min_run_time']}-{timing['max_run_time']} s per measurement, re-measured when IQR/median "
        f"exceeds {timing['max_spread']:.0%}; the latency is the profile's statistic, the "
        f"{_quantile_text(timing.get('quantile', 0.5))} of the runs, pooled over the profile's "
        f"{protocol_rounds} interleaved passes for the profile and the held-out blocks.",
        f"- Protocol `rotate` (cycling weight and input copies over a {timing['working_set_mb']:.0f} MB working set, "
        "so each call starts with cold caches, as a block does inside a network) under the `steady` allocator "
        "(glibc keeps freed memory instead of returning it to the OS and page-faulting it back on every forward "
        "pass). Whole networks are measured with the same function and settings. The allocator table below shows "
        "why both are needed.",
        f"- Device model: `{profile.model.kind}` fitted on {len(profile.records)} profiling blocks "
        f"(`configs/profile_cpu.yaml`{', reduced for --quick' if args.quick else ''}); profiling and fit took "
        f"{seconds_text(profile.seconds)}"
        f"{' (a reused profile; the time recorded when it was measured)' if profile.reused else ''}. "
        "All baselines are fitted on the same rows.",
        f"- Held-out test set: `configs/{test_config}`{' (scaled down for --quick)' if args.quick else ''}, "
        f"{len(testset.records)} blocks in {len(families)} families, its own seed, no block of the profiling "
        f"suite; {testset.measured_now} of them measured in this run, in {seconds_text(testset.seconds)}"
        f"{', the others read from the cache' if testset.measured_now < len(testset.records) else ''}.",
        f"- Whole networks: {args.networks} random architectures each of the FBNet space "
        "(`nni_latency.spaces.FBNetSpace`, 22 searched layers, full width, 224x224) and NNI's "
        "`nni.nas.hub.pytorch.ProxylessNAS` (`space.random()`, seed "
        f"{args.seed} onwards), batch 1, each measured end to end.",
        "",
        "## Why isolated blocks add up to networks: allocator and protocol",
        "",
        "Each network is measured whole, and each of its blocks alone with the `hot` protocol (same weights and "
        "input every call, the classic micro-benchmark) and with `rotate`; the sums are compared with the whole. "
        "The allocator policy is process-wide and one-way (`mallopt`), so each policy runs in its own freshly "
        "spawned process. *prediction* is the default model's `predict_module` on the whole network.",
        "",
        _allocator(allocator),
        "",
        f"Ratios of the block sums to the whole network: hot {_ratio_range(allocator, 'default', 'hot_sum_ms')} and "
        f"rotate {_ratio_range(allocator, 'default', 'rotate_sum_ms')} under the default allocator; hot "
        f"{_ratio_range(allocator, 'steady', 'hot_sum_ms')} and rotate "
        f"{_ratio_range(allocator, 'steady', 'rotate_sum_ms')} under the steady allocator.",
        "",
        "## Held-out blocks",
        "",
        "Setup is the measuring every fitted predictor needs (the profiling suite, shared); *fit* is the fit alone. "
        "MdAPE is the median of |predicted - measured| / measured. The within-layer τ ranks the candidates of "
        "one FBNet layer (same input, every candidate; "
        f"{testset.scores[baselines.DEFAULT]['within_layer_kendall']['groups']} "
        "layers), which is the comparison a search makes.",
        "",
        _blocks(testset, predictors, profile),
        "",
        "Median error per family (groups of `configs/testset_cpu.yaml`):",
        "",
        _families(testset, predictors, profile),
        "",
        f"![default model on the held-out blocks]({img}/{plots['testset']})",
        "",
        f"![every predictor on the held-out blocks]({img}/{plots['baselines']})",
        "",
        "## Whole networks",
        "",
        "Rows: the NNI `LatencyProfiler` expression (`profile(sample)`); the default model's `predict_module` on "
        "the frozen network; the other predictors summed over the network's blocks (the network cut at its stem, "
        "searched layers, head and classifier); the measured lookup table (FBNet's approach): every candidate "
        "of every layer measured alone with the `rotate` protocol, plus the fixed parts, summed. "
        f"Measured latencies: FBNet {ms(spaces['fbnet'].measured.min())}-{ms(spaces['fbnet'].measured.max())} ms, "
        f"ProxylessNAS {ms(spaces['proxylessnas'].measured.min())}-{ms(spaces['proxylessnas'].measured.max())} ms.",
        "",
        _networks(spaces),
        "",
        f"![whole networks]({img}/{plots['networks']})",
        "",
        *([sections["zoo"], ""] if sections.get("zoo") else []),
        "## Setup cost: device model vs lookup table",
        "",
        f"A lookup table is measured per space; the device model once per device. FBNet's table has "
        f"{lut_fbnet.lut_entries} entries (22 layers x 9 candidates); layers with the same input and width share "
        f"their measurements, as in NNI's FBNet table, so {lut_fbnet.lut_distinct} distinct configurations were "
        f"measured, in {seconds_text(lut_fbnet.entry_seconds)} ({per_entry_seconds:.2f} s each). A space where each "
        "layer also chooses its width needs an entry per (layer, candidate, input width, output width), so the "
        "table grows with the product of the width choices of consecutive layers; those rows are estimated from "
        "the measured seconds per configuration. Building the `LatencyProfiler` for a space needs no measuring.",
        "",
        _cost(spaces, profile, width_spaces, per_entry_seconds),
        "",
        *([sections["gpu"], ""] if sections.get("gpu") else []),
        "## Data",
        "",
        f"Measurements are cached under `{_relative(args.cache_dir, output)}` (JSONL; delete to re-measure): "
        "`testset/testset.jsonl`, `{space}_blocks.jsonl` (lookup tables and fixed parts), `{space}_networks.jsonl`, "
        "`allocator_{policy}.json`.",
        "",
    ]
    return "\n".join(parts)


def _quantile_text(quantile: float) -> str:
    return {0.5: "median", 0.25: "lower quartile"}.get(float(quantile), f"{float(quantile):g} quantile")


def seconds_text(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "an unknown time"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _relative(path: Path, output: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(output).resolve().parent.parent))
    except ValueError:
        return str(path)
