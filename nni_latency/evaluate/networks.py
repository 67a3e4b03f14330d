"""Whole networks measured end to end and scored against a device model (``nni-latency evaluate --networks``):
the model-level test set, to check a predictor on architectures it never saw.

Each network is timed in ``rounds`` interleaved passes (``measure.rounds.measure_rounds``: one JSONL row per
network and pass, appended as it is taken, resumed after an interruption; a network's latency combines its
passes as the profile's blocks do, ``rounds.combine_rounds``), built afresh for every pass, predicted with
``LatencyModel.predict_module``, and scored with MdAPE, the shares within ±5% and ±10%, the median signed error
(bias), Kendall tau and the worst networks, overall and per kind. Before measuring, the device model's drift probe is timed again (``drift``).
"""

from __future__ import annotations

import functools
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
from ..count.features import UncoveredOperatorWarning
from ..errors import InvalidInput, NniLatencyError, first_line
from ..files.fileio import atomic_write_json, atomic_write_text, ensure_writable_dir, json_safe
from ..fit.metrics import error_summary, worst_points
from ..measure.allocator import AllocatorWarning, warn_if_unset
from ..measure.drift import DriftCheck, check_drift
from ..measure.isolated import measure_fresh
from ..measure.latency import measure_latency
from ..measure.rounds import measure_rounds
from ..model.coverage import check_batch, check_threads
from ..model.model import LatencyModel, OutOfRangeWarning
from ..rows.store import RowStore
from ..runtimes.protocol import RESUME_FIELDS, MeasurementProtocol, protocol_of
from .selection import NETWORK_KINDS, NetworkSpec, SpaceCache, select_networks

_logger = logging.getLogger(__name__)

__all__ = ["evaluate_networks", "NetworkEvaluation", "measure_networks", "predict_networks",
           "score_networks", "format_networks", "DEFAULT_ROUNDS", "WORST"]

DEFAULT_ROUNDS = 3  # a network takes long enough that three passes keep a run short and a burst out of it
WORST = 5

Measure = Callable[[Any, Sequence[int]], Any]  # (module, input_shape) -> LatencyMeasurement


