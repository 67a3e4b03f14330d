"""Error metrics for latency predictions; relative errors, since latencies span four decades.

Errors are fractions (``mdape`` 0.05 means a median error of 5%). Kendall tau is the metric that
matters to a search: it says whether the predictor ranks candidates as the device does.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import r2_score

from ..deprecation import deprecated_names
from ..errors import InvalidInput

__all__ = ["absolute_percentage_errors", "signed_errors", "error_summary", "worst_points", "regression_metrics",
           "within_group_kendall", "per_group_errors"]


def _checked(measured, predicted) -> tuple[np.ndarray, np.ndarray]:
    measured, predicted = np.asarray(measured, float).ravel(), np.asarray(predicted, float).ravel()
    if measured.shape != predicted.shape:
        raise InvalidInput(f"{len(measured)} measured latencies but {len(predicted)} predictions; pass one each")
    if np.any(~np.isfinite(measured)) or np.any(measured <= 0):
        raise InvalidInput("measured latencies must be finite and positive; drop failed or zero measurements first")
    if np.any(~np.isfinite(predicted)):
        raise InvalidInput("predictions contain NaN or inf; check the model and the features it was given")
    return measured, predicted


def absolute_percentage_errors(measured, predicted) -> np.ndarray:
    """|predicted - measured| / measured, per point."""
    return np.abs(signed_errors(measured, predicted))


def signed_errors(measured, predicted) -> np.ndarray:
    """(predicted - measured) / measured, per point: positive where the prediction is too high."""
    measured, predicted = _checked(measured, predicted)
    return (predicted - measured) / measured


def _median_or_nan(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def _kendall(measured: np.ndarray, predicted: np.ndarray) -> float:
    # Constant input has no ranking; scipy warns and returns NaN, which is the honest answer.
    if len(measured) < 2 or np.ptp(measured) == 0 or np.ptp(predicted) == 0:
        return float("nan")
    return float(stats.kendalltau(measured, predicted).statistic)


def within_group_kendall(measured, predicted, groups: Sequence[Hashable], min_size: int = 3) -> dict[str, float]:
    """Kendall tau inside each group (e.g. the candidates of one FBNet layer), then its mean and median.

    A search only compares candidates of the same layer, so this is the ranking that steers it.
    Groups smaller than ``min_size`` (or with a ranking undefined by ties) are left out.
    """
    measured, predicted = _checked(measured, predicted)
    labels = np.asarray([str(g) for g in groups])
    if len(labels) != len(measured):
        raise InvalidInput(f"{len(labels)} group labels for {len(measured)} points; pass one label per point")
    taus = []
    for label in np.unique(labels):
        members = labels == label
        if members.sum() >= min_size:
            tau = _kendall(measured[members], predicted[members])
            if np.isfinite(tau):
                taus.append(tau)
    if not taus:
        return {"groups": 0, "mean": float("nan"), "median": float("nan")}
    return {"groups": len(taus), "mean": float(np.mean(taus)), "median": float(np.median(taus))}


def per_group_errors(measured, predicted, groups: Sequence[Hashable]) -> dict[str, dict[str, float]]:
    """Count, MdAPE and share within 10% per group label (e.g. per block family), sorted by label."""
    errors = absolute_percentage_errors(measured, predicted)
    labels = np.asarray([str(g) for g in groups])
    if len(labels) != len(errors):
        raise InvalidInput(f"{len(labels)} group labels for {len(errors)} points; pass one label per point")
    return {str(label): {"count": int((labels == label).sum()),
                         "mdape": _median_or_nan(errors[labels == label]),
                         "within_10pct": float(np.mean(errors[labels == label] <= 0.10))}
            for label in np.unique(labels)}


def error_summary(measured, predicted) -> dict[str, float]:
    """Count, MdAPE, shares within 5% and 10%, ``bias`` (the median signed error: positive when the predictor
    runs high) and Kendall tau: what a set of whole networks is scored with."""
    measured, predicted = _checked(measured, predicted)
    signed = (predicted - measured) / measured
    errors = np.abs(signed)
    share = (lambda limit: float(np.mean(errors <= limit))) if len(errors) else (lambda limit: float("nan"))
    return {"count": int(len(measured)), "mdape": _median_or_nan(errors), "within_5pct": share(0.05),
            "within_10pct": share(0.10), "bias": _median_or_nan(signed), "kendall_tau": _kendall(measured, predicted)}


def worst_points(labels: Sequence[Hashable], measured, predicted, count: int = 5) -> list[dict[str, object]]:
    """The ``count`` points with the largest |error|, worst first: label, measured, predicted, signed error."""
    measured, predicted = _checked(measured, predicted)
    errors = (predicted - measured) / measured
    if len(labels) != len(errors):
        raise InvalidInput(f"{len(labels)} labels for {len(errors)} points; pass one label per point")
    order = sorted(range(len(errors)), key=lambda i: (-abs(errors[i]), i))[:count]  # ties: first come first
    return [{"name": labels[i], "measured_ms": float(measured[i]), "predicted_ms": float(predicted[i]),
             "error": float(errors[i])} for i in order]


def regression_metrics(measured, predicted, threshold_ms: float = 2.0) -> dict[str, float]:
    """``error_summary``, plus MdAPE below/above ``threshold_ms``, Pearson r and R^2.

    The split at 2 ms follows the published A100 results, where small blocks are the hard regime.
    """
    summary = error_summary(measured, predicted)
    measured, predicted = _checked(measured, predicted)
    errors = absolute_percentage_errors(measured, predicted)
    low, high = measured < threshold_ms, measured >= threshold_ms
    varied = len(measured) > 2 and np.ptp(measured) > 0 and np.ptp(predicted) > 0
    return {
        **summary,
        "count_low": int(low.sum()),
        "count_high": int(high.sum()),
        "mdape_low": _median_or_nan(errors[low]),
        "mdape_high": _median_or_nan(errors[high]),
        "threshold_ms": float(threshold_ms),
        "pearson_r": float(stats.pearsonr(measured, predicted).statistic) if varied else float("nan"),
        "r2": float(r2_score(measured, predicted)) if len(measured) > 1 else float("nan"),
    }


__getattr__ = deprecated_names(__name__, {"json_safe": "nni_latency.files.fileio:json_safe"})
