"""Matplotlib figures of a fitted device model (written as PNG and SVG, headless)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["plot_fit", "plot_predictions", "pyplot", "save_figure", "identity_band"]


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
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
        os.close(fd)
        try:
            figure.savefig(temp, dpi=130, bbox_inches="tight", format=path.suffix.lstrip("."))
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
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

    state = reference.parameters
    initial = np.array([state["a"] * f["acts"] + state["b"] * f["inp"] + state["c"] * f["flops"] + state["d"]
                        for f in rows])
    for family in sorted(set(families)):
        chosen = np.array([f == family for f in families])
        left.scatter(np.maximum(initial[chosen], 1e-4), measured[chosen], s=14, label=family)
    positive = initial[initial > 0]
    span = np.geomspace(max(positive.min() if len(positive) else 1e-3, 1e-4), max(initial.max(), 1e-3), 200)
    below = span < state["breakpoint"]
    left.plot(span[below], state["slope"] * span[below] + state["offset"], "k--", label="low regime: slope*x+offset")
    left.plot(span[~below], span[~below], "k-", label="high regime: x")
    if np.isfinite(state["breakpoint"]) and state["breakpoint"] > 0:
        left.axvline(state["breakpoint"], color="grey", linestyle=":", label=f"breakpoint {state['breakpoint']:.3g} ms")
    left.set(xscale="log", yscale="log", xlabel="initial prediction a*ACTS+b*INP+c*FLOPs+d (ms)",
             ylabel="measured latency (ms)", title="published two-regime model (training points)")
    left.legend(fontsize=7)

    predicted = np.asarray(held_out_predictions if held_out_predictions is not None else model.predict_many(rows))
    right.scatter(measured, np.maximum(predicted, 1e-4), s=14, c="tab:blue")
    identity_band(right, measured.min() * 0.8, measured.max() * 1.25, color="tab:green")
    cv = model.metrics.get("cv", {}).get(model.kind, {})
    title = f"{model.kind} (cross-validated MdAPE {100 * cv.get('mdape', float('nan')):.1f}%)"
    which = "held-out" if held_out_predictions is not None else "training-set"
    right.set(xscale="log", yscale="log", xlabel="measured latency (ms)", ylabel=f"{which} prediction (ms)",
              title=title)
    right.legend(fontsize=8)
    figure.suptitle(f"{model.device.get('name', '')}, {model.device.get('threads', '?')} thread(s)", fontsize=9)
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
