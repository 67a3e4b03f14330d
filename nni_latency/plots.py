"""Matplotlib figures, headless: the fit of a device model, predictions against measurements, and the
bottleneck report of a network; each written atomically (PNG and SVG unless told otherwise).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .fileio import atomic_write
from .model import features_matrix

_logger = logging.getLogger(__name__)

__all__ = ["plot_fit", "plot_predictions", "plot_report", "pyplot", "save_figure", "identity_band", "log_ticks"]


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path_stem: Path, suffixes: Sequence[str] = (".png", ".svg")) -> list[Path]:
    """Save ``figure`` beside ``path_stem`` in each format, each written atomically (temp file, rename)."""
    paths = [Path(path_stem).with_suffix(suffix) for suffix in suffixes]
    for path in paths:
        atomic_write(path, lambda handle: figure.savefig(handle, dpi=130, bbox_inches="tight",
                                                         format=path.suffix.lstrip(".")), binary=True)
    return paths


def identity_band(axes, low: float, high: float, color: str = "grey") -> None:
    """The y = x line and the ±10% band on log axes, from ``low`` to ``high``."""
    line = np.geomspace(low, high, 100)
    axes.plot(line, line, "k-", linewidth=1, label="y = x")
    axes.fill_between(line, line * 0.9, line * 1.1, color=color, alpha=0.2, label="±10%")


def log_ticks(axes, low: float, high: float) -> None:
    """Plain-number tick labels on both log axes of ``axes`` (0.05, 0.1, 0.2 ...), at 1-2-5 steps when the
    range is narrow enough for them and at decades otherwise: matplotlib's own minor labels (3x10^-1,
    4x10^-1, ...) overlap on a range of one or two decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = np.log10(max(high, 1e-12) / max(low, 1e-12))
    subs = (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())


def _scatter_by_family(axes, x: np.ndarray, y: np.ndarray, families: Sequence[str], **style) -> None:
    families = np.asarray(families)
    for family in sorted(set(families)):
        chosen = families == family
        axes.scatter(x[chosen], y[chosen], label=f"{family} ({chosen.sum()})", **style)


def _draw_regimes(axes, records: Sequence[dict], regime_model, measured: np.ndarray, families) -> None:
    """The two-regime model drawn as it works: measured against its initial prediction, both regimes, breakpoint."""
    regime = regime_model.regressor  # the prediction is a function of its initial prediction
    initial = regime.initial(features_matrix([r["features"] for r in records], regime.feature_names))
    _scatter_by_family(axes, np.maximum(initial, 1e-4), measured, families, s=14)
    positive = initial[initial > 0]
    span = np.geomspace(max(positive.min() if len(positive) else 1e-3, 1e-4), max(initial.max(), 1e-3), 200)
    below = span < regime.breakpoint_
    axes.plot(span[below], regime.from_initial(span[below]), "k--", label="low regime: slope*x+offset")
    axes.plot(span[~below], regime.from_initial(span[~below]), "k-", label="high regime: x")
    if np.isfinite(regime.breakpoint_) and regime.breakpoint_ > 0:
        axes.axvline(regime.breakpoint_, color="grey", linestyle=":", label=f"breakpoint {regime.breakpoint_:.3g} ms")
    axes.set(xscale="log", yscale="log", xlabel="initial prediction a*ACTS+b*INP+c*FLOPs+d (ms)",
             ylabel="measured latency (ms)", title="two_regime: both regimes on the training points")


def _draw_training_fit(axes, records: Sequence[dict], model, reference, measured: np.ndarray, families) -> None:
    """The chosen model's predictions on its training points, by family; the reference's in grey for comparison."""
    rows = [r["features"] for r in records]
    predicted = np.maximum(model.predict(rows), 1e-4)
    _scatter_by_family(axes, measured, predicted, families, s=14)
    if reference is not None and reference.kind != model.kind:
        axes.scatter(measured, np.maximum(reference.predict(rows), 1e-4), s=10, marker="x", color="grey",
                     alpha=0.6, label=f"{reference.kind} (reference)")
    low, high = min(measured.min(), predicted.min()) * 0.8, max(measured.max(), predicted.max()) * 1.25
    identity_band(axes, low, high)
    error = np.median(np.abs(predicted - measured) / measured)
    axes.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel="measured latency (ms)",
             ylabel="training-set prediction (ms)",
             title=f"{model.kind} on its training points (MdAPE {100 * error:.1f}%)")
    log_ticks(axes, low, high)