def _run(spec: NetworkSpec, size: int, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except NniLatencyError:
        raise
    except RuntimeError as error:  # a network that cannot run at this size: say which and how to avoid it
        raise InvalidInput(f"network {spec.name!r} cannot run at {size} px ({first_line(error)}); choose another "
                         "--image-size or leave it out") from None


def measure_networks(specs: Sequence[NetworkSpec], protocol: MeasurementProtocol, dataset: Path, batch: int,
                     image_size: int | None = None, measure: Measure | None = None, progress: bool = True,
                     spaces: SpaceCache | None = None, in_process: bool = False) -> dict[str, dict]:
    """Time every network whole in ``protocol.rounds`` interleaved passes (resuming what ``dataset`` holds);
    network name -> its combined row (``latency_ms`` combines the passes as the profile's blocks do).

    Each network is built and timed in a fresh process of its own (``measure.isolated``), as a user's script
    times it, unless ``in_process`` (or a ``measure`` of the caller's, which tests pass) says otherwise."""
    by_key = {spec.key(batch, image_size): spec for spec in specs}

    def measure_one(key: str) -> dict[str, Any]:
        spec = by_key[key]
        size, shape = spec.size(image_size), spec.input_shape(batch, image_size)
        if measure is None and not in_process:
            builder = functools.partial(spec.build, image_size)
            measurement = _run(spec, size, lambda: measure_fresh(builder, shape, protocol))
        else:
            network = _run(spec, size, lambda: spec.build(image_size, spaces))
            timer = measure or (lambda module, input_shape: measure_latency(module, input_shape, protocol))
            measurement = _run(spec, size, lambda: timer(network, shape))
        return {"name": spec.name, "kind": spec.kind, "batch": batch, "image_size": size,
                "process": "in process" if measure is not None or in_process else "fresh", **measurement.to_dict()}

    rows = measure_rounds(by_key, measure_one, RowStore(dataset), protocol, progress=progress,
                          description="measuring networks", unit="network")
    return {by_key[key].name: row for key, row in rows.items()}


def predict_networks(model: LatencyModel, specs: Sequence[NetworkSpec], batch: int, image_size: int | None = None,
                     spaces: SpaceCache | None = None) -> list[float]:
    """``model.predict_module`` of every network. Operators the features do not cover are summarised in one
    warning; the feature-range warning is left out, since a whole network always exceeds the block range."""
    predicted, uncovered = [], {}
    for spec in specs:
        size = spec.size(image_size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UncoveredOperatorWarning)
            warnings.simplefilter("ignore", OutOfRangeWarning)
            network = _run(spec, size, lambda: spec.build(image_size, spaces))
            predicted.append(_run(spec, size, lambda: model.predict_module(network, spec.input_shape(batch,
                                                                                                 image_size))))
        for warning in caught:
            if issubclass(warning.category, UncoveredOperatorWarning):
                uncovered.setdefault(spec.name, str(warning.message))
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if uncovered:
        first = next(iter(uncovered.items()))
        warnings.warn(f"{len(uncovered)} network(s) use operators the features do not cover, counted as "
                      f"memory-bound ops ({', '.join(uncovered)}); e.g. {first[0]}: {first[1]}",
                      UncoveredOperatorWarning, stacklevel=2)
    return predicted


def score_networks(rows: Sequence[dict], worst: int = WORST) -> dict[str, Any]:
    """``error_summary`` of the rows (``name``, ``kind``, ``measured_ms``, ``predicted_ms``), the ``worst``
    networks by |error| with their signed errors, and the summary per kind."""
    measured = np.array([r["measured_ms"] for r in rows], float)
    predicted = np.array([r["predicted_ms"] for r in rows], float)
    kinds = {r["name"]: r["kind"] for r in rows}
    scores: dict[str, Any] = error_summary(measured, predicted)
    scores["worst"] = [{**point, "kind": kinds[point["name"]]}
                       for point in worst_points([r["name"] for r in rows], measured, predicted, worst)]
    labels = np.array([r["kind"] for r in rows])
    scores["kinds"] = {kind: error_summary(measured[labels == kind], predicted[labels == kind])
                       for kind in NETWORK_KINDS if np.any(labels == kind)}
    return scores


@dataclass
class NetworkEvaluation:
    metrics: dict[str, Any]
    rows: list[dict]
    paths: list[Path]
    drift: DriftCheck | None


def _pending(dataset: Path, keys: Sequence[str], rounds: int) -> bool:
    done = {(key, row.get("round", 0)) for key, rows in RowStore(dataset).by_key().items() for row in rows}
    return any((key, r) not in done for key in keys for r in range(rounds))


def evaluate_networks(model: LatencyModel | str | Path, selection: str, output_dir: str | Path, *,
                      batch: int | None = None, image_size: int | None = None, threads: int | None = None,
                      device: str | None = None, rounds: int = DEFAULT_ROUNDS, seed: int = 0,
                      measure: Measure | None = None, progress: bool = True, in_process: bool = False,
                      host_load: Callable[[], dict] | None = None) -> NetworkEvaluation:
    """Measure, predict and score the networks of ``selection``; write ``networks.jsonl`` (every pass),
    ``metrics.json``, ``predictions.jsonl`` and ``networks_pred_vs_measured.png/.svg`` into ``output_dir``.

    ``batch`` defaults to the model's, each network runs at its own image size unless ``image_size`` is
    given; each network is timed in a fresh process of its own unless ``in_process``, and ``measure(module, shape)``
    (timing in this process, under the evaluation's protocol) is what tests replace. The allocator policy is the caller's to set (``timing.apply_allocator_policy``);
    ``host_load()`` (e.g. the command's ``HostLoad.record``) goes into metrics.json as ``host_load``.
    """
    started = time.perf_counter()
    model_path = str(model) if not isinstance(model, LatencyModel) else None
    model = model if isinstance(model, LatencyModel) else LatencyModel.load(model)
    protocol = model.measuring_protocol(threads=threads, device=device, rounds=rounds)
    batch = protocol_of(model).batch if batch is None else batch
    if batch < 1:
        raise InvalidInput(f"--batch must be at least 1, got {batch}")
    if image_size is not None and image_size < 1:
        raise InvalidInput(f"--image-size must be at least 1, got {image_size}")
    spaces: dict = {}  # hub spaces, built once for this evaluation
    specs = select_networks(selection, seed, spaces)
    out = ensure_writable_dir(output_dir)
    dataset = out / "networks.jsonl"
    check_batch(model, batch, stacklevel=3)
    check_threads(model, threads, stacklevel=3)
    pending = _pending(dataset, [spec.key(batch, image_size) for spec in specs], protocol.rounds)
    if pending and measure is None:
        warn_if_unset(protocol, stacklevel=2)  # once for the evaluation, not once per timed network
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AllocatorWarning)
        drift = check_drift(model, protocol, measure=measure, stacklevel=3) if pending else None
        measured = measure_networks(specs, protocol, dataset, batch, image_size, measure, progress, spaces,
                                    in_process)
    predicted = predict_networks(model, specs, batch, image_size, spaces)
    rows = []
    for spec, prediction in zip(specs, predicted):
        row = measured[spec.name]
        rows.append({"name": spec.name, "kind": spec.kind, "batch": batch, "image_size": spec.size(image_size),
                     "measured_ms": row["latency_ms"], "predicted_ms": float(prediction),
                     "error": float(prediction) / row["latency_ms"] - 1, "rounds": row.get("rounds", 1),
                     "round_ms": row.get("round_ms", [row["latency_ms"]]), "noisy": bool(row.get("noisy"))})
    metrics = score_networks(rows)
    metrics.update({
        "noisy_networks": sum(r["noisy"] for r in rows),
        "model": {"path": model_path or model.source or None, "kind": model.kind, "device": model.device.get("name", "unknown"),
                  "batch": protocol_of(model).batch, "threads": protocol_of(model).threads},
        "networks": {"selection": selection, "seed": seed, "batch": batch, "image_size": image_size,
                     "rounds": protocol.rounds, "source": str(dataset),
                     **{k: getattr(protocol, k) for k in RESUME_FIELDS}},
        "drift": drift.to_dict() if drift is not None else None,
        "host_load": host_load() if host_load is not None else None,
        "seconds": round(time.perf_counter() - started, 2),
    })
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "predictions.jsonl", "".join(json.dumps(json_safe(r)) + "\n" for r in rows))
    title = (f"{model.kind} on {model.device.get('name', '?')}, batch {batch}: MdAPE {_pct(metrics['mdape'])}, "
             f"within ±10% {_pct(metrics['within_10pct'], 0)}, Kendall τ {_num(metrics['kendall_tau'])}")
    paths = [dataset, out / "metrics.json", out / "predictions.jsonl",
             *plots.plot_networks(rows, out / "networks_pred_vs_measured", title, WORST)]
    return NetworkEvaluation(metrics, rows, paths, drift)


