"""Latency regressors (scikit-learn estimators) and ``LatencyModel``, the device model users load and save.

Each regressor says which affine terms apply to a feature row (``affine_at``): code outside this module
asks a model where its time goes (``contributions``, ``LatencyModel.cost_terms``, ``breakdown``) instead of
parsing its parameters. ``LatencyModel.to_dict``/``from_dict`` are the model's JSON; ``schema`` wraps it.

Kinds:
  * ``two_regime``: the published reference. initial = a*ACTS + b*INP + c*FLOPs + d; below a learned
    breakpoint, predicted = slope*initial + offset, else initial. Least squares, as published.
  * ``relative_linear``: non-negative weights on additive features (per-kind FLOPs at vector-padded
    channel counts, weights, memory traffic, per-kind op counts), fitted to minimise squared *relative*
    error. Non-negative weights keep each term a cost, so predictions stay additive and extrapolate
    sanely; relative error keeps small blocks from being ignored. It is the default because it measures
    best on held-out blocks.
  * ``flops``: latency = c*FLOPs + d, the proxy NNI's FlopsProfiler amounts to (a baseline).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression
from sklearn.utils.validation import check_is_fitted

from . import schema
from .coverage import batch_of, check_batch
from .features import FEATURE_DOCS, FEATURE_NAMES, FEATURE_ROLES, ROLES, BlockFeatures, extract_features
from .protocol import MeasurementProtocol, protocol_of, records_protocol

_logger = logging.getLogger(__name__)
_RANK_WARNING = getattr(np, "exceptions", np).RankWarning
_HUBER_ITERATIONS = 30

__all__ = ["TwoRegimeModel", "RelativeLinearModel", "FlopsModel", "MODEL_KINDS", "DEFAULT_KIND",
           "LatencyModel", "OutOfRangeWarning", "features_matrix", "CostTerms", "TERM_ROLES", "split_by_role",
           "dominant_role"]

# The role of every term a model can have: the features' (``features.FEATURE_ROLES``), and the intercept,
# a fixed cost paid once per prediction, which is overhead.
TERM_ROLES: dict[str, str] = {**FEATURE_ROLES, "intercept": "overhead"}


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
    """Shared plumbing: the feature columns a kind uses, its affine terms, and parameter (de)serialisation."""

    kind: ClassVar[str]
    feature_names: ClassVar[tuple[str, ...]]
    min_points: ClassVar[int]

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def affine_at(self, X) -> tuple[np.ndarray, np.ndarray]:
        """The affine piece that applies at each row of ``X``: coefficients (n, k) over ``feature_names`` and
        intercepts (n,), so that the prediction is ``(coefficients * X).sum(1) + intercepts``."""
        check_is_fitted(self, "coef_")
        rows = len(np.asarray(X, float))
        return np.tile(self.coef_, (rows, 1)), np.full(rows, float(self.intercept_))

    def contributions(self, X) -> dict[str, np.ndarray]:
        """Each feature's term (and the intercept's) in the prediction; they sum to ``predict(X)``."""
        X = np.asarray(X, float)
        coefficients, intercepts = self.affine_at(X)
        terms = {name: X[:, i] * coefficients[:, i] for i, name in enumerate(self.feature_names)}
        terms["intercept"] = intercepts
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

    robust: ClassVar[float | None] = None  # relative error beyond which a row's weight shrinks (Huber)

    def fit(self, X, y):
        X, y = np.asarray(X, float), np.asarray(y, float)
        self._check_points(y)
        design = np.column_stack([X, np.ones(len(X))])
        weights = self._sample_weights(y)
        coef = _scaled_lstsq(design, y, weights, self.positive)
        if self.robust:
            # Iteratively reweighted least squares for the Huber loss on relative error: a row the fit misses
            # by more than ``robust`` (a block timed during a burst of load on a shared machine) counts
            # linearly, not squared. Noise-free data is fitted exactly, as before.
            base = np.ones(len(y)) if weights is None else weights
            for _ in range(_HUBER_ITERATIONS):
                relative = np.abs(design @ coef - y) / y
                huber = 1.0 / np.maximum(relative / self.robust, 1.0)
                updated = _scaled_lstsq(design, y, base * huber, self.positive)
                if np.allclose(updated, coef, rtol=1e-6, atol=0.0):
                    break
                coef = updated
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
            with warnings.catch_warnings():  # a breakpoint with few or equal points below it is just a poor fit
                warnings.simplefilter("ignore", _RANK_WARNING)
                slope, offset = np.polyfit(initial[low], y[low], 1)
            low_sse = float(((slope * initial[low] + offset - y[low]) ** 2).sum())
            breakpoint = 0.5 * (sorted_initial[count - 1] + sorted_initial[count])
            yield float(slope), float(offset), float(breakpoint), low_sse + float(high_residual[order[count:]].sum())

    def initial(self, X) -> np.ndarray:
        """The upper regime's prediction ``a*ACTS + b*INP + c*FLOPs + d``, which the breakpoint applies to."""
        check_is_fitted(self, "coef_")
        return np.asarray(X, float) @ self.coef_ + self.intercept_

    def from_initial(self, initial) -> np.ndarray:
        """The prediction as a function of the initial one: ``slope*x + offset`` below the breakpoint, else ``x``."""
        initial = np.asarray(initial, float)
        return np.where(initial < self.breakpoint_, self.slope_ * initial + self.offset_, initial)

    def predict(self, X):
        return self.from_initial(self.initial(X))

    def affine_at(self, X):
        # Below the breakpoint the prediction is slope*initial + offset: scaled terms, the offset is overhead.
        coefficients, intercepts = super().affine_at(X)
        low = self.initial(X) < self.breakpoint_
        return (np.where(low[:, None], self.slope_ * coefficients, coefficients),
                np.where(low, self.slope_ * intercepts + self.offset_, intercepts))

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


