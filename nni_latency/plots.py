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

__all__ = ["plot_fit", "plot_predictions", "plot_report", "pyplot", "save_figure", "identity_band"]


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


def plot_fit(records: Sequence[dict], model, reference, path_stem: str | Path,
             held_out_predictions: Sequence[float] | None = None) -> list[Path]:
    """Left: the published two-regime fit (points, both regimes, breakpoint). Right: the chosen model's
    held-out (cross-validated) predictions against the measurements, with the ±10% band."""
    plt = pyplot()
    measured = np.array([r["latency_ms"] for r in records])
    families = [r["spec"]["family"] for r in records]
    rows = [r["features"] for r in records]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5))

    regime = reference.regressor  # a TwoRegimeModel: the prediction is a function of its initial prediction
    initial = regime.initial(features_matrix(rows, regime.feature_names))
    for family in sorted(set(families)):
        chosen = np.array([f == family for f in families])
        left.scatter(np.maximum(initial[chosen], 1e-4), measured[chosen], s=14, label=family)
    positive = initial[initial > 0]
    span = np.geomspace(max(positive.min() if len(positive) else 1e-3, 1e-4), max(initial.max(), 1e-3), 200)
    below = span < regime.breakpoint_
    left.plot(span[below], regime.from_initial(span[below]), "k--", label="low regime: slope*x+offset")
    left.plot(span[~below], regime.from_initial(span[~below]), "k-", label="high regime: x")
    if np.isfinite(regime.breakpoint_) and regime.breakpoint_ > 0:
        left.axvline(regime.breakpoint_, color="grey", linestyle=":", label=f"breakpoint {regime.breakpoint_:.3g} ms")
    left.set(xscale="log", yscale="log", xlabel="initial prediction a*ACTS+b*INP+c*FLOPs+d (ms)",
             ylabel="measured latency (ms)", title="published two-regime model (training points)")
    left.legend(fontsize=7)

    predicted = np.asarray(held_out_predictions if held_out_predictions is not None else model.predict(rows))
    right.scatter(measured, np.maximum(predicted, 1e-4), s=14, c="tab:blue")
    identity_band(right, measured.min() * 0.8, measured.max() * 1.25, color="tab:green")
    cv = model.metrics.get("cv", {}).get(model.kind, {})
    title = f"{model.kind} (cross-validated MdAPE {100 * cv.get('mdape', float('nan')):.1f}%)"
    which = "held-out" if held_out_predictions is not None else "training-set"
    right.set(xscale="log", yscale="log", xlabel="measured latency (ms)", ylabel=f"{which} prediction (ms)",
              title=title)
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
    positions = range(len(rows))[::-1]
    colors = ["tab:red" if r.bottleneck else ("tab:gray" if r.name == REST else "tab:blue") for r in rows]
    axes.barh(list(positions), [r.predicted_ms for r in rows], color=colors)
    measured = [(p, r.measured_ms) for p, r in zip(positions, rows) if r.measured_ms is not None]
    if measured:
        axes.scatter([m for _, m in measured], [p for p, _ in measured], marker="|", s=120, color="black",
                     label="measured alone", zorder=3)
        axes.legend(loc="lower right", fontsize=8)
    axes.set_yticks(list(positions), [f"{r.name} ({r.type})" if r.name != REST else r.name for r in rows],
                    fontsize=8)
    for position, row in zip(positions, rows):
        axes.annotate(f" {100 * row.share:.1f}% {row.bound}", (max(row.predicted_ms, 0.0), position),
                      va="center", fontsize=7)
    axes.set_xlabel("predicted latency (ms)")
    axes.set_title(f"{report.network} {format_shape(report.input_shape)}: {report.total_predicted_ms:.2f} ms "
                   f"predicted ({report.model_kind}); red = bottlenecks", fontsize=9)
    axes.margins(x=0.2)
    figure.tight_layout()
    target = Path(path)
    return save_figure(figure, target, (target.suffix or ".png",))[0]
