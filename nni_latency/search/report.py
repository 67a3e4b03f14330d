"""What a search leaves behind: result.json, the architecture-probability table and heat map, the training
curves, and the one-screen console summary. Every file is written atomically (temporary file, rename).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InvalidInput
from ..files.fileio import atomic_write_json, atomic_write_text
from ..plots import pyplot, save_figure

_logger = logging.getLogger(__name__)

__all__ = ["write_probabilities", "plot_probabilities", "plot_curves", "write_result", "format_summary",
           "RESULT_KEYS"]

RESULT_KEYS = ("architecture", "predicted_latency_ms", "measured_latency_ms", "accuracy", "config")


def _choices(probabilities: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Candidate names in first-seen order (layers whose skip was dropped just lack that column)."""
    names: list[str] = []
    for dist in probabilities.values():
        names.extend(n for n in dist if n not in names)
    return names


def write_probabilities(probabilities: Mapping[str, Mapping[str, float]], architecture: Mapping[str, str],
                        output_dir: Path) -> list[Path]:
    """``probabilities.csv`` (one row per layer) and ``probabilities.md`` (the same, the chosen one in bold)."""
    names = _choices(probabilities)
    csv_lines = [",".join(["layer", *names, "chosen"])]
    md_lines = ["| layer | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, dist in probabilities.items():
        chosen = str(architecture[label])
        csv_lines.append(",".join([label, *(f"{dist[n]:.4f}" if n in dist else "" for n in names),
                                   f'"{chosen}"' if "," in chosen else chosen]))
        cells = []
        for name in names:
            cell = f"{dist[name]:.2f}" if name in dist else "-"
            cells.append(f"**{cell}**" if chosen == name else cell)
        md_lines.append(f"| {label} | " + " | ".join(cells) + " |")
    paths = [output_dir / "probabilities.csv", output_dir / "probabilities.md"]
    atomic_write_text(paths[0], "\n".join(csv_lines) + "\n")
    atomic_write_text(paths[1], "\n".join(md_lines) + "\n")
    return paths


def plot_probabilities(probabilities: Mapping[str, Mapping[str, float]], path: Path, title: str = "") -> Path:
    """Heat map: layers down, candidates across, final softmax probability as colour."""
    plt = pyplot()
    names, labels = _choices(probabilities), list(probabilities)
    grid = np.array([[probabilities[label].get(n, np.nan) for n in names] for label in labels])
    figure, axis = plt.subplots(figsize=(1.0 + 0.75 * len(names), 1.2 + 0.3 * len(labels)))
    image = axis.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    for row, col in zip(*np.nonzero(grid == np.nanmax(grid, axis=1, keepdims=True))):
        axis.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    figure.colorbar(image, ax=axis, label="probability")
    axis.set_title(title or "final architecture probabilities (red: exported)")
    save_figure(figure, path, (path.suffix,))
    plt.close(figure)
    return path


def plot_curves(history: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> Path:
    """Supernet loss per step, and the argmax architecture's predicted latency and temperature per epoch;
    the retraining accuracy per epoch when there was retraining."""
    plt = pyplot()
    steps, epochs, retrain = history.get("steps", []), history.get("epochs", []), history.get("retrain", [])
    panels = 3 if retrain else 2
    figure, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4))
    if steps:
        axes[0].plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=1, label="training loss")
        if any("penalised_loss" in s for s in steps):
            marked = [s for s in steps if "penalised_loss" in s]
            axes[0].plot([s["step"] for s in marked], [s["penalised_loss"] for s in marked], lw=1,
                         label="architecture loss (with latency)")
        axes[0].legend(fontsize=8)
    axes[0].set(xlabel="step", ylabel="loss", title="supernet")
    if epochs:
        x = [e["epoch"] + 1 for e in epochs]
        axes[1].plot(x, [e["predicted_latency_ms"] for e in epochs], "o-", label="argmax architecture")
        axes[1].set(xlabel="epoch", ylabel="predicted latency (ms)", title="architecture")
        if any(e.get("temperature") is not None for e in epochs):
            twin = axes[1].twinx()
            twin.plot(x, [e.get("temperature") for e in epochs], "s--", color="tab:gray", label="temperature")
            twin.set_ylabel("gumbel temperature")
            lines = axes[1].get_lines() + twin.get_lines()  # two y axes: one legend names both
            axes[1].legend(lines, [line.get_label() for line in lines], fontsize=8)
        else:
            axes[1].legend(fontsize=8)
    if retrain:
        axes[2].plot([r["epoch"] + 1 for r in retrain], [r["val_acc"] for r in retrain], "o-")
        axes[2].set(xlabel="epoch", ylabel="val top-1", title="retraining the exported net", ylim=(0, 1))
    figure.tight_layout()
    save_figure(figure, path, (path.suffix,))
    plt.close(figure)
    return path


def write_result(result: Mapping[str, Any], output_dir: Path) -> Path:
    missing = [k for k in RESULT_KEYS if k not in result]
    if missing:
        raise InvalidInput(f"result lacks {', '.join(missing)}")
    path = output_dir / "result.json"
    atomic_write_json(path, dict(result))
    return path


def _compact_architecture(architecture: Mapping[str, Any], width: int = 100) -> list[str]:
    """Architecture one stage (or cell) per line: ``stage2: k3_e6 k5_e1 skip skip``, ``normal: sep_conv_3x3 [0] ...``;
    a long stage continues on indented lines (nothing is cut: result.json has it all, the summary shows it all)."""
    import textwrap

    stages: dict[str, list[str]] = {}
    for label, choice in architecture.items():
        stages.setdefault(re.split(r"[./]", label)[0], []).append(str(choice).replace(" ", ""))
    return [line for stage, choices in stages.items()
            for line in textwrap.wrap(f"  {stage}: {' '.join(choices)}", width, subsequent_indent="    ",
                                      break_long_words=False, break_on_hyphens=False)]


def format_summary(result: Mapping[str, Any], files: Sequence[Path]) -> str:
    """The one-screen summary printed at the end of a search."""
    latency = result.get("latency", {})
    timings = result.get("timings_s", {})
    accuracy = result["accuracy"]
    term = "off"
    if latency.get("enabled"):
        term = f"alpha={latency.get('alpha')} beta={latency.get('beta')} mode={latency.get('mode')}"
        if latency.get("target_ms") is not None:
            term += f" target={latency['target_ms']} ms"
    space = result.get("space", {}).get("name", "fbnet")
    lines = [
        f"Search of {space}: strategy {result.get('strategy', '?')}, latency term {term}",
        "architecture:",
        *_compact_architecture(result["architecture"]),
        f"predicted latency: {result['predicted_latency_ms']:.3f} ms    "
        f"measured: {result['measured_latency_ms']:.3f} ms "
        f"(IQR {result.get('measured_iqr_ms', float('nan')):.3f}, {latency.get('device', '?')})",
        f"accuracy (top-1, {result.get('accuracy_source', '?')}): {100 * accuracy:.1f}%"
        + ("" if result.get("val_accuracy") is None else f"    val: {100 * result['val_accuracy']:.1f}%"),
        "time: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()),
        "wrote: " + ", ".join(p.name for p in files),
    ]
    return "\n".join(lines)