def plot_fit(records: Sequence[dict], model, reference, path_stem: str | Path,
             held_out_predictions: Sequence[float] | None = None) -> list[Path]:
    """Left: the chosen model on its training points (a two-regime model with both regimes and its breakpoint;
    any other kind against the measurements, by family, with the published two-regime ``reference`` in grey).
    Right: the chosen model's held-out (cross-validated) predictions against the measurements, with the ±10% band."""
    plt = pyplot()
    measured = np.array([r["latency_ms"] for r in records])
    families = [r["spec"]["family"] for r in records]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    if model.kind == "two_regime":
        _draw_regimes(left, records, model, measured, families)
    else:
        _draw_training_fit(left, records, model, reference, measured, families)
    left.legend(fontsize=7)

    predicted = np.maximum(np.asarray(held_out_predictions if held_out_predictions is not None
                                      else model.predict([r["features"] for r in records])), 1e-4)
    right.scatter(measured, predicted, s=14, c="tab:blue")
    low, high = min(measured.min(), predicted.min()) * 0.8, max(measured.max(), predicted.max()) * 1.25
    identity_band(right, low, high, color="tab:green")
    cv = model.metrics.get("cv", {}).get(model.kind, {})
    title = f"{model.kind} (cross-validated MdAPE {100 * cv.get('mdape', float('nan')):.1f}%)"
    which = "held-out" if held_out_predictions is not None else "training-set"
    right.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel="measured latency (ms)",
              ylabel=f"{which} prediction (ms)", title=title)
    log_ticks(right, low, high)
    right.legend(fontsize=8)
    threads = model.protocol.threads if model.protocol is not None else "?"
    figure.suptitle(f"{model.device.get('name', '')}, {threads} thread(s)", fontsize=9)
    paths = save_figure(figure, Path(path_stem))
    plt.close(figure)
    return paths


def plot_predictions(records: Sequence[dict], predicted: Sequence[float], path_stem: str | Path,
                     title: str = "") -> list[Path]:
    """Predicted vs measured on log axes with y = x and the +-10% band, one colour per family."""
    plt = pyplot()
    measured = np.array([r["latency_ms"] for r in records], float)
    predicted = np.maximum(np.asarray(predicted, float), 1e-4)
    families = np.array([r.get("family", "unknown") for r in records])
    figure, axes = plt.subplots(figsize=(7, 6.5))
    palette = plt.get_cmap("tab20")
    hues = [*range(0, 20, 2), *range(1, 20, 2)]  # the ten distinct hues first, then their light variants
    for index, family in enumerate(sorted(set(families))):
        chosen = families == family
        axes.scatter(measured[chosen], predicted[chosen], s=9, alpha=0.75, color=palette(hues[index % 20]),
                     label=f"{family} ({chosen.sum()})")
    low, high = min(measured.min(), predicted.min()) * 0.8, max(measured.max(), predicted.max()) * 1.25
    identity_band(axes, low, high)
    axes.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel="measured latency (ms)",
             ylabel="predicted latency (ms)", title=title)
    log_ticks(axes, low, high)
    axes.legend(fontsize=7, loc="upper left", markerscale=1.5)
    paths = save_figure(figure, Path(path_stem))
    plt.close(figure)
    return paths


def plot_report(report, path: str | os.PathLike) -> Path:
    """A horizontal bar chart of the rows, heaviest on top, bottlenecks highlighted; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .analysis import REST, format_shape

    rows = report.blocks
    figure = Figure(figsize=(8, 1.2 + 0.28 * len(rows)))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(rows))[::-1])
    colors = ["tab:red" if r.bottleneck else ("tab:gray" if r.name == REST else "tab:blue") for r in rows]
    if report.has_parts:  # attention and MLP stacked first, the rest of each row in its usual colour
        left = np.zeros(len(rows))
        for part, color in (("attention", "tab:orange"), ("mlp", "tab:green")):
            widths = np.array([max(r.parts.get(part, 0.0), 0.0) for r in rows])
            axes.barh(positions, widths, left=left, color=color, label=part if part == "attention" else "MLP")
            left += widths
        axes.barh(positions, [max(r.parts.get("other", 0.0), 0.0) for r in rows], left=left, color=colors,
                  label="other")
    else:
        axes.barh(positions, [r.predicted_ms for r in rows], color=colors)
    measured = [(p, r.measured_ms) for p, r in zip(positions, rows) if r.measured_ms is not None]
    if measured:
        axes.scatter([m for _, m in measured], [p for p, _ in measured], marker="|", s=120, color="black",
                     label="measured alone", zorder=3)
    if measured or report.has_parts:
        axes.legend(loc="lower right", fontsize=8)
    axes.set_yticks(positions, [f"{r.name} ({r.type})" if r.name != REST else r.name for r in rows], fontsize=8)
    for position, row in zip(positions, rows):
        axes.annotate(f" {100 * row.share:.1f}% {row.bound}", (max(row.predicted_ms, 0.0), position),
                      va="center", fontsize=7)
    axes.set_xlabel("predicted latency (ms)")
    parts = ""
    if report.has_parts:
        total = report.total_predicted_ms or 1.0
        parts = (f"\nattention {100 * report.parts['attention'] / total:.1f}%, MLP "
                 f"{100 * report.parts['mlp'] / total:.1f}%, other {100 * report.parts['other'] / total:.1f}%")
    axes.set_title(f"{report.network} {format_shape(report.input_shape)}: {report.total_predicted_ms:.2f} ms "
                   f"predicted ({report.model_kind}); red = bottlenecks{parts}", fontsize=9)
    axes.margins(x=0.2)
    figure.tight_layout()
    target = Path(path)
    return save_figure(figure, target, (target.suffix or ".png",))[0]
