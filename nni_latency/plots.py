"""Matplotlib figures, headless: the fit of a device model, predictions against measurements (blocks and whole
networks), and the bottleneck report of a network; each written atomically (PNG and SVG unless told otherwise).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .files.fileio import atomic_write
from .model.model import features_matrix

_logger = logging.getLogger(__name__)

__all__ = ["plot_fit", "plot_predictions", "plot_report", "plot_networks", "networks_figure", "pyplot", "save_figure",
           "identity_band", "log_ticks", "KIND_COLOURS"]

# Whole networks by kind (``network_selection.NETWORK_KINDS``), in this order; another kind gets the next colour.
KIND_COLOURS = {"cnn": "tab:blue", "transformer": "tab:orange", "hybrid": "tab:green", "hub": "tab:red"}


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
    """Plain-number tick labels on both log axes of ``axes`` (0.05, 0.1, 0.2 ...), never overlapping: 1-2-5 steps
    (finer within a decade, coarser over many), and on a range too narrow for three of them, four values spread
    evenly at two significant digits. matplotlib's own minor labels (3x10^-1, 4x10^-1, ...) overlap."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    decades = math.log10(high / low)
    steps = (1, 1.5, 2, 3, 5, 7) if decades <= 1 else (1, 2, 5) if decades <= 2.5 else (1, 3) if decades <= 4 else (1,)
    ticks = [m * 10.0**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1) for m in steps]
    ticks = [t for t in ticks if low <= t <= high]
    if len(ticks) < 3:
        ticks = sorted({float(f"{v:.2g}") for v in np.geomspace(low * 1.05, high / 1.05, 4)})
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_locator(FixedLocator(ticks))
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


def plot_networks(rows: Sequence[dict], path_stem: str | Path, title: str = "", labelled: int = 5) -> list[Path]:
    """Predicted vs measured whole networks on log axes (``networks_figure``), as PNG and SVG."""
    figure = networks_figure(rows, title, labelled)
    paths = save_figure(figure, Path(path_stem))
    pyplot().close(figure)
    return paths


def networks_figure(rows: Sequence[dict], title: str = "", labelled: int = 5):
    """Rows with ``name``, ``kind``, ``measured_ms`` and ``predicted_ms``: y = x and the ±10% band, one colour per
    kind, the ``labelled`` worst networks named."""
    plt = pyplot()
    measured = np.array([r["measured_ms"] for r in rows], float)
    predicted = np.maximum(np.array([r["predicted_ms"] for r in rows], float), 1e-4)
    kinds = np.array([r["kind"] for r in rows])
    figure, axes = plt.subplots(figsize=(7, 6.5))
    for kind in [*KIND_COLOURS, *sorted(set(kinds) - set(KIND_COLOURS))]:
        chosen = kinds == kind
        if chosen.any():
            axes.scatter(measured[chosen], predicted[chosen], s=22, alpha=0.85, color=KIND_COLOURS.get(kind),
                         label=f"{kind} ({chosen.sum()})", zorder=3)
    low, high = min(measured.min(), predicted.min()) * 0.8, max(measured.max(), predicted.max()) * 1.25
    identity_band(axes, low, high)
    errors = np.abs(predicted - measured) / measured
    worst = sorted(np.argsort(-errors, kind="stable")[:labelled], key=lambda i: predicted[i])
    for rank, index in enumerate(worst):  # inwards from the nearer edge, neighbours above and below in turn
        inwards = 8 if math.log(measured[index] / low) < 0.5 * math.log(high / low) else -8
        offset = (inwards, (8, -14, 18, -24)[rank % 4])
        axes.annotate(rows[index]["name"], (measured[index], predicted[index]), xytext=offset,
                      textcoords="offset points", fontsize=7, ha="left" if offset[0] > 0 else "right",
                      arrowprops={"arrowstyle": "-", "linewidth": 0.5, "color": "grey"})
    axes.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel="measured latency (ms)",
             ylabel="predicted latency (ms)", title=title)
    axes.title.set_fontsize(9)
    log_ticks(axes, low, high)
    axes.legend(fontsize=8, loc="upper left")
    return figure


def plot_report(report, path: str | os.PathLike) -> Path:
    """A horizontal bar chart of the rows, heaviest on top, bottlenecks highlighted; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .analysis.report import REST, format_shape

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


def plot_op_classes(rows, path: str | os.PathLike, title: str = "") -> Path:
    """Measured (in place) against predicted time per operator class, largest error on top; written atomically.
    ``rows`` are ``op_classes.OpClassRow``s."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 1.4 + 0.32 * len(rows)))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = np.arange(len(rows))[::-1]
    axes.barh(positions + 0.2, [r.measured_ms for r in rows], height=0.4, color="tab:gray", label="measured in place")
    axes.barh(positions - 0.2, [r.predicted_ms for r in rows], height=0.4, color="tab:blue", label="predicted")
    for position, row in zip(positions, rows):
        ratio = "" if row.ratio is None else f" x{row.ratio:.2f}"
        axes.annotate(ratio, (max(row.measured_ms, row.predicted_ms), position), va="center", fontsize=7)
    axes.set_yticks(positions, [f"{r.cls} ({r.calls})" for r in rows], fontsize=8)
    axes.set_xlabel("time per forward pass (ms)")
    axes.set_title(f"{title}: time per operator class, predicted / measured".strip(": "), fontsize=9)
    axes.legend(loc="lower right", fontsize=8)
    axes.margins(x=0.15)
    figure.tight_layout()
    target = Path(path)
    return save_figure(figure, target, (target.suffix or ".png",))[0]
