"""Error metrics for latency predictions; relative errors, since latencies span four decades."""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import r2_score

__all__ = ["absolute_percentage_errors", "regression_metrics", "within_group_kendall"]


def absolute_percentage_errors(measured, predicted) -> np.ndarray:
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    return np.abs(predicted - measured) / measured


def within_group_kendall(measured, predicted, groups: Sequence[Hashable], min_size: int = 3) -> dict[str, float]:
    """Kendall tau inside each group (e.g. the candidates of one FBNet layer), then its mean and median."""
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    labels = np.asarray([str(g) for g in groups])
    taus = []
    for label in np.unique(labels):
        members = labels == label
        if members.sum() >= min_size:
            tau = stats.kendalltau(measured[members], predicted[members]).statistic
            if np.isfinite(tau):
                taus.append(tau)
    if not taus:
        return {"groups": 0, "mean": float("nan"), "median": float("nan")}
    return {"groups": len(taus), "mean": float(np.mean(taus)), "median": float(np.median(taus))}


def regression_metrics(measured, predicted, threshold_ms: float = 2.0) -> dict[str, float]:
    """MdAPE overall and below/above ``threshold_ms``, share within 10%, Pearson r, R^2, Kendall tau."""
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    errors = absolute_percentage_errors(measured, predicted)
    low, high = measured < threshold_ms, measured >= threshold_ms

    def median_or_nan(values):
        return float(np.median(values)) if len(values) else float("nan")

    return {
        "count": int(len(measured)),
        "mdape": median_or_nan(errors),
        "mdape_low": median_or_nan(errors[low]),
        "mdape_high": median_or_nan(errors[high]),
        "threshold_ms": float(threshold_ms),
        "within_10pct": float(np.mean(errors <= 0.10)) if len(errors) else float("nan"),
        "pearson_r": float(stats.pearsonr(measured, predicted).statistic) if len(measured) > 2 else float("nan"),
        "r2": float(r2_score(measured, predicted)) if len(measured) > 1 else float("nan"),
        "kendall_tau": float(stats.kendalltau(measured, predicted).statistic) if len(measured) > 1 else float("nan"),
    }
