"""``LatencyModel``, the device model users load and save: a fitted regressor (``regressors``) plus what is
needed to trust it (device and protocol, feature ranges, metrics), its JSON, and where its time goes.

Code outside asks a model where its time goes (``cost_terms``, ``breakdown``) instead of parsing its
parameters. ``LatencyModel.to_dict``/``from_dict`` are the model's JSON; ``schema`` wraps it in the
versioned envelope. The regressor kinds are re-exported here.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from . import schema
from .coverage import batch_of, check_batch
from .features import FEATURE_DOCS, FEATURE_NAMES, FEATURE_ROLES, ROLES, BlockFeatures
from .protocol import Counting, MeasurementProtocol, protocol_of, records_protocol
from .regressors import DEFAULT_KIND, MODEL_KINDS, FlopsModel, RelativeLinearModel, TwoRegimeModel, _LatencyRegressor

_logger = logging.getLogger(__name__)

__all__ = ["TwoRegimeModel", "RelativeLinearModel", "FlopsModel", "MODEL_KINDS", "DEFAULT_KIND",
           "LatencyModel", "OutOfRangeWarning", "features_matrix", "CostTerms", "TERM_ROLES", "split_by_role",
           "dominant_role"]

# The role of every term a model can have: the features' (``features.FEATURE_ROLES``), and the intercept,
# a fixed cost paid once per prediction, which is overhead.
TERM_ROLES: dict[str, str] = {**FEATURE_ROLES, "intercept": "overhead"}


class OutOfRangeWarning(UserWarning):
    """A prediction for features far outside the range the model was trained on."""




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
        self.source = ""  # the file it was loaded from, if any
        self._warned_out_of_range = False
        # Parsed once: how this model's features are counted, and how its rows were measured.
        self._protocol = protocol_of(self.device)
        self._records_protocol = records_protocol(self.device)

    @property
    def kind(self) -> str:
        return self.regressor.kind

    @property
    def parameters(self) -> dict[str, Any]:
        return self.regressor.get_state()

    @property
    def protocol(self) -> MeasurementProtocol | None:
        """How the training blocks were measured; None for a model that does not record it (built by hand)."""
        return self._protocol if self._records_protocol else None

    @property
    def counting(self) -> Counting:
        """How features are counted for this model: its device's vector width, threads and cache sizes."""
        return self._protocol.counting

    @property
    def vector_width(self) -> int:
        """The vector width features are counted at for this model (16 where the model does not record it)."""
        return self._protocol.vector_width

    @property
    def threads(self) -> int:
        """The thread count features are counted at (ATen picks convolution kernels by it): the profiled one."""
        return self._protocol.threads

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

    def count(self, module, input_shape) -> BlockFeatures:
        """The features of ``module`` (or of what the builder ``module()`` returns) on ``input_shape`` (batch
        included), counted as this model's device counts them; a module too large to run here is counted on
        meta tensors (``meta_counting``). A batch size outside those the model was profiled at warns once
        (``coverage.CoverageWarning``). Every prediction from a module goes through here."""
        from .meta_counting import count_features

        check_batch(self, batch_of(input_shape), stacklevel=3)
        return count_features(module, input_shape, self.counting)

    def predict_module(self, module, input_shape) -> float:
        """Latency (ms) of ``module`` on ``input_shape`` (batch included), from one counted forward pass."""
        return self.predict_one(self.count(module, input_shape))

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
        model = cls.from_dict(schema.read_document(path), str(path))
        model.source = str(path)
        return model

    def __repr__(self) -> str:
        where = self.device.get("name", "unknown device")
        return f"LatencyModel(kind={self.kind!r}, device={where!r})"