def _pct(value: float | None, digits: int = 1, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:{'+' if sign else ''}.{digits}f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def format_networks(evaluation: NetworkEvaluation) -> str:
    """A short text table, one network a line, then the summary overall, per kind and the worst networks."""
    rows, metrics = evaluation.rows, evaluation.metrics
    width = max([len("network"), *(len(r["name"]) for r in rows)])
    lines = [f"{'network':<{width}}  {'kind':<11}  {'measured ms':>11}  {'predicted ms':>12}  {'error':>7}"]
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['kind']:<11}  {r['measured_ms']:>11.3f}  {r['predicted_ms']:>12.3f}  "
                     f"{_pct(r['error'], sign=True):>7}{'  (noisy)' if r['noisy'] else ''}")
    setup = metrics["networks"]
    size = f"{setup['image_size']} px" if setup["image_size"] else "each at its own image size"
    lines.append(f"{metrics['count']} networks at batch {setup['batch']}, {size}, {setup['rounds']} round(s) "
                 f"each; {metrics['noisy_networks']} flagged noisy")
    lines.append(f"MdAPE {_pct(metrics['mdape'])}, within ±5% {_pct(metrics['within_5pct'], 0)}, within ±10% "
                 f"{_pct(metrics['within_10pct'], 0)}, bias {_pct(metrics['bias'], sign=True)}, Kendall tau "
                 f"{_num(metrics['kendall_tau'])}")
    if len(metrics["kinds"]) > 1:
        lines.append("per kind: " + "; ".join(f"{kind} ({s['count']}) MdAPE {_pct(s['mdape'])}, within ±10% "
                                              f"{_pct(s['within_10pct'], 0)}" for kind, s in metrics["kinds"].items()))
    lines.append("worst: " + ", ".join(f"{w['name']} {_pct(w['error'], sign=True)}" for w in metrics["worst"]))
    if evaluation.drift is not None:
        lines.append(f"drift: {evaluation.drift.message}")
    return "\n".join(lines)
