"""Latency regressors, as scikit-learn estimators: which affine terms apply to a feature row, and how they are fitted.

Each regressor says which affine terms apply to a feature row (``affine_at``): code outside asks a model where
its time goes instead of parsing its parameters. ``LatencyModel`` (in ``model``) wraps one with what is needed
to trust it.

Kinds:
  * ``two_regime``: the published reference. initial = a*ACTS + b*INP + c*FLOPs + d; below a learned
    breakpoint, predicted = slope*initial + offset, else initial. Least squares, as published.
  * ``relative_linear``: non-negative weights on additive features (FLOPs per convolution kind and kernel
    path, matrix multiplies and attention, weights, memory traffic per operator class, per-call costs),
    fitted to minimise the Huber loss of the *relative* error. Non-negative weights keep each term a cost, so
    predictions stay additive and extrapolate sanely; relative error keeps small blocks from being ignored;
    the Huber loss keeps a block timed during a burst of load from pulling the fit. It is the default
    because it measures best on held-out blocks and networks.
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

from ..count.features import BLOCK_FEATURES
from ..errors import InvalidInput
from ..runtimes import DEFAULT_RUNTIME, get_table
from ..runtimes.base import OpClass, OpTable

_logger = logging.getLogger(__name__)
_RANK_WARNING = getattr(np, "exceptions", np).RankWarning
_HUBER_ITERATIONS = 30

__all__ = ["OperatorCostModel", "TwoRegimeModel", "RelativeLinearModel", "FlopsModel", "MODEL_KINDS", "DEFAULT_KIND",
           "make_regressor"]


def _scaled_lstsq(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
                  positive: bool = False) -> np.ndarray:
    """Least-squares coefficients of ``X @ coef ~ y`` with columns scaled for conditioning."""
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    regression = LinearRegression(fit_intercept=False, positive=positive)
    regression.fit(X / scale, y, sample_weight=weights)
    return regression.coef_ / scale


def _huber_lstsq(design: np.ndarray, y: np.ndarray, weights: np.ndarray | None, positive: bool,
                 robust: float | None, floor: float = 0.0) -> np.ndarray:
    """(Optionally weighted, non-negative) least squares, made robust by iteratively reweighting for the Huber
    loss on relative error: a row missed by more than ``robust`` (timed during a burst of load on a shared
    machine) counts linearly, not squared. Noise-free data is fitted exactly. ``floor`` keeps rows near 0 ms
    from dominating the relative error."""
    coef = _scaled_lstsq(design, y, weights, positive)
    if not robust:
        return coef
    base = np.ones(len(y)) if weights is None else weights
    scale = np.maximum(y, floor)
    for _ in range(_HUBER_ITERATIONS):
        relative = np.abs(design @ coef - y) / scale
        updated = _scaled_lstsq(design, y, base / np.maximum(relative / robust, 1.0), positive)
        if np.allclose(updated, coef, rtol=1e-6, atol=0.0):
            break
        coef = updated
    return coef


def _number(state: Mapping[str, Any], key: str, where: str = "") -> float:
    """``state[key]`` as a float, only when the file holds a JSON number there (``"0.5"`` and ``true`` are not)."""
    value = state[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}{key} is {value!r} ({type(value).__name__}), not a number: write it as a JSON "
                         "number")
    return float(value)


def _weights(state: Mapping[str, Any], names: Sequence[str]) -> np.ndarray:
    """The ``weights`` object of a state over ``names``: a number for each, and none for a feature the model does
    not have (a typo would otherwise be ignored without a word)."""
    weights = state["weights"]
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights is {type(weights).__name__}, not an object of feature -> number")
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"weights name {len(unknown)} feature(s) this model does not have: {', '.join(unknown[:5])}"
                         f"{' ...' if len(unknown) > 5 else ''}")
    return np.array([_number(weights, name, "weight ") for name in names], float)


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
            raise InvalidInput(f"{self.kind} needs at least {self.min_points} points to fit, got {len(y)}")


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
        coef = _huber_lstsq(design, y, self._sample_weights(y), self.positive, self.robust)
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
            raise InvalidInput(f"two_regime found no split with {design.shape[1] + 1} points above it in {len(y)} points")
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
        model.coef_ = np.array([_number(state, key) for key in ("a", "b", "c")], float)
        model.intercept_ = _number(state, "d")
        # A single-regime fit has breakpoint -inf, which strict JSON stores as null.
        model.breakpoint_ = -np.inf if state["breakpoint"] is None else _number(state, "breakpoint")
        model.slope_, model.offset_ = _number(state, "slope"), _number(state, "offset")
        return model


def _is_feature(name: Any) -> bool:
    """A block-level feature, or an operator-class one (``class.feature``)."""
    return isinstance(name, str) and (name in BLOCK_FEATURES or (name.count(".") == 1 and all(name.split("."))))


class _ChosenFeatures:
    """``feature_names`` of a regressor with a ``features`` parameter: the instance's own columns, or the
    class's ``DEFAULT_FEATURES`` (also what the class itself answers)."""

    def __get__(self, instance, owner) -> tuple[str, ...]:
        chosen = getattr(instance, "features", None) if instance is not None else None
        names = tuple(owner.DEFAULT_FEATURES if chosen is None else chosen)
        unknown = [name for name in names if not _is_feature(name)]
        if unknown or not names:
            raise InvalidInput(f"{owner.kind} features {unknown or list(names)} are not features of this nni-latency "
                             f"(known: {', '.join(BLOCK_FEATURES)}, and class.feature names of an operator table)")
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
    # attention; memory-bound operators by class; a per-call cost for each. Each split follows a measured
    # mechanism (ATen's two convolution paths differ 2-3x per FLOP; a transcendental element costs more than a
    # copied one); the weights come from the profiling suite alone.
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
        model.coef_ = _weights(state, model.feature_names)
        model.intercept_ = _number(state, "intercept")
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
        model.coef_, model.intercept_ = np.array([_number(state, "c")], float), _number(state, "d")
        return model


