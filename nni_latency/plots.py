"""Matplotlib figures of a fitted device model (written as PNG and SVG, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["plot_fit"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path_stem: Path) -> list[Path]:
    paths = [path_stem.with_suffix(".png"), path_stem.with_suffix(".svg")]
    for path in paths:
        figure.savefig(path, dpi=130, bbox_inches="tight")
    return paths


def plot_fit(records: Sequence[dict], model, reference, path_stem: str | Path,
             held_out_predictions: Sequence[float] | None = None) -> list[Path]:
    """Left: the published two-regime fit (points, both regimes, breakpoint). Right: the chosen model's
    held-out (cross-validated) predictions against the measurements, with the ±10% band."""
    plt = _pyplot()
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
    line = np.geomspace(measured.min() * 0.8, measured.max() * 1.25, 50)
    right.plot(line, line, "k-", linewidth=1)
    right.fill_between(line, line * 0.9, line * 1.1, color="tab:green", alpha=0.15, label="±10%")
    cv = model.metrics.get("cv", {}).get(model.kind, {})
    title = f"{model.kind} (cross-validated MdAPE {100 * cv.get('mdape', float('nan')):.1f}%)"
    which = "held-out" if held_out_predictions is not None else "training-set"
    right.set(xscale="log", yscale="log", xlabel="measured latency (ms)", ylabel=f"{which} prediction (ms)",
              title=title)
    right.legend(fontsize=8)
    figure.suptitle(f"{model.device.get('name', '')}, {model.device.get('threads', '?')} thread(s)", fontsize=9)
    paths = _save(figure, Path(path_stem))
    plt.close(figure)
    return paths
