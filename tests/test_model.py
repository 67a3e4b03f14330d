"""LatencyModel: each kind recovers known coefficients from synthetic data; vectorised prediction,
the out-of-range warning, the role breakdown and fit-time input checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from nni_latency.count.features import BLOCK_FEATURE_NAMES
from nni_latency.model.model import LatencyModel, OutOfRangeWarning, features_matrix
from nni_latency.model.regressors import MODEL_KINDS, FlopsModel, RelativeLinearModel, TwoRegimeModel
from nni_latency.runtimes.torch.counting import extract_features
from nni_latency.runtimes.torch.operators import FEATURE_NAMES
from nni_latency.suite.blocks import BlockSpec


def _random_rows(count: int, seed: int, low: float = 1e2, high: float = 1e6) -> list[dict[str, float]]:
    """Feature rows with every feature log-uniform and independent, so every coefficient is identifiable."""
    rng = np.random.default_rng(seed)
    values = np.exp(rng.uniform(np.log(low), np.log(high), size=(count, len(BLOCK_FEATURE_NAMES))))
    # the block features the block-total kinds read; the operator-class features stay 0
    return [dict.fromkeys(FEATURE_NAMES, 0.0) | dict(zip(BLOCK_FEATURE_NAMES, map(float, row))) for row in values]


# ---- two_regime: initial = a*acts + b*inp + c*flops + d; below the breakpoint slope*initial + offset.

TWO_REGIME = {"a": 2e-6, "b": 1e-6, "c": 3e-9, "d": 0.05}


def _initial(rows, params=TWO_REGIME) -> np.ndarray:
    return np.array([params["a"] * r["acts"] + params["b"] * r["inp"] + params["c"] * r["flops"] + params["d"]
                     for r in rows])


def _two_regime_rows(count: int = 60, seed: int = 1) -> list[dict[str, float]]:
    # Block sizes spread over two decades around the breakpoint, so both regimes hold many points.
    rng = np.random.default_rng(seed)
    rows = []
    for size in np.exp(rng.uniform(np.log(0.05), np.log(5.0), size=count)):
        rows.append({name: 0.0 for name in FEATURE_NAMES} | {
            "acts": size * rng.uniform(1e5, 3e5), "inp": size * rng.uniform(1e5, 3e5),
            "flops": size * rng.uniform(1e8, 3e8)})
    return rows


@pytest.mark.parametrize("slope,offset,breakpoint", [(0.5, 0.1, 1.0), (0.2, 0.3, 2.0), (1.5, 0.05, 1.5)],
                         ids=["flatter_below", "overhead_floor", "steeper_below"])
def test_two_regime_recovers_both_regimes(slope, offset, breakpoint):
    rows = _two_regime_rows()
    initial = _initial(rows)
    low = initial < breakpoint
    assert 10 <= low.sum() <= len(rows) - 10  # the data really has two regimes
    latencies = np.where(low, slope * initial + offset, initial)

    model = LatencyModel.fit(rows, latencies, kind="two_regime")

    params = model.parameters
    for name, value in {**TWO_REGIME, "slope": slope, "offset": offset}.items():
        assert params[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert initial[low].max() < params["breakpoint"] <= initial[~low].min()
    np.testing.assert_allclose(model.predict(rows), latencies, rtol=1e-6)


def test_two_regime_on_single_regime_data_is_the_plain_linear_model():
    rows = _two_regime_rows(seed=2)
    latencies = _initial(rows)

    model = LatencyModel.fit(rows, latencies, kind="two_regime")

    params = model.parameters
    for name, value in TWO_REGIME.items():
        assert params[name] == pytest.approx(value, rel=1e-6), name
    # Either no low regime at all (breakpoint None: -inf), or a low regime that is the identity.
    below = latencies < (-np.inf if params["breakpoint"] is None else params["breakpoint"])
    assert not below.any() or (params["slope"] == pytest.approx(1.0) and params["offset"] == pytest.approx(0.0))
    np.testing.assert_allclose(model.predict(rows), latencies, rtol=1e-6)


# ---- relative_linear: non-negative weights, squared relative error.

def _true_weights(seed: int, zero_some: bool) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(seed)
    names = RelativeLinearModel.feature_names
    weights = np.exp(rng.uniform(np.log(1e-7), np.log(1e-5), size=len(names)))
    if zero_some:
        weights[::3] = 0.0
    return weights, 0.01


def _relative_linear_latencies(rows, weights, intercept) -> np.ndarray:
    return features_matrix(rows, RelativeLinearModel.feature_names) @ weights + intercept


@pytest.mark.parametrize("zero_some", [False, True], ids=["all_positive", "some_zero"])
def test_relative_linear_recovers_non_negative_weights(zero_some):
    rows = _random_rows(60, seed=3)
    weights, intercept = _true_weights(seed=4, zero_some=zero_some)
    latencies = _relative_linear_latencies(rows, weights, intercept)

    model = LatencyModel.fit(rows, latencies, kind="relative_linear")

    fitted = model.parameters["weights"]
    assert list(fitted) == list(RelativeLinearModel.feature_names)
    np.testing.assert_allclose(list(fitted.values()), weights, rtol=1e-5, atol=1e-12)
    assert model.parameters["intercept"] == pytest.approx(intercept, rel=1e-5)
    assert all(value >= 0 for value in fitted.values())


def test_relative_linear_with_multiplicative_noise_predicts_within_a_few_percent():
    rows = _random_rows(80, seed=5)
    weights, intercept = _true_weights(seed=6, zero_some=False)
    truth = _relative_linear_latencies(rows, weights, intercept)
    noisy = truth * (1.0 + 0.02 * np.random.default_rng(7).standard_normal(len(truth)))

    model = LatencyModel.fit(rows, noisy, kind="relative_linear")

    held_out = _random_rows(40, seed=8)
    errors = np.abs(model.predict(held_out) / _relative_linear_latencies(held_out, weights, intercept) - 1)
    assert np.median(errors) < 0.02
    assert errors.max() < 0.06


def test_relative_linear_weights_stay_non_negative_when_a_feature_hurts():
    # A feature that *lowers* latency would need a negative weight; the fit must clamp it at zero.
    rows = _random_rows(40, seed=9)
    names = RelativeLinearModel.feature_names
    latencies = np.array([1.0 + 1e-6 * r[names[0]] - 1e-7 * r[names[1]] + 1e-6 for r in rows])
    latencies = np.maximum(latencies, 0.05)
    model = LatencyModel.fit(rows, latencies, kind="relative_linear")
    assert min(model.parameters["weights"].values()) >= 0.0
    assert model.parameters["intercept"] >= 0.0


def test_flops_model_recovers_slope_and_intercept():
    rows = _random_rows(20, seed=10)
    latencies = np.array([4e-9 * r["flops"] + 0.03 for r in rows])
    model = LatencyModel.fit(rows, latencies, kind="flops")
    assert model.parameters == pytest.approx({"c": 4e-9, "d": 0.03}, rel=1e-6)


@pytest.mark.parametrize("kind", list(MODEL_KINDS))
def test_too_few_points_is_a_value_error(kind):
    count = MODEL_KINDS[kind].min_points - 1
    rows = _random_rows(count, seed=11)
    with pytest.raises(ValueError, match=rf"{kind} needs at least \d+ points to fit, got {count}"):
        LatencyModel.fit(rows, [1.0 + i for i in range(count)], kind=kind)


FIT_ERRORS = {
    "unknown_kind": (dict(kind="mlp"), "unknown model kind 'mlp'"),
    "length_mismatch": (dict(latencies=[1.0] * 19), "20 feature rows but 19 latencies"),
    "nan_latency": (dict(latencies=[float("nan")] + [1.0] * 19), "finite and positive"),
    "zero_latency": (dict(latencies=[0.0] + [1.0] * 19), "finite and positive"),
    "missing_feature": (dict(drop="acts"), "lacks 'acts'"),
}


@pytest.mark.parametrize("change,message", FIT_ERRORS.values(), ids=FIT_ERRORS.keys())
def test_fit_rejects_bad_input_in_one_line(change, message):
    rows = _random_rows(20, seed=12)
    if "drop" in change:
        rows = [{k: v for k, v in row.items() if k != change["drop"]} for row in rows]
    latencies = change.get("latencies", [1.0 + 0.1 * i for i in range(20)])
    with pytest.raises(ValueError, match=message) as raised:
        LatencyModel.fit(rows, latencies, kind=change.get("kind", "relative_linear"))
    assert "\n" not in str(raised.value)


def test_feature_array_must_have_every_feature_column():
    with pytest.raises(ValueError, match=r"\(n, \d+\)"):
        features_matrix(np.ones((3, len(FEATURE_NAMES) - 1)), FEATURE_NAMES)


# ---- prediction on fitted models of every kind.

@pytest.fixture(params=list(MODEL_KINDS))
def fitted(request, synthetic_dataset):
    _, rows, latencies = synthetic_dataset
    return LatencyModel.fit(rows, latencies, kind=request.param), rows


def test_predict_on_an_array_equals_predict_one_per_row(fitted):
    model, rows = fitted
    array = np.array([[row.as_dict()[name] for name in FEATURE_NAMES] for row in rows])
    batched = model.predict(array)
    assert batched.shape == (len(rows),)
    np.testing.assert_allclose(batched, [model.predict_one(row) for row in rows], rtol=1e-12)
    np.testing.assert_allclose(batched, model.predict([row.as_dict() for row in rows]), rtol=1e-12)


def test_predict_module_equals_predict_one_of_its_features(fitted):
    model, _ = fitted
    spec = BlockSpec("mbconv", 16, 24, 14, stride=2, expansion=3)
    torch.manual_seed(0)
    block = spec.build()
    assert model.predict_module(block, spec.input_shape) == model.predict_one(extract_features(block, spec.input_shape))


def test_breakdown_sums_to_the_prediction(fitted):
    model, rows = fitted
    roles = model.breakdown(rows)
    assert set(roles) == {"compute", "memory", "overhead"}
    np.testing.assert_allclose(sum(roles.values()), model.predict(rows), rtol=1e-9, atol=1e-12)


def test_breakdown_of_two_regime_model_below_and_above_the_breakpoint():
    rows = _two_regime_rows()
    initial = _initial(rows)
    model = LatencyModel.fit(rows, np.where(initial < 1.0, 0.5 * initial + 0.1, initial), kind="two_regime")
    roles = model.breakdown(rows)
    np.testing.assert_allclose(sum(roles.values()), model.predict(rows), rtol=1e-9)
    assert (initial < model.parameters["breakpoint"]).any() and (initial >= model.parameters["breakpoint"]).any()


def test_breakdown_sums_to_a_clamped_prediction():
    rows = _random_rows(20, seed=13, low=1e6, high=1e8)
    # Positive latencies with a negative intercept: an empty block's raw prediction is below zero.
    model = LatencyModel.fit(rows, [1e-8 * r["flops"] - 0.005 for r in rows], kind="flops")
    assert model.regressor.intercept_ < 0
    empty = {name: 0.0 for name in FEATURE_NAMES}  # e.g. an identity skip: no FLOPs at all
    assert model.predict_one(empty) == 0.0
    assert sum(v[0] for v in model.breakdown([empty]).values()) == pytest.approx(0.0)


def test_out_of_range_features_warn_once(synthetic_model, synthetic_dataset):
    _, rows, _ = synthetic_dataset
    huge = {name: 1000.0 * value + 1e9 for name, value in rows[0].as_dict().items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        synthetic_model.predict(rows)  # the training rows are in range
        assert not [w for w in caught if issubclass(w.category, OutOfRangeWarning)]
        synthetic_model.predict_one(huge)
        synthetic_model.predict_one(huge)
        synthetic_model.predict([huge, huge])
    warned = [w for w in caught if issubclass(w.category, OutOfRangeWarning)]
    assert len(warned) == 1
    message = str(warned[0].message)
    assert "training range" in message and "\n" not in message


def test_features_far_below_the_range_warn(synthetic_model, synthetic_dataset):
    _, rows, _ = synthetic_dataset
    tiny = {name: value * 1e-4 for name, value in rows[0].as_dict().items()}
    with pytest.warns(OutOfRangeWarning):
        synthetic_model.predict_one(tiny)


def test_synthetic_model_reproduces_the_synthetic_device(synthetic_model, synthetic_dataset):
    _, rows, latencies = synthetic_dataset
    np.testing.assert_allclose(synthetic_model.predict(rows), latencies, rtol=1e-4)
    assert synthetic_model.kind == "relative_linear"
    assert synthetic_model.device["name"] == "synthetic"


@pytest.mark.parametrize("regressor", [RelativeLinearModel(), TwoRegimeModel(n_splits=5), FlopsModel()],
                         ids=lambda r: r.kind)
def test_regressors_follow_scikit_learn_conventions(regressor):
    copy = clone(regressor)
    assert copy.get_params() == regressor.get_params()
    with pytest.raises(Exception, match="not fitted"):
        copy.predict(np.ones((1, len(type(copy).feature_names))))


# ---- the model owns its terms: affine_at, contributions, cost_terms

def _two_regime_both_sides():
    rows = _two_regime_rows()
    initial = _initial(rows)
    return LatencyModel.fit(rows, np.where(initial < 1.0, 0.5 * initial + 0.1, initial), kind="two_regime"), rows


@pytest.mark.parametrize("kind", list(MODEL_KINDS) + ["two_regime_both_sides"])
def test_affine_terms_sum_to_the_prediction_for_every_kind(kind, synthetic_dataset):
    if kind == "two_regime_both_sides":
        model, rows = _two_regime_both_sides()
    else:
        _, rows, latencies = synthetic_dataset
        model = LatencyModel.fit(rows, latencies, kind=kind)
    X = features_matrix(rows, model.regressor.feature_names)
    coefficients, intercepts = model.regressor.affine_at(X)
    assert coefficients.shape == X.shape and intercepts.shape == (len(X),)
    raw = model.regressor.predict(X)
    np.testing.assert_allclose((coefficients * X).sum(axis=1) + intercepts, raw, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sum(model.regressor.contributions(X).values()), raw, rtol=1e-9, atol=1e-12)
    for row, expected in zip(rows[:5], raw[:5]):
        assert model.cost_terms(row).predict(row.as_dict() if hasattr(row, "as_dict") else row) == \
            pytest.approx(expected, rel=1e-9)


def test_two_regime_affine_piece_changes_at_the_breakpoint():
    model, rows = _two_regime_both_sides()
    regressor = model.regressor
    X = features_matrix(rows, regressor.feature_names)
    low = regressor.initial(X) < regressor.breakpoint_
    coefficients, intercepts = regressor.affine_at(X)
    np.testing.assert_allclose(coefficients[low], regressor.slope_ * np.tile(regressor.coef_, (low.sum(), 1)))
    np.testing.assert_allclose(intercepts[~low], regressor.intercept_)


# ---- predict takes many rows; one row has its own name

def test_predict_takes_many_rows_and_predict_one_one(fitted):
    model, rows = fitted
    many = model.predict(rows)
    assert isinstance(many, np.ndarray) and many.shape == (len(rows),)
    # the vectorised and the one-row path sum in different orders: equal to rounding, not bit for bit
    assert model.predict_one(rows[0]) == pytest.approx(many[0], rel=1e-12)
    assert isinstance(model.predict_one(rows[0]), float)


@pytest.mark.parametrize("width", [4, 8, 16])
def test_predict_module_counts_features_at_the_models_vector_width(synthetic_dataset, width):
    _, rows, latencies = synthetic_dataset
    model = LatencyModel.fit(rows, latencies, kind="relative_linear", device={"vector_width": width})
    spec = BlockSpec("mbconv", 24, 40, 14, expansion=3)
    block = spec.build(seed=0)
    assert model.vector_width == width
    assert model.predict_module(block, spec.input_shape) == model.predict_one(
        extract_features(block, spec.input_shape, width))


def test_relative_linear_is_not_pulled_by_a_block_timed_during_a_burst_of_load():
    # One row measured 3x too slow (a noisy neighbour): the Huber fit still recovers the device.
    rows = _random_rows(60, seed=11)
    weights, intercept = _true_weights(seed=12, zero_some=False)
    truth = _relative_linear_latencies(rows, weights, intercept)
    spoiled = truth.copy()
    spoiled[0] *= 3.0
    robust = LatencyModel.fit(rows, spoiled, kind="relative_linear")
    held_out = _random_rows(40, seed=13)
    expected = _relative_linear_latencies(held_out, weights, intercept)
    assert np.median(np.abs(robust.predict(held_out) / expected - 1)) < 0.01


def test_a_relative_linear_model_keeps_the_features_it_was_fitted_on(synthetic_dataset):
    _, rows, latencies = synthetic_dataset
    legacy = RelativeLinearModel.LEGACY_FEATURES
    regressor = RelativeLinearModel(features=legacy).fit(features_matrix(rows, legacy), latencies)
    model = LatencyModel(regressor)
    reloaded = LatencyModel.from_dict(model.to_dict())
    assert reloaded.regressor.feature_names == legacy != RelativeLinearModel.feature_names
    np.testing.assert_allclose(reloaded.predict(rows), model.predict(rows))
    state = model.parameters
    del state["features"]  # files written before the feature set was a parameter: the legacy set
    assert RelativeLinearModel.from_state(state).feature_names == legacy


def test_unknown_features_are_a_one_line_error():
    with pytest.raises(ValueError, match="'bogus'.*not features of this nni-latency"):
        RelativeLinearModel(features=("bogus",)).feature_names
