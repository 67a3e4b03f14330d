"""The fit stage: fitting measured rows, cross-validating every kind (the same folds and numbers as the loop
it replaced), and the reference model of the fit plot."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import synthetic_latency
from sklearn.model_selection import KFold

from nni_latency.fit.fitting import (MIN_POINTS, cross_validated_metrics, cross_validated_predictions, fit_records,
                                     reference_model)
from nni_latency.model.model import LatencyModel
from nni_latency.model.regressors import MODEL_KINDS


def _records(synthetic_dataset, count=None) -> list[dict]:
    _, rows, latencies = synthetic_dataset
    pairs = list(zip(rows, latencies))[:count]
    return [{"key": f"row{i}", "features": row.as_dict(), "latency_ms": latency}
            for i, (row, latency) in enumerate(pairs)]


def test_fit_records_attaches_cross_validated_metrics_of_every_kind(synthetic_dataset):
    records = _records(synthetic_dataset)
    model = fit_records(records, "relative_linear", device={"name": "synthetic"})
    assert model.kind == "relative_linear" and model.device == {"name": "synthetic"}
    assert model.metrics["points"] == len(records)
    assert set(model.metrics["cv"]) == set(MODEL_KINDS)
    # The synthetic device is exactly a relative_linear model, so even held-out rows are exact.
    assert model.metrics["cv"]["relative_linear"]["mdape"] < 1e-6


@pytest.mark.parametrize("count", [0, 1, MIN_POINTS - 1])
def test_too_few_points_names_the_minimum(synthetic_dataset, count):
    with pytest.raises(ValueError, match=f"only {count} measured point.*at least {MIN_POINTS}"):
        fit_records(_records(synthetic_dataset, count), "relative_linear")


def test_fit_records_rejects_unknown_kind(synthetic_dataset):
    with pytest.raises(ValueError, match="unknown model kind 'mlp'"):
        fit_records(_records(synthetic_dataset), "mlp")


def test_fit_records_accepts_the_advertised_minimum(synthetic_dataset):
    model = fit_records(_records(synthetic_dataset, MIN_POINTS), "relative_linear")
    assert model.metrics["points"] == MIN_POINTS


def _noisy_records(synthetic_dataset) -> list[dict]:
    """The synthetic rows with 10% multiplicative noise from a fixed generator, so no kind fits them exactly."""
    _, rows, _ = synthetic_dataset
    noise = 1 + 0.1 * np.random.default_rng(0).standard_normal(len(rows))
    return [{"key": f"row{i}", "features": row.as_dict(), "latency_ms": float(synthetic_latency(row) * n)}
            for i, (row, n) in enumerate(zip(rows, noise))]


def _cross_validated_by_hand(records, kind, folds=5, seed=0) -> np.ndarray:
    """The loop ``cross_validated_predictions`` replaced: fit on four folds, predict the fifth."""
    y = np.array([r["latency_ms"] for r in records])
    rows = [r["features"] for r in records]
    predictions = np.empty_like(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for train, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(y):
            fold_model = LatencyModel.fit([rows[i] for i in train], y[train], kind=kind)
            predictions[test] = fold_model.predict([rows[i] for i in test])
    return predictions


# kind -> (sum of the predictions, first, last), as the loop computed them before the fit stage moved here
# (re-pinned when the default features, and so the synthetic device, and the Huber fit changed on purpose)
BEFORE = {
    "relative_linear": (131.0537917336145, 0.712976143122246, 0.547740151757518),
    "two_regime": (117.48030472559384, 1.0679047589804656, 1.2590133204231109),
    "flops": (135.0701279383045, 0.9560444295130988, 0.6711398656668004),
}


@pytest.mark.parametrize("kind", list(BEFORE))
def test_cross_validated_predictions_are_the_numbers_of_before(synthetic_dataset, kind):
    records = _noisy_records(synthetic_dataset)
    predictions = cross_validated_predictions(records, kind)
    # Equal up to the Huber iterations' stopping tolerance (1e-6): BLAS may round differently for another memory
    # layout of the same rows, and the reweighting stops once the coefficients move by less than that.
    np.testing.assert_allclose(predictions, _cross_validated_by_hand(records, kind), rtol=1e-6)
    total, first, last = BEFORE[kind]
    assert (predictions.sum(), predictions[0], predictions[-1]) == pytest.approx((total, first, last), rel=1e-6)


def test_cross_validated_metrics_score_the_held_out_predictions(synthetic_dataset):
    records = _noisy_records(synthetic_dataset)
    metrics = cross_validated_metrics(records, "relative_linear")
    errors = np.abs(cross_validated_predictions(records, "relative_linear") / [r["latency_ms"] for r in records] - 1)
    assert metrics["count"] == len(records) and metrics["mdape"] == pytest.approx(float(np.median(errors)))


def test_reference_model_is_the_two_regime_fit(synthetic_dataset):
    records = _noisy_records(synthetic_dataset)
    model = fit_records(records, "relative_linear")
    reference = reference_model(records, model)
    assert reference.kind == "two_regime" and reference_model(records, reference) is reference