# A class needs this many calls in the profile to get weights of its own; fewer borrow its fallback's.
MIN_OP_ROWS = 6
# Per-call times below this (ms) are not trusted to a relative error: the timing's own resolution.
OP_FLOOR_MS = 0.002


class _TableFeatures:
    """``feature_names`` of a regressor over an operator table: the instance's table's, or (asked of the class)
    the default runtime's."""

    def __get__(self, instance, owner) -> tuple[str, ...]:
        table = getattr(instance, "table", None) if instance is not None else None
        return (table or get_table(DEFAULT_RUNTIME)).feature_names


class OperatorCostModel(_AffineRegressor):
    """latency = the sum over a block's operator calls of each call's cost, plus per-call overheads: every operator
    class of the runtime's table (``runtimes.base.OpTable``) has non-negative weights on its own few features,
    fitted to the in-place times of that class's calls (``fit_ops``), so operators that always travel together in
    the suite (a depthwise conv with its 1x1 convs; bmm with softmax) no longer share one pool of time that a fit
    on block totals splits wrongly. The dispatch overheads (per call, per free call, per module call or graph
    node) are then fitted on what block totals leave over their operators' sums.

    Given block totals only (``fit``), it fits the same columns on them, as ``relative_linear`` does.
    The model stays affine in additive features, so networks, NAS tables and the loss sum it exactly.
    """

    kind = "op_linear"
    feature_names = _TableFeatures()
    min_points = 8
    positive = True
    robust = 0.10

    def __init__(self, table: OpTable | None = None):
        self.table = table

    @property
    def classes(self) -> Mapping[str, OpClass]:
        return (self.table or get_table(DEFAULT_RUNTIME)).classes

    @property
    def runtime(self) -> str:
        return (self.table or get_table(DEFAULT_RUNTIME)).runtime

    def _sample_weights(self, y):
        return 1.0 / y**2

    def fit(self, X, y):
        super().fit(X, y)
        self.sources_ = {name: "blocks" for name in self.classes}
        return self

    def fit_ops(self, ops: Mapping[str, tuple[np.ndarray, np.ndarray]], X, y) -> OperatorCostModel:
        """Fit each class on its own calls (``ops[cls] = (features (n, len(class features)), ms (n,))``), then
        the overheads on the blocks (``X`` over ``feature_names``, ``y`` their measured ms)."""
        X, y = np.asarray(X, float), np.asarray(y, float)
        self._check_points(y)
        weights: dict[str, float] = {}
        sources: dict[str, str] = {}
        classes = self.classes
        for name, op_class in classes.items():
            features, times = ops.get(name, (np.zeros((0, len(op_class.features))), np.zeros(0)))
            if len(times) >= max(MIN_OP_ROWS, len(op_class.features) + 1):
                floor = np.maximum(times, OP_FLOOR_MS)
                coef = _huber_lstsq(np.asarray(features, float), np.asarray(times, float), 1.0 / floor**2,
                                    positive=True, robust=self.robust, floor=OP_FLOOR_MS)
                weights.update({f"{name}.{f}": float(c) for f, c in zip(op_class.features, coef)})
                sources[name] = f"{len(times)} calls"
        for name, op_class in classes.items():  # classes the profile did not cover borrow a sibling's weights
            lender, seen = op_class.fallback, {name}
            while name not in sources and lender and lender not in seen:
                if sources.get(lender, "").endswith(" calls"):  # fitted on calls of its own
                    weights.update({f"{name}.{f}": weights.get(f"{lender}.{_borrowed(f, classes[lender])}", 0.0)
                                    for f in op_class.features})
                    sources[name] = f"as {lender}"
                seen.add(lender)
                lender = classes[lender].fallback
            sources.setdefault(name, "none")
        table = self.table or get_table(DEFAULT_RUNTIME)
        coef = np.array([weights.get(n, 0.0) for n in self.feature_names])
        overhead = [self.feature_names.index(n) for n in table.overheads]
        residual = y - X @ coef
        design = X[:, overhead]
        if table.fixed_cost:  # a cost per run of a graph: the intercept, paid once per prediction
            design = np.column_stack([design, np.ones(len(y))])
        fitted = _huber_lstsq(design, residual, 1.0 / y**2, positive=True, robust=None)
        coef[overhead] = fitted[:len(overhead)]
        intercept = float(fitted[-1]) if table.fixed_cost else 0.0
        self.coef_, self.intercept_, self.sources_ = coef, intercept, sources
        return self

    def get_state(self):
        state = {"weights": dict(zip(self.feature_names, map(float, self.coef_))), "intercept": self.intercept_,
                 "sources": dict(getattr(self, "sources_", {}))}
        return state if self.runtime == DEFAULT_RUNTIME else {"runtime": self.runtime, **state}

    @classmethod
    def from_state(cls, state):
        # Files written before a model could describe another runtime have no "runtime": eager PyTorch.
        model = cls(get_table(state.get("runtime", DEFAULT_RUNTIME)))
        weights = state["weights"]
        if isinstance(weights, Mapping):  # a file from before a class was added: the class borrows, as in a fit
            weights, borrowed = model._with_newer_classes(weights)
            state = {**state, "weights": weights}
        model.coef_ = _weights(state, model.feature_names)
        model.intercept_ = _number(state, "intercept")
        model.sources_ = {**dict(state.get("sources") or {}), **borrowed} if isinstance(weights, Mapping) else {}
        return model

    def _with_newer_classes(self, weights: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """``weights`` with every class the file has no weight for at all (added to the table after the file was
        written) borrowing its fallback's, as a fit does for a class without calls; a class with some weights but
        not all is left to be refused as damaged."""
        weights, sources = dict(weights), {}
        classes = self.classes
        present = {name.partition(".")[0] for name in weights}
        for name, op_class in classes.items():
            if name in present:
                continue
            lender, seen = op_class.fallback, {name}
            while lender and lender not in seen and lender not in present:
                seen.add(lender)
                lender = classes[lender].fallback
            if lender in present:
                weights.update({f"{name}.{f}": weights.get(f"{lender}.{_borrowed(f, classes[lender])}", 0.0)
                                for f in op_class.features})
                sources[name] = f"as {lender} (added after this model was fitted: refit to fit it)"
        return weights, sources


def _borrowed(feature: str, lender: OpClass) -> str:
    # A GEMM-path conv and a oneDNN kind read each other's FLOPs as their own (padded or not).
    if feature in lender.features:
        return feature
    return {"flops": "vflops", "vflops": "flops", "im2col": "elements"}.get(feature, feature)


MODEL_KINDS: dict[str, type[_LatencyRegressor]] = {
    cls.kind: cls for cls in (OperatorCostModel, RelativeLinearModel, TwoRegimeModel, FlopsModel)
}
DEFAULT_KIND = "op_linear"


def make_regressor(kind: str, runtime: str = DEFAULT_RUNTIME) -> _LatencyRegressor:
    """An unfitted regressor of ``kind`` for rows counted by ``runtime`` (``op_linear`` prices that runtime's
    operator classes; the other kinds fit block-level features, the same for every runtime)."""
    if kind not in MODEL_KINDS:
        raise InvalidInput(f"unknown model kind {kind!r}: use one of {', '.join(MODEL_KINDS)}")
    if kind == OperatorCostModel.kind:
        return OperatorCostModel(get_table(runtime))
    return MODEL_KINDS[kind]()
