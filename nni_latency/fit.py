"""From measured rows to a fitted device model: fitting a kind, cross-validating every kind, and the
reference model the fit plot compares with. Rows come from ``microbench`` (JSONL); the model goes to JSON.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Sequence

import numpy as np

from .metrics import regression_metrics
from .model import MODEL_KINDS, LatencyModel, features_matrix

_logger = logging.getLogger(__name__)

__all__ = ["fit_records", "cross_validated_predictions", "cross_validated_metrics", "reference_model", "MIN_POINTS",
           "CV_FOLDS"]

CV_FOLDS = 5
# Enough that every kind still fits on the 4/5 of the rows a cross-validation fold trains on.
MIN_POINTS = max(math.ceil(cls.min_points * CV_FOLDS / (CV_FOLDS - 1)) for cls in MODEL_KINDS.values())


def _latencies(records: Sequence[dict]) -> np.ndarray:
    return np.array([r["latency_ms"] for r in records], float)


def cross_validated_predictions(records: Sequence[dict], kind: str, folds: int = CV_FOLDS, seed: int = 0) -> np.ndarray:
    """Each row's prediction by a ``kind`` model fitted on the other folds (never on the row itself).

    The folds are ``KFold(shuffle=True, random_state=seed)``'s; predictions are clamped at 0 ms, as
    ``LatencyModel.predict`` clamps them.
    """
    from sklearn.model_selection import KFold, cross_val_predict

    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}: use one of {', '.join(MODEL_KINDS)}")
    regressor = MODEL_KINDS[kind]()
    X = features_matrix([r["features"] for r in records], regressor.feature_names)
    y = _latencies(records)
    splitter = KFold(n_splits=min(folds, len(y)), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictions = cross_val_predict(regressor, X, y, cv=splitter)
    return np.maximum(predictions, 0.0)


def cross_validated_metrics(records: Sequence[dict], kind: str, folds: int = CV_FOLDS, seed: int = 0) -> dict[str, float]:
    """Metrics of ``kind`` on held-out folds of the profiling rows."""
    return regression_metrics(_latencies(records), cross_validated_predictions(records, kind, folds, seed))


def _row_batch(record: dict) -> int | None:
    """The batch a row was measured at: its block's (a chain's first block's), else its protocol's."""
    spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
    first = (spec.get("blocks") or [spec])[0]
    batch = first.get("batch") if isinstance(first, dict) else None
    return batch if batch is not None else record.get("batch")


def fit_records(records: Sequence[dict], kind: str, device: dict[str, Any] | None = None,
                notes: str = "") -> LatencyModel:
    """Fit ``kind`` on measured rows and attach cross-validated metrics of every kind for comparison."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}: use one of {', '.join(MODEL_KINDS)}")
    if len(records) < MIN_POINTS:
        raise ValueError(f"only {len(records)} measured point(s); fitting needs at least {MIN_POINTS} "
                         "(raise `count` in the config or profile again)")
    # The batch sizes the model covers, so a prediction at another one warns (``coverage.check_batch``).
    batches = sorted({int(b) for b in map(_row_batch, records) if b is not None})
    if batches:
        device = {**(device or {}), "batches": batches}
    model = LatencyModel.fit([r["features"] for r in records], _latencies(records), kind=kind, device=device,
                             notes=notes)
    model.metrics = {"points": len(records), "cv_folds": CV_FOLDS,
                     "cv": {k: cross_validated_metrics(records, k) for k in MODEL_KINDS}}
    return model


def reference_model(records: Sequence[dict], model: LatencyModel) -> LatencyModel:
    """The published two-regime model on the same rows (``model`` itself when it is one), for the fit plot."""
    if model.kind == "two_regime":
        return model
    return LatencyModel.fit([r["features"] for r in records], _latencies(records), kind="two_regime")
