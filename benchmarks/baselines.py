"""The predictors compared in the benchmark, all fitted on the same profiling rows, with their fit time.

The random forest is nn-Meter's kernel-predictor approach on our features; it is evaluated here only,
not saved as a model kind (a forest cannot extrapolate past its largest training block, and is opaque).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from nni_latency.model.model import LatencyModel, features_matrix

# Row names used in every table of docs/BENCHMARKS.md, in display order.
PUBLISHED = "published (seed) model"
DEFAULT = "default model"
PREVIOUS = "block-total fit (relative_linear)"
FLOPS = "FLOPs"
FOREST = "random forest"
LUT = "LUT"


@dataclass
class Predictor:
    """A named latency predictor over feature rows, and the seconds its fit took."""

    name: str
    kind: str
    predict: Callable[[Sequence], np.ndarray]
    fit_seconds: float


def _timed(fit: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = fit()
    return fitted, time.perf_counter() - started


def _quiet(model: LatencyModel) -> Callable[[Sequence], np.ndarray]:
    def predict(rows):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # whole networks lie outside the block range by design
            return model.predict(rows)
    return predict


def fit_predictors(records: Sequence[dict], default_model: LatencyModel, seed: int = 0) -> dict[str, Predictor]:
    """Every block-level predictor fitted on the profiling ``records`` (name -> Predictor)."""
    rows = [r["features"] for r in records]
    y = np.array([r["latency_ms"] for r in records], float)
    predictors = {}
    from nni_latency.fit.fitting import fit_kind

    kinds = [(PUBLISHED, "two_regime"), (DEFAULT, default_model.kind), (FLOPS, "flops")]
    if default_model.kind != "relative_linear":  # the previous default, fitted to block totals: before and after
        kinds.insert(2, (PREVIOUS, "relative_linear"))
    for name, kind in kinds:
        model, seconds = _timed(lambda kind=kind: fit_kind(records, kind))
        if name == DEFAULT:
            model = default_model  # the saved model; the refit above only times the fit
        predictors[name] = Predictor(name, kind, _quiet(model), seconds)

    from sklearn.ensemble import RandomForestRegressor

    names = default_model.feature_names  # the runtime's: block-level and operator-class features
    forest, seconds = _timed(lambda: RandomForestRegressor(n_estimators=300, random_state=seed)
                             .fit(features_matrix(rows, names), y))
    predictors[FOREST] = Predictor(FOREST, "random_forest",
                                   lambda rows: forest.predict(features_matrix(rows, names)), seconds)
    return predictors