class _ChosenFeatures:
    """``feature_names`` of a regressor with a ``features`` parameter: the instance's own columns, or the
    class's ``DEFAULT_FEATURES`` (also what the class itself answers)."""

    def __get__(self, instance, owner) -> tuple[str, ...]:
        chosen = getattr(instance, "features", None) if instance is not None else None
        names = tuple(owner.DEFAULT_FEATURES if chosen is None else chosen)
        unknown = [name for name in names if name not in FEATURE_NAMES]
        if unknown or not names:
            raise ValueError(f"{owner.kind} features {unknown or list(names)} are not features of this nni-latency "
                             f"(known: {', '.join(FEATURE_NAMES)})")
        return names


class RelativeLinearModel(_AffineRegressor):
    """latency = sum_k w_k * feature_k + w_0 with w >= 0, minimising the Huber loss of the relative error
    (squared up to 10%, linear beyond, so a block timed during a burst of load does not pull the fit).

    ``features`` are the columns it uses (``DEFAULT_FEATURES`` unless given); a saved model keeps its own,
    so a model fitted on another feature set still loads and predicts as it did.
    """

    kind = "relative_linear"
    min_points = 8
    # The feature set of the first release: what device models written before the path-aware features use.
    LEGACY_FEATURES = ("vflops_dense", "vflops_pointwise", "vflops_grouped", "vflops_depthwise", "vflops_matmul",
                       "acts", "inp", "conv_weights", "matmul_weights", "mem_elements", "convs_dense",
                       "convs_pointwise", "convs_grouped", "convs_depthwise", "matmuls", "mem_ops", "maxpool_work",
                       "avgpool_work")
    # Convolutions by the kernel ATen runs (oneDNN per kind, or im2col + GEMM), matrix multiplies and fused
    # attention; memory-bound operators by class; a per-call cost for each. Chosen on held-out networks.
    DEFAULT_FEATURES = (
        "dnn_vflops_dense", "dnn_vflops_pointwise", "dnn_vflops_grouped", "dnn_vflops_depthwise", "gemm_flops",
        "vflops_matmul", "vflops_attention", "conv_weights", "matmul_weights", "im2col_elements", "elements_simple",
        "elements_transcendental", "elements_norm", "elements_move", "elements_reduce", "attention_scores",
        "maxpool_work", "avgpool_work", "dnn_convs_dense", "dnn_convs_pointwise", "dnn_convs_grouped",
        "dnn_convs_depthwise", "gemm_convs", "matmuls", "attentions", "ops_simple", "ops_transcendental", "ops_norm",
        "ops_move", "ops_reduce", "ops_window")

    positive = True  # every term is a cost; non-negative least squares also stays well-posed with few points
    robust = 0.10  # Huber: rows missed by more than 10% (noisy timings) count linearly

    def __init__(self, features: Sequence[str] | None = None):
        self.features = features

    feature_names = _ChosenFeatures()

    def _sample_weights(self, y):
        return 1.0 / y**2  # squared relative error

    def get_state(self):
        return {"features": list(self.feature_names), "weights": dict(zip(self.feature_names, map(float, self.coef_))),
                "intercept": self.intercept_}

    @classmethod
    def from_state(cls, state):
        # Files written before the feature set was a parameter list no "features": they used LEGACY_FEATURES.
        model = cls(features=tuple(state.get("features", cls.LEGACY_FEATURES)))
        model.coef_ = np.array([state["weights"][name] for name in model.feature_names], float)
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


