"""Scoring a device model on its held-out test set (``testset``: generated and measured there): predictions
against measurements, overall, per family and within FBNet layers, written as metrics.json, predictions.jsonl
and a plot.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import plots
from ..errors import InvalidInput
from ..files.fileio import atomic_write_json, atomic_write_text, ensure_writable_dir, json_safe
from ..fit.metrics import per_group_errors, regression_metrics, within_group_kendall
from ..measure.drift import check_drift
from ..model.coverage import check_threads
from ..model.model import LatencyModel
from ..rows.store import load_records
from ..runtimes.protocol import RESUME_FIELDS, protocol_of
from .testset import TestSetConfig, generate_testset, held_out_rows, label_records, measure_testset, training_keys

_logger = logging.getLogger(__name__)

__all__ = ["score_predictions", "evaluate_model", "EvaluationResult", "format_metrics"]


def score_predictions(records: Sequence[dict], predicted: Sequence[float], threshold_ms: float = 2.0) -> dict[str, Any]:
    """Every test-set metric of one predictor: overall, per family, and the within-layer ranking."""
    measured = np.array([r["latency_ms"] for r in records], float)
    predicted = np.asarray(predicted, float)
    scores: dict[str, Any] = regression_metrics(measured, predicted, threshold_ms)
    in_layers = [i for i, r in enumerate(records) if r.get("layer")]
    scores["within_layer_kendall"] = within_group_kendall(
        measured[in_layers], predicted[in_layers], [records[i]["layer"] for i in in_layers]) if in_layers else \
        {"groups": 0, "mean": float("nan"), "median": float("nan")}
    scores["families"] = per_group_errors(measured, predicted, [r.get("family", "unknown") for r in records])
    scores["noisy_points"] = int(sum(bool(r.get("noisy")) for r in records))
    return scores


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    records: list[dict]
    predicted: np.ndarray
    paths: list[Path]


def evaluate_model(model_path: str | Path | LatencyModel, config: TestSetConfig, output_dir: str | Path,
                   threads: int | None = None, dataset: str | Path | None = None, progress: bool = True,
                   config_source: str = "", host_load: Callable[[], dict] | None = None) -> EvaluationResult:
    """Generate (or load), measure and predict the test set; write metrics.json, predictions.jsonl and the plot
    (``host_load()``, e.g. the command's ``HostLoad.record``, goes into metrics.json as ``host_load``).
    ``model_path`` is a device model file or a loaded model (the command loads it once)."""
    started = time.perf_counter()
    model = model_path if isinstance(model_path, LatencyModel) else LatencyModel.load(model_path)
    out = ensure_writable_dir(output_dir)
    if threads is not None and threads < 1:
        raise InvalidInput(f"--threads must be at least 1, got {threads}")
    check_threads(model, threads, stacklevel=3)
    left_out = 0
    if dataset is not None:  # checked before the test set is drawn: never a model's own rows as held-out ones
        rows, left_out = held_out_rows(load_records(dataset), model, dataset)
    blocks = generate_testset(config, protocol_of(model).batch, sorted(training_keys(model)))
    drift = None
    if dataset is not None:
        records = label_records(rows, blocks)
        if not records:
            raise InvalidInput(f"dataset {str(dataset)!r} has no measured rows")
        protocol = model.measuring_protocol(threads=threads)
        differing = sorted({k for r in records for k in protocol_of(r).differences(protocol)})
        if differing:
            warnings.warn(f"{dataset} was measured with other {', '.join(differing)} than the model "
                          f"({', '.join(f'{k}={getattr(protocol, k)!r}' for k in differing)}); errors include "
                          "that difference", stacklevel=2)
    else:
        drift = check_drift(model, model.measuring_protocol(threads=threads, timing=config.timing))
        records = measure_testset(blocks, model, out, threads, config.timing, progress)
    predicted = model.predict([r["features"] for r in records])
    metrics = score_predictions(records, predicted, config.threshold_ms)
    protocol = model.measuring_protocol(threads=threads, timing=config.timing)
    metrics.update({
        "model": {"path": model.source or str(model_path), "kind": model.kind, "device": model.device.get("name", "unknown"),
                  "batch": protocol_of(model).batch},
        "testset": {"config": config_source, "seed": config.seed, "blocks": len(records),
                    "source": str(dataset) if dataset is not None else str(out / "testset.jsonl"),
                    "left_out_training_rows": left_out,
                    **{k: getattr(protocol, k) for k in RESUME_FIELDS}},
        "drift": drift.to_dict() if drift is not None else None,
        "host_load": host_load() if host_load is not None else None,
        "seconds": round(time.perf_counter() - started, 2),
    })
    atomic_write_json(out / "metrics.json", metrics)
    lines = [json.dumps(json_safe({"key": r["key"], "family": r["family"], "layer": r["layer"],
                                   "measured_ms": r["latency_ms"], "predicted_ms": float(p)}))
             for r, p in zip(records, predicted)]
    atomic_write_text(out / "predictions.jsonl", "\n".join(lines) + "\n")
    title = (f"{model.kind} on {model.device.get('name', '?')}: MdAPE {100 * metrics['mdape']:.1f}%, "
             f"within ±10% {100 * metrics['within_10pct']:.0f}%, Kendall τ {metrics['kendall_tau']:.3f}")
    paths = [out / "metrics.json", out / "predictions.jsonl",
             *plots.plot_predictions(records, predicted, out / "pred_vs_measured", title)]
    return EvaluationResult(metrics, records, predicted, paths)


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short text table of the metrics, for the terminal."""
    def pct(value):
        return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"

    def num(value):
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"

    layer = metrics["within_layer_kendall"]
    lines = [f"{metrics['count']} blocks ({metrics['count_low']} below {metrics['threshold_ms']:g} ms, "
             f"{metrics['count_high']} above; {metrics['noisy_points']} flagged noisy)",
             f"MdAPE {pct(metrics['mdape'])} (below {metrics['threshold_ms']:g} ms {pct(metrics['mdape_low'])}, "
             f"above {pct(metrics['mdape_high'])}); within ±10%: {pct(metrics['within_10pct'])}",
             f"Pearson r {num(metrics['pearson_r'])}, R^2 {num(metrics['r2'])}, "
             f"Kendall tau {num(metrics['kendall_tau'])}, within-layer tau mean {num(layer['mean'])} / "
             f"median {num(layer['median'])} over {layer['groups']} layers",
             "per family:"]
    for family, scores in metrics["families"].items():
        lines.append(f"  {family:<22} n={scores['count']:<4} MdAPE {pct(scores['mdape']):>6}  "
                     f"within ±10% {pct(scores['within_10pct']):>6}")
    return "\n".join(lines)

