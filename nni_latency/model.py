"""Latency regressors (scikit-learn estimators) and ``LatencyModel``, the device model users load.

Kinds:
  * ``two_regime``: the published reference. initial = a*ACTS + b*INP + c*FLOPs + d; below a learned
    breakpoint, predicted = slope*initial + offset, else initial. Least squares, as published.
  * ``relative_linear``: non-negative weights on additive features (per-kind FLOPs at vector-padded
    channel counts, weights, memory traffic, per-kind op counts), fitted to minimise squared *relative* error. Non-negative weights keep
    each term a cost, so predictions stay additive and extrapolate sanely; relative error keeps
    small blocks from being ignored. It is the default because it measures best on held-out blocks.
  * ``flops``: latency = c*FLOPs + d, the proxy NNI's FlopsProfiler amounts to (a baseline).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression
from sklearn.utils.validation import check_is_fitted

from .features import FEATURE_NAMES, FEATURE_ROLES, BlockFeatures, extract_features

_logger = logging.getLogger(__name__)

__all__ = ["TwoRegimeModel", "RelativeLinearModel", "FlopsModel", "MODEL_KINDS", "DEFAULT_KIND",
           "LatencyModel", "OutOfRangeWarning", "features_matrix"]


class OutOfRangeWarning(UserWarning):
    """A prediction for features far outside the range the model was trained on."""


def _scaled_lstsq(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
                  positive: bool = False) -> np.ndarray:
    """Least-squares coefficients of ``X @ coef ~ y`` with columns scaled for conditioning."""
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    regression = LinearRegression(fit_intercept=False, positive=positive)
    regression.fit(X / scale, y, sample_weight=weights)
    return regression.coef_ / scale


class _LatencyRegressor(RegressorMixin, BaseEstimator):
    """Shared plumbing: the feature columns a kind uses, and parameter (de)serialisation."""

    kind: ClassVar[str]
    feature_names: ClassVar[tuple[str, ...]]
    min_points: ClassVar[int]

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def contributions(self, X) -> dict[str, np.ndarray]:
        """Each feature's term (and the intercept's) in the prediction; they sum to ``predict(X)``."""
        X = np.asarray(X, float)
        terms = {name: X[:, i] * self.coef_[i] for i, name in enumerate(self.feature_names)}
        terms["intercept"] = np.full(len(X), self.intercept_)
        return terms

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> _LatencyRegressor:
        raise NotImplementedError

    def _check_points(self, y: np.ndarray) -> None:
        if len(y) < self.min_points:
            raise ValueError(f"{self.kind} needs at least {self.min_points} points to fit, got {len(y)}")


class _AffineRegressor(_LatencyRegressor):
    """latency = X @ coef_ + intercept_, fitted by (optionally weighted, non-negative) least squares."""

    positive: ClassVar[bool] = False

    def _sample_weights(self, y: np.ndarray) -> np.ndarray | None:
        return None

    def fit(self, X, y):
        X, y = np.asarray(X, float), np.asarray(y, float)
        self._check_points(y)
        coef = _scaled_lstsq(np.column_stack([X, np.ones(len(X))]), y, self._sample_weights(y), self.positive)
        self.coef_, self.intercept_ = coef[:-1], float(coef[-1])
        return self

    def predict(self, X):
        check_is_fitted(self, "coef_")
        return np.asarray(X, float) @ self.coef_ + self.intercept_


class TwoRegimeModel(_LatencyRegressor):
    """The published two-regime linear model, fitted by least squares (absolute error).

    The fit searches the split that defines the large-block regime: for each candidate split of the
    measured latencies, (a, b, c, d) are fitted on the blocks above it, then every breakpoint on the
    resulting initial predictions gets its own (slope, offset) fit below it; the combination with the
    smallest total squared error wins. Noise-free data from the model is recovered exactly.
    """

    kind = "two_regime"
    feature_names = ("acts", "inp", "flops")
    min_points = 6

    def __init__(self, n_splits: int = 20):
        self.n_splits = n_splits

    def fit(self, X, y):
        X, y = np.asarray(X, float), np.asarray(y, float)
        self._check_points(y)
        design = np.column_stack([X, np.ones(len(X))])
        best = None
        splits = np.unique(np.quantile(y, np.linspace(0.0, 0.8, self.n_splits)))
        for split in splits:
            high = y >= split
            if high.sum() < design.shape[1] + 1:
                continue
            linear = _scaled_lstsq(design[high], y[high])
            initial = design @ linear
            for slope, offset, breakpoint, sse in self._regimes(initial, y):
                if best is None or sse < best[0] - 1e-12 * max(1.0, best[0]):
                    best = (sse, linear, breakpoint, slope, offset)
        if best is None:
            raise ValueError(f"two_regime found no split with {design.shape[1] + 1} points above it in {len(y)} points")
        _, linear, self.breakpoint_, self.slope_, self.offset_ = best
        self.coef_, self.intercept_ = linear[:-1], float(linear[-1])
        return self

    @staticmethod
    def _regimes(initial: np.ndarray, y: np.ndarray):
        """Yield (slope, offset, breakpoint, sse) for every breakpoint between sorted initial values."""
        order = np.argsort(initial)
        sorted_initial = initial[order]
        high_residual = (y - initial) ** 2
        yield 1.0, 0.0, -np.inf, float(high_residual.sum())  # a single regime
        for count in range(2, len(y)):
            low = order[:count]
            if sorted_initial[count - 1] == sorted_initial[count]:
                continue
            slope, offset = np.polyfit(initial[low], y[low], 1)
            low_sse = float(((slope * initial[low] + offset - y[low]) ** 2).sum())
            breakpoint = 0.5 * (sorted_initial[count - 1] + sorted_initial[count])
            yield float(slope), float(offset), float(breakpoint), low_sse + float(high_residual[order[count:]].sum())

    def predict(self, X):
        check_is_fitted(self, "coef_")
        initial = np.asarray(X, float) @ self.coef_ + self.intercept_
        return np.where(initial < self.breakpoint_, self.slope_ * initial + self.offset_, initial)

    def contributions(self, X):
        # Below the breakpoint the prediction is slope*initial + offset: scale the terms, offset is overhead.
        terms = super().contributions(X)
        initial = sum(terms.values())
        low = initial < self.breakpoint_
        scaled = {name: np.where(low, self.slope_ * value, value) for name, value in terms.items()}
        scaled["intercept"] = scaled["intercept"] + np.where(low, self.offset_, 0.0)
        return scaled

    def get_state(self):
        a, b, c = (float(v) for v in self.coef_)
        return {"a": a, "b": b, "c": c, "d": self.intercept_, "breakpoint": float(self.breakpoint_),
                "slope": float(self.slope_), "offset": float(self.offset_)}

    @classmethod
    def from_state(cls, state):
        model = cls()
        model.coef_ = np.array([state["a"], state["b"], state["c"]], float)
        model.intercept_ = float(state["d"])
        # A single-regime fit has breakpoint -inf, which strict JSON stores as null.
        model.breakpoint_ = -np.inf if state["breakpoint"] is None else float(state["breakpoint"])
        model.slope_, model.offset_ = float(state["slope"]), float(state["offset"])
        return model


class RelativeLinearModel(_AffineRegressor):
    """latency = sum_k w_k * feature_k + w_0 with w >= 0, minimising sum(((pred - y) / y)^2)."""

    kind = "relative_linear"
    min_points = 8
    feature_names = ("vflops_dense", "vflops_pointwise", "vflops_grouped", "vflops_depthwise", "vflops_matmul",
                     "acts", "inp", "conv_weights", "matmul_weights", "mem_elements", "convs_dense",
                     "convs_pointwise", "convs_grouped", "convs_depthwise", "matmuls", "mem_ops", "maxpool_work",
                     "avgpool_work")

    positive = True  # every term is a cost; non-negative least squares also stays well-posed with few points

    def _sample_weights(self, y):
        return 1.0 / y**2  # squared relative error

    def get_state(self):
        return {"weights": dict(zip(self.feature_names, map(float, self.coef_))), "intercept": self.intercept_}

    @classmethod
    def from_state(cls, state):
        model = cls()
        model.coef_ = np.array([state["weights"][name] for name in cls.feature_names], float)
        model.intercept_ = float(state["intercept"])
        return model


class FlopsModel(_AffineRegressor):
    """latency = c * FLOPs + d by least squares: what a FLOPs proxy can do at best."""

    kind = "flops"
    feature_names = ("flops",)
    min_points = 3

    def get_state(self):
        return {"c": float(self.coef_[0]), "d": self.intercept_}

    @classmethod
    def from_state(cls, state):
        model = cls()
        model.coef_, model.intercept_ = np.array([state["c"]], float), float(state["d"])
        return model


MODEL_KINDS: dict[str, type[_LatencyRegressor]] = {
    cls.kind: cls for cls in (RelativeLinearModel, TwoRegimeModel, FlopsModel)
}
DEFAULT_KIND = "relative_linear"


def features_matrix(rows: Sequence[BlockFeatures | Mapping[str, float]] | np.ndarray,
                    names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """Stack feature rows into an (n, len(names)) array; an array must already have all FEATURE_NAMES."""
    if isinstance(rows, np.ndarray):
        if rows.ndim != 2 or rows.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"a feature array must be (n, {len(FEATURE_NAMES)}) in FEATURE_NAMES order, "
                             f"got shape {rows.shape}")
        return rows[:, [FEATURE_NAMES.index(n) for n in names]].astype(float)
    dicts = [row.as_dict() if isinstance(row, BlockFeatures) else row for row in rows]
    try:
        return np.array([[float(d[name]) for name in names] for d in dicts], float).reshape(len(dicts), len(names))
    except KeyError as error:
        raise ValueError(f"feature row lacks {error.args[0]!r}; rows need {', '.join(names)}") from None


class LatencyModel:
    """A fitted latency regressor plus what is needed to trust it: device, protocol, feature ranges, metrics.

    >>> model = LatencyModel.load("runs/cpu/device_model.json")   # doctest: +SKIP
    >>> model.predict_module(block, (1, 32, 56, 56))               # doctest: +SKIP
    """

    def __init__(self, regressor: _LatencyRegressor, *, device: Mapping[str, Any] | None = None,
                 feature_ranges: Mapping[str, Sequence[float]] | None = None,
                 metrics: Mapping[str, Any] | None = None, notes: str = ""):
        self.regressor = regressor
        self.device = dict(device or {})
        self.feature_ranges = {k: (float(v[0]), float(v[1])) for k, v in (feature_ranges or {}).items()}
        self.metrics = dict(metrics or {})
        self.notes = notes
        self._warned_out_of_range = False

    @property
    def kind(self) -> str:
        return self.regressor.kind

    @property
    def parameters(self) -> dict[str, Any]:
        return self.regressor.get_state()

    @classmethod
    def fit(cls, rows: Sequence[BlockFeatures | Mapping[str, float]], latencies_ms: Sequence[float],
            kind: str = DEFAULT_KIND, **kwargs) -> LatencyModel:
        """Fit a model of ``kind`` on feature rows and measured latencies (ms)."""
        if kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {kind!r}: use one of {', '.join(MODEL_KINDS)}")
        X = features_matrix(rows)
        y = np.asarray(latencies_ms, float)
        if len(y) != len(X):
            raise ValueError(f"{len(X)} feature rows but {len(y)} latencies")
        if np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("latencies must be finite and positive; drop NaN/inf/zero measurements first")
        regressor_cls = MODEL_KINDS[kind]
        regressor = regressor_cls().fit(X[:, [FEATURE_NAMES.index(n) for n in regressor_cls.feature_names]], y)
        ranges = {name: (float(X[:, i].min()), float(X[:, i].max())) for i, name in enumerate(FEATURE_NAMES)}
        return cls(regressor, feature_ranges=ranges, **kwargs)

    def predict_many(self, rows: Sequence[BlockFeatures | Mapping[str, float]] | np.ndarray) -> np.ndarray:
        """Latencies (ms) for many feature rows at once; an (n, len(FEATURE_NAMES)) array is fastest."""
        X = features_matrix(rows, self.regressor.feature_names)
        self._check_range(X)
        return np.maximum(self.regressor.predict(X), 0.0)

    def predict(self, features: BlockFeatures | Mapping[str, float]) -> float:
        """Latency (ms) of one block from its features."""
        return float(self.predict_many([features])[0])

    def breakdown_many(self, rows) -> dict[str, np.ndarray]:
        """Predicted ms split by role (compute, memory, overhead) for each row; sums to the prediction."""
        X = features_matrix(rows, self.regressor.feature_names)
        roles = {"compute": np.zeros(len(X)), "memory": np.zeros(len(X)), "overhead": np.zeros(len(X))}
        for name, value in self.regressor.contributions(X).items():
            roles[FEATURE_ROLES.get(name, "overhead")] += value
        negative = sum(roles.values()) < 0  # predictions are clamped at 0 ms: so are their parts
        return {role: np.where(negative, 0.0, value) for role, value in roles.items()}

    def predict_module(self, module, input_shape) -> float:
        """Latency (ms) of ``module`` on ``input_shape`` (batch included), from one counted forward pass."""
        return self.predict(extract_features(module, input_shape))

    def _check_range(self, X: np.ndarray, factor: float = 10.0) -> None:
        if self._warned_out_of_range or not self.feature_ranges:
            return
        for i, name in enumerate(self.regressor.feature_names):
            low, high = self.feature_ranges.get(name, (0.0, np.inf))
            column = X[:, i]
            if np.any(column > factor * max(high, 1.0)) or np.any((column > 0) & (column < low / factor)):
                self._warned_out_of_range = True
                warnings.warn(f"feature {name!r} is far outside the training range [{low:.3g}, {high:.3g}]; "
                              "the prediction is an extrapolation (profile with larger blocks to cover it)",
                              OutOfRangeWarning, stacklevel=3)
                return

    def to_dict(self) -> dict[str, Any]:
        from .schema import model_to_dict
        return model_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> LatencyModel:
        from .schema import model_from_dict
        return model_from_dict(data, source)

    def save(self, path) -> None:
        """Write the model as JSON atomically (temporary file, then rename)."""
        from .schema import save_model
        save_model(self, path)

    @classmethod
    def load(cls, path) -> LatencyModel:
        """Load and validate a device-model JSON file; a ``ValueError`` explains any problem in one line."""
        from .schema import load_model
        return load_model(path)

    def __repr__(self) -> str:
        where = self.device.get("name", "unknown device")
        return f"LatencyModel(kind={self.kind!r}, device={where!r})"