@dataclass(frozen=True)
class CostTerms:
    """One affine piece of a latency model: ms = sum_k coefficients[k] * feature_k + intercept."""

    coefficients: Mapping[str, float]
    intercept: float

    def terms(self, features: Mapping[str, float]) -> dict[str, float]:
        """Milliseconds contributed by each feature term."""
        return {name: c * float(features.get(name, 0.0)) for name, c in self.coefficients.items()}

    def predict(self, features: Mapping[str, float], include_intercept: bool = True) -> float:
        return sum(self.terms(features).values()) + (self.intercept if include_intercept else 0.0)

    def split(self, features: Mapping[str, float], include_intercept: bool = False) -> dict[str, float]:
        """Milliseconds per role (compute, memory, overhead)."""
        terms = self.terms(features)
        if include_intercept:
            terms["intercept"] = self.intercept
        return split_by_role(terms)


def split_by_role(contributions: Mapping[str, Any]) -> dict[str, Any]:
    """Sum per-term contributions (floats or arrays, keyed by feature name or ``intercept``) by role."""
    parts: dict[str, Any] = dict.fromkeys(ROLES, 0.0)
    for name, value in contributions.items():
        parts[TERM_ROLES[name]] = parts[TERM_ROLES[name]] + value
    return parts


def dominant_role(split: Mapping[str, float]) -> str:
    """The role (compute, memory or overhead) with the largest share of a cost split; ``-`` for no cost."""
    if sum(max(v, 0.0) for v in split.values()) <= 0:
        return "-"
    return max(ROLES, key=lambda role: split.get(role, 0.0))


def _check_costs(regressor: _LatencyRegressor, source: str) -> None:
    """A kind fitted with non-negative weights (each term a cost) never holds a negative one: loaded, it
    would silently clamp predictions to 0 ms."""
    if not getattr(regressor, "positive", False):
        return
    terms = {**dict(zip(regressor.feature_names, regressor.coef_)), "intercept": regressor.intercept_}
    negative = [(name, value) for name, value in terms.items() if value < 0]
    if negative:
        name, value = negative[0]
        raise ValueError(f"{source}: {regressor.kind} weight {name!r} is {value:.4g}, but every weight of this "
                         "kind is a non-negative cost; the model is damaged: re-create it with "
                         "`nni-latency fit microbench.jsonl`")


