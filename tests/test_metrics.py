"""Error metrics against values computed by hand on tiny examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nni_latency.fit.metrics import (absolute_percentage_errors, per_group_errors, regression_metrics,
                                     within_group_kendall)

# (id, measured, predicted, expected subset of regression_metrics with threshold 3 ms)
# Values chosen to be exact in binary floating point, so 10% boundaries are unambiguous.
REGRESSION_CASES = [
    ("perfect", [1, 2, 4, 8], [1, 2, 4, 8],
     {"mdape": 0.0, "within_10pct": 1.0, "kendall_tau": 1.0, "pearson_r": 1.0, "r2": 1.0}),
    # errors 0.125, 0, 0.25, 0 -> median 0.0625; 2 of 4 within 10%
    ("mixed", [2, 4, 8, 16], [2.25, 4, 6, 16],
     {"mdape": 0.0625, "within_10pct": 0.5, "kendall_tau": 1.0}),
    # errors below 3 ms: 0.5, 0 -> 0.25; at or above: 0, 0.25 -> 0.125
    ("split", [1, 2, 4, 8], [1.5, 2, 4, 6],
     {"mdape_low": 0.25, "mdape_high": 0.125, "count_low": 2, "count_high": 2, "mdape": 0.125}),
    # one swapped pair of six: tau = (5 - 1) / 6
    ("one_swap", [1, 2, 3, 4], [1, 3, 2, 4], {"kendall_tau": 4 / 6, "within_10pct": 0.5}),
    # SS_res = 1, SS_tot = 2 -> R^2 = 0.5
    ("r2_half", [1, 2, 3], [1, 2, 4], {"r2": 0.5, "mdape": 0.0}),
    # an affine map keeps Pearson r at 1 and the ranking, but errors are 2, 1.5, 1.25
    ("affine", [1, 2, 4], [3, 5, 9], {"pearson_r": 1.0, "kendall_tau": 1.0, "within_10pct": 0.0, "mdape": 1.5}),
    ("reversed", [1, 2, 4], [4, 2, 1], {"kendall_tau": -1.0}),
]


@pytest.mark.parametrize("measured, predicted, expected", [c[1:] for c in REGRESSION_CASES],
                         ids=[c[0] for c in REGRESSION_CASES])
def test_regression_metrics_match_hand_values(measured, predicted, expected):
    scores = regression_metrics(measured, predicted, threshold_ms=3.0)
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value), name
    assert scores["count"] == len(measured)


def test_empty_side_of_the_split_is_nan():
    scores = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], threshold_ms=100.0)
    assert scores["count_high"] == 0 and math.isnan(scores["mdape_high"])
    assert scores["mdape_low"] == 0.0


def test_absolute_percentage_errors_are_relative_to_measured():
    np.testing.assert_allclose(absolute_percentage_errors([2, 4], [1, 5]), [0.5, 0.25])


# (id, measured, predicted, groups, expected {groups, mean, median})
GROUP_CASES = [
    # A ranks perfectly (1), B reversed (-1), C has only 2 members and is left out
    ("perfect_and_reversed", [1, 2, 3, 1, 2, 3, 1, 2], [1, 2, 3, 3, 2, 1, 2, 1], list("AAABBBCC"),
     {"groups": 2, "mean": 0.0, "median": 0.0}),
    # A perfect (1), B one swap of three pairs ((2 - 1) / 3)
    ("one_swap", [1, 2, 3, 10, 20, 30], [1, 2, 3, 10, 30, 20], list("AAABBB"),
     {"groups": 2, "mean": (1 + 1 / 3) / 2, "median": (1 + 1 / 3) / 2}),
    ("three_groups", [1, 2, 3] * 3, [1, 2, 3, 1, 3, 2, 3, 2, 1], list("AAABBBCCC"),
     {"groups": 3, "mean": (1 + 1 / 3 - 1) / 3, "median": 1 / 3}),
]


@pytest.mark.parametrize("measured, predicted, groups, expected", [c[1:] for c in GROUP_CASES],
                         ids=[c[0] for c in GROUP_CASES])
def test_within_group_kendall(measured, predicted, groups, expected):
    result = within_group_kendall(measured, predicted, groups)
    assert result["groups"] == expected["groups"]
    assert result["mean"] == pytest.approx(expected["mean"])
    assert result["median"] == pytest.approx(expected["median"])


def test_within_group_kendall_without_large_enough_groups():
    result = within_group_kendall([1, 2, 3, 4], [1, 2, 3, 4], ["A", "A", "B", "B"])
    assert result["groups"] == 0 and math.isnan(result["mean"])


def test_per_group_errors():
    result = per_group_errors([2, 4, 8, 10], [2.5, 4, 8, 12], ["b", "b", "a", "a"])
    assert list(result) == ["a", "b"]
    assert result["a"] == {"count": 2, "mdape": pytest.approx(0.1), "within_10pct": 0.5}
    assert result["b"] == {"count": 2, "mdape": pytest.approx(0.125), "within_10pct": 0.5}


@pytest.mark.parametrize("measured, predicted, message", [
    ([1, 2], [1], "2 measured latencies but 1 predictions"),
    ([1, 0], [1, 1], "finite and positive"),
    ([1, float("nan")], [1, 1], "finite and positive"),
    ([1, 2], [1, float("inf")], "NaN or inf"),
], ids=["length", "zero", "nan_measured", "inf_predicted"])
def test_bad_inputs_raise_one_line_value_errors(measured, predicted, message):
    with pytest.raises(ValueError, match=message):
        regression_metrics(measured, predicted)


def test_group_labels_must_match_points():
    with pytest.raises(ValueError, match="one label per point"):
        within_group_kendall([1, 2, 3], [1, 2, 3], ["A", "A"])



# (id, measured, predicted, expected error_summary); binary-exact values, so the 5% and 10% edges are unambiguous
SUMMARY_CASES = [
    # signed errors +0.0625, -0.125, 0, +0.25 -> |.| median 0.09375; within 5%: 1 of 4; within 10%: 2 of 4;
    # signed median (0 + 0.0625) / 2; the ranking is kept -> tau 1
    ("mixed", [16, 8, 4, 2], [17, 7, 4, 2.5],
     {"count": 4, "mdape": 0.09375, "within_5pct": 0.25, "within_10pct": 0.5, "bias": 0.03125, "kendall_tau": 1.0}),
    # all 12.5% too high: the bias is the error itself
    ("biased", [8, 16, 32], [9, 18, 36],
     {"mdape": 0.125, "within_5pct": 0.0, "within_10pct": 0.0, "bias": 0.125, "kendall_tau": 1.0}),
    # exactly 5% (0.05 = 1/20 is not binary-exact, so 1/32 and 1/16 bracket it)
    ("edges", [32, 16], [33, 17], {"within_5pct": 0.5, "within_10pct": 1.0, "bias": (1 / 32 + 1 / 16) / 2}),
    ("one_swap", [1, 2, 4, 8], [1, 4, 2, 8], {"kendall_tau": 4 / 6, "bias": 0.0}),
]


@pytest.mark.parametrize("measured, predicted, expected", [c[1:] for c in SUMMARY_CASES],
                         ids=[c[0] for c in SUMMARY_CASES])
def test_error_summary_matches_hand_values(measured, predicted, expected):
    from nni_latency.fit.metrics import error_summary

    scores = error_summary(measured, predicted)
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value), name


def test_regression_metrics_include_the_summary():
    scores = regression_metrics([16, 8, 4, 2], [17, 7, 4, 2.5])
    assert scores["within_5pct"] == 0.25 and scores["bias"] == pytest.approx(0.03125)


def test_worst_points_are_sorted_by_absolute_error_with_their_sign():
    from nni_latency.fit.metrics import worst_points

    worst = worst_points(["a", "b", "c", "d"], [16, 8, 4, 2], [17, 7, 4, 2.5], count=3)
    assert [(w["name"], w["error"]) for w in worst] == [("d", 0.25), ("b", -0.125), ("a", 0.0625)]
    assert worst[1] == {"name": "b", "measured_ms": 8.0, "predicted_ms": 7.0, "error": -0.125}
    with pytest.raises(ValueError, match="one label per point"):
        worst_points(["a"], [1, 2], [1, 2])
