"""From measured rows to a fitted device model: fitting a kind, cross-validating every kind (once, returned with
the fit), and the reference model the fit plot compares with. Rows come from the row store (``rows``); the model
goes to JSON. A kind that costs operators (``op_linear``) fits each operator class of the rows' runtime on the
in-place times the rows carry; every other kind fits block totals.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInput
from ..model.model import LatencyModel, features_matrix
from ..model.regressors import MODEL_KINDS, make_regressor
from ..rows.ops import op_rows
from ..runtimes import get_table
from ..runtimes.protocol import protocol_of
from .metrics import regression_metrics

_logger = logging.getLogger(__name__)

__all__ = ["fit_records", "fit_kind", "fit_with_cv", "cross_validated_predictions", "cross_validated_metrics",
           "reference_model", "MIN_POINTS", "CV_FOLDS"]

CV_FOLDS = 5
# Enough that every kind still fits on the 4/5 of the rows a cross-validation fold trains on.
MIN_POINTS = max(math.ceil(cls.min_points * CV_FOLDS / (CV_FOLDS - 1)) for cls in MODEL_KINDS.values())


def _latencies(records: Sequence[dict]) -> np.ndarray:
    return np.array([r["latency_ms"] for r in records], float)


def _runtime(records: Sequence[dict]) -> str:
    """The runtime that counted and timed ``records`` (one protocol: ``rows.check``)."""
    return protocol_of(records[0]).runtime if records else "torch"


def _fitted(records: Sequence[dict], kind: str):
    """A ``kind`` regressor fitted on ``records``: on their operators' in-place times where the kind costs
    operators and the rows carry them, else on block totals."""
    regressor = make_regressor(kind, _runtime(records))
    X = features_matrix([r["features"] for r in records], regressor.feature_names)
    ops = op_rows(records, regressor.classes) if hasattr(regressor, "fit_ops") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return regressor.fit_ops(ops, X, _latencies(records)) if ops else regressor.fit(X, _latencies(records))


def cross_validated_predictions(records: Sequence[dict], kind: str, folds: int = CV_FOLDS, seed: int = 0) -> np.ndarray:
    """Each row's prediction by a ``kind`` model fitted on the other folds (never on the row itself, nor on its
    operators' times).

    The folds are ``KFold(shuffle=True, random_state=seed)``'s; predictions are clamped at 0 ms, as
    ``LatencyModel.predict`` clamps them.
    """
    from sklearn.model_selection import KFold

    if kind not in MODEL_KINDS:
        raise InvalidInput(f"unknown model kind {kind!r}: use one of {', '.join(MODEL_KINDS)}")
    names = make_regressor(kind, _runtime(records)).feature_names
    X = features_matrix([r["features"] for r in records], names)
    predictions = np.zeros(len(records))
    splitter = KFold(n_splits=min(folds, len(records)), shuffle=True, random_state=seed)
    for train, test in splitter.split(X):
        predictions[test] = _fitted([records[i] for i in train], kind).predict(X[test])
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


def fit_kind(records: Sequence[dict], kind: str, device: dict[str, Any] | None = None,
             notes: str = "") -> LatencyModel:
    """A ``kind`` model fitted on measured rows (on their operators' times where the kind costs operators),
    with the feature ranges of the rows and no cross-validation."""
    names = get_table(_runtime(records)).all_feature_names
    X = features_matrix([r["features"] for r in records], names)
    ranges = {name: (float(X[:, i].min()), float(X[:, i].max())) for i, name in enumerate(names)}
    return LatencyModel(_fitted(records, kind), device=device, feature_ranges=ranges, notes=notes)


def fit_with_cv(records: Sequence[dict], kind: str, device: dict[str, Any] | None = None,
                notes: str = "") -> tuple[LatencyModel, dict[str, np.ndarray]]:
    """Fit ``kind`` on measured rows; return it with every kind's cross-validated predictions of the rows (what
    its ``metrics["cv"]`` summarise, and what the fit plot draws), computed once."""
    if kind not in MODEL_KINDS:
        raise InvalidInput(f"unknown model kind {kind!r}: use one of {', '.join(MODEL_KINDS)}")
    if len(records) < MIN_POINTS:
        raise InvalidInput(f"only {len(records)} measured point(s); fitting needs at least {MIN_POINTS} "
                         "(raise `count` in the config or profile again)")
    # The batch sizes the model covers, so a prediction at another one warns (``coverage.check_batch``).
    batches = sorted({int(b) for b in map(_row_batch, records) if b is not None})
    if batches:
        device = {**(device or {}), "batches": batches}
    model = fit_kind(records, kind, device, notes)
    held_out = {k: cross_validated_predictions(records, k) for k in MODEL_KINDS}
    y = _latencies(records)
    model.metrics = {"points": len(records), "cv_folds": CV_FOLDS,
                     "cv": {k: regression_metrics(y, predictions) for k, predictions in held_out.items()}}
    return model, held_out


def fit_records(records: Sequence[dict], kind: str, device: dict[str, Any] | None = None,
                notes: str = "") -> LatencyModel:
    """Fit ``kind`` on measured rows and attach cross-validated metrics of every kind for comparison."""
    return fit_with_cv(records, kind, device, notes)[0]


def reference_model(records: Sequence[dict], model: LatencyModel) -> LatencyModel:
    """The published two-regime model on the same rows (``model`` itself when it is one), for the fit plot."""
    if model.kind == "two_regime":
        return model
    return LatencyModel.fit([r["features"] for r in records], _latencies(records), kind="two_regime",
                            device={"runtime": _runtime(records)} if _runtime(records) != "torch" else None)