class LatencyModel:
    """A fitted latency regressor plus what is needed to trust it: device and protocol, feature ranges, metrics.

    ``predict(rows)`` takes many feature rows and returns an array (scikit-learn's convention);
    ``predict_one(features)`` and ``predict_module(module, shape)`` return one latency (ms).

    >>> model = LatencyModel.load("runs/cpu/device_model.json")   # doctest: +SKIP
    >>> model.predict_module(block, (1, 32, 56, 56))               # doctest: +SKIP
    """

    def __init__(self, regressor: _LatencyRegressor, *, device: Mapping[str, Any] | None = None,
                 feature_ranges: Mapping[str, Sequence[float]] | None = None,
                 metrics: Mapping[str, Any] | None = None, notes: str = ""):
        self.regressor = regressor
        self.device = dict(device or {})  # the device's description and its measurement protocol's fields
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

    @property
    def protocol(self) -> MeasurementProtocol | None:
        """How the training blocks were measured; None for a model that does not record it (built by hand)."""
        return protocol_of(self.device) if records_protocol(self.device) else None

    @property
    def vector_width(self) -> int:
        """The vector width features are counted at for this model (16 where the model does not record it)."""
        return protocol_of(self.device).vector_width

    @property
    def threads(self) -> int:
        """The thread count features are counted at (ATen picks convolution kernels by it): the profiled one."""
        return protocol_of(self.device).threads

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
        regressor = MODEL_KINDS[kind]()
        regressor.fit(X[:, [FEATURE_NAMES.index(n) for n in regressor.feature_names]], y)
        ranges = {name: (float(X[:, i].min()), float(X[:, i].max())) for i, name in enumerate(FEATURE_NAMES)}
        return cls(regressor, feature_ranges=ranges, **kwargs)

    def predict(self, rows: Sequence[BlockFeatures | Mapping[str, float]] | np.ndarray) -> np.ndarray:
        """Latencies (ms) of many feature rows at once; an (n, len(FEATURE_NAMES)) array is fastest.

        Passing one ``BlockFeatures`` or mapping still returns one float, with a ``DeprecationWarning``:
        use ``predict_one`` for that.
        """
        if isinstance(rows, (BlockFeatures, Mapping)):
            warnings.warn("LatencyModel.predict takes many rows and returns an array; use predict_one(features) "
                          "for a single row", DeprecationWarning, stacklevel=2)
            return self.predict_one(rows)
        X = features_matrix(rows, self.regressor.feature_names)
        self._check_range(X)
        return np.maximum(self.regressor.predict(X), 0.0)

    def predict_one(self, features: BlockFeatures | Mapping[str, float]) -> float:
        """Latency (ms) of one block from its features."""
        return float(self.predict([features])[0])

    def predict_many(self, rows) -> np.ndarray:
        """Deprecated name of ``predict``."""
        warnings.warn("LatencyModel.predict_many is deprecated; use predict(rows)", DeprecationWarning, stacklevel=2)
        return self.predict(rows)

    def predict_module(self, module, input_shape) -> float:
        """Latency (ms) of ``module`` on ``input_shape`` (batch included), from one counted forward pass.

        A batch size outside those the model was profiled at warns once (``coverage.CoverageWarning``)."""
        check_batch(self, batch_of(input_shape), stacklevel=3)
        return self.predict_one(extract_features(module, input_shape, self.vector_width, self.threads))

    def cost_terms(self, features: BlockFeatures | Mapping[str, float]) -> CostTerms:
        """The affine piece of the model that applies at ``features`` (piecewise kinds choose it from them)."""
        X = features_matrix([features], self.regressor.feature_names)
        coefficients, intercepts = self.regressor.affine_at(X)
        return CostTerms(dict(zip(self.regressor.feature_names, map(float, coefficients[0]))), float(intercepts[0]))

    def breakdown(self, rows) -> dict[str, np.ndarray]:
        """Predicted ms split by role (compute, memory, overhead) for each row; sums to the prediction."""
        X = features_matrix(rows, self.regressor.feature_names)
        roles = split_by_role(self.regressor.contributions(X))
        roles = {role: np.broadcast_to(value, len(X)).astype(float) for role, value in roles.items()}
        negative = sum(roles.values()) < 0  # predictions are clamped at 0 ms: so are their parts
        return {role: np.where(negative, 0.0, value) for role, value in roles.items()}

    def breakdown_many(self, rows) -> dict[str, np.ndarray]:
        """Deprecated name of ``breakdown``."""
        warnings.warn("LatencyModel.breakdown_many is deprecated; use breakdown(rows)", DeprecationWarning,
                      stacklevel=2)
        return self.breakdown(rows)

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
        """The model as a versioned JSON document (``schema``'s envelope around the model's fields)."""
        return schema.envelope({
            "kind": self.kind,
            "parameters": self.parameters,
            "features": {name: FEATURE_DOCS[name] for name in self.regressor.feature_names},
            "feature_ranges": {k: list(v) for k, v in self.feature_ranges.items()},
            "device": self.device,
            "metrics": self.metrics,
            "notes": self.notes,
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> LatencyModel:
        """The model in a document written by ``to_dict``; every problem is a one-line ValueError naming ``source``."""
        schema.check_envelope(data, source)
        kind = data.get("kind")
        schema.require(kind in MODEL_KINDS, source, f"unknown model kind {kind!r} (known: {', '.join(MODEL_KINDS)})")
        parameters = data.get("parameters")
        schema.require(isinstance(parameters, Mapping), source, "'parameters' must be an object")
        schema.check_finite(parameters, source, "parameters")
        try:
            regressor = MODEL_KINDS[kind].from_state(parameters)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source}: parameters of kind {kind!r} are incomplete or invalid (missing or bad "
                             f"{error!s}); if the file comes from an older nni-latency, refit it with "
                             "`nni-latency fit microbench.jsonl`") from None
        _check_costs(regressor, source)
        schema.check_sections(data, source)
        ranges = data.get("feature_ranges") or {}
        schema.check_ranges(ranges, FEATURE_NAMES, source)
        device = data.get("device") or {}
        if records_protocol(device):
            try:
                protocol_of(device)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{source}: 'device' describes an invalid measurement protocol ({error})") from None
        return cls(regressor, device=device, feature_ranges=ranges, metrics=data.get("metrics") or {},
                   notes=data.get("notes") or "")

    def save(self, path) -> None:
        """Write the model as JSON atomically (temporary file, then rename)."""
        schema.write_document(path, self.to_dict())

    @classmethod
    def load(cls, path) -> LatencyModel:
        """Load and validate a device-model JSON file; a ``ValueError`` explains any problem in one line."""
        return cls.from_dict(schema.read_document(path), str(path))

    def __repr__(self) -> str:
        where = self.device.get("name", "unknown device")
        return f"LatencyModel(kind={self.kind!r}, device={where!r})"
