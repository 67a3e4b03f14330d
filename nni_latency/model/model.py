"""``LatencyModel``, the device model users load and save: a fitted regressor (``regressors``) plus what is
needed to trust it (runtime, device and protocol, feature ranges, metrics), its JSON, and the one prediction path.

A model describes one runtime (eager PyTorch or ONNX Runtime): it counts a module as that runtime runs it
(``count``), and refuses to be asked about another (``check_runtime``). Code outside asks a model where its time
goes (``cost_terms``, ``breakdown``) instead of parsing its parameters. ``LatencyModel.to_dict``/``from_dict`` are
the model's JSON; ``schema`` wraps it in the versioned envelope.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
from torch import nn

from ..count.features import ROLES, BlockFeatures, feature_role, pricing_uncovered
from ..count.inputs import check_countable, input_specs, with_bounds
from ..errors import InvalidInput, ModelFileError, RuntimeMismatch
from ..runtimes import get_runtime, get_table
from ..runtimes.protocol import Counting, MeasurementProtocol, protocol_of, records_protocol
from ..runtimes.torch.device import resolve_device
from . import schema
from .coverage import batch_of, check_batch
from .regressors import DEFAULT_KIND, MODEL_KINDS, _LatencyRegressor, make_regressor
from .terms import CostTerms, split_by_role

_logger = logging.getLogger(__name__)

__all__ = ["LatencyModel", "OutOfRangeWarning", "features_matrix"]


class OutOfRangeWarning(UserWarning):
    """A prediction for features far outside the range the model was trained on."""


def features_matrix(rows: Sequence[BlockFeatures | Mapping[str, float]] | np.ndarray, names: Sequence[str],
                    columns: Sequence[str] | None = None) -> np.ndarray:
    """Stack feature rows into an (n, len(names)) array. An array is taken as is, its columns named by ``columns``
    (its runtime's ``feature_names``); a ``BlockFeatures`` lacks no feature (absent ones are 0), a mapping (a
    row read from a file) must hold every one of ``names``."""
    if isinstance(rows, np.ndarray):
        columns = list(columns if columns is not None else names)
        if rows.ndim != 2 or rows.shape[1] != len(columns):
            raise InvalidInput(f"a feature array must be (n, {len(columns)}) in the order of the model's "
                             f"feature_names, got shape {rows.shape}")
        return rows[:, [columns.index(n) for n in names]].astype(float)
    dicts = [row.as_dict(names) if isinstance(row, BlockFeatures) else row for row in rows]
    try:
        return np.array([[float(d[name]) for name in names] for d in dicts], float).reshape(len(dicts), len(names))
    except KeyError as error:
        raise InvalidInput(f"feature row lacks {error.args[0]!r}; rows need {', '.join(names)}") from None


def _check_costs(regressor: _LatencyRegressor, source: str) -> None:
    """A kind fitted with non-negative weights (each term a cost) never holds a negative one: loaded, it
    would silently clamp predictions to 0 ms."""
    if not getattr(regressor, "positive", False):
        return
    terms = {**dict(zip(regressor.feature_names, regressor.coef_)), "intercept": regressor.intercept_}
    negative = [(name, value) for name, value in terms.items() if value < 0]
    if negative:
        name, value = negative[0]
        raise ModelFileError(f"{source}: {regressor.kind} weight {name!r} is {value:.4g}, but every weight of this "
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

    @property
    def runtime(self) -> str:
        """The runtime this model describes (``torch`` for eager PyTorch, ``onnxruntime``)."""
        return self._protocol.runtime

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature its runtime counts, in the column order of the arrays ``predict`` takes."""
        return get_table(self.runtime).all_feature_names

    def measuring_protocol(self, *, threads: int | None = None, device: str | None = None, timing: Any = None,
                           rounds: int | None = None, runtime: str | None = None) -> MeasurementProtocol:
        """The protocol to measure against this model: its own (``protocol_of``), with the thread count, device,
        timing budget (a ``TimingConfig`` or mapping) and rounds a command asks for; every value checked first
        (one line each), a device that is absent and a runtime that is not the model's refused."""
        self.check_runtime(runtime, "this measurement")
        for flag, value in (("--threads", threads), ("--rounds", rounds)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInput(f"{flag} must be at least 1, got {value!r}")
        protocol = protocol_of(self)
        if timing is not None:
            protocol = protocol.with_timing(timing)
        changes = {name: value for name, value in (("threads", threads), ("rounds", rounds)) if value is not None}
        if device is not None:
            changes["device"] = str(resolve_device(device))  # a one-line error when it is absent
        return protocol.replace(**changes)

    def role_part(self, role: str) -> LatencyModel:
        """This model with only the weights of one cost role (``compute``, ``memory``, ``overhead``) and no intercept:
        what the NAS profiler prices each role of a space with, to scale them apart (``nas.scaling``). Only affine
        kinds split so; the piecewise ``two_regime`` is refused."""
        if role not in ROLES:
            raise InvalidInput(f"unknown cost role {role!r}: use one of {', '.join(ROLES)}")
        if not hasattr(self.regressor, "coef_") or hasattr(self.regressor, "breakpoint_"):
            raise InvalidInput(f"a {self.kind} model is piecewise: its cost does not split by role; use op_linear")
        regressor = copy.deepcopy(self.regressor)
        regressor.coef_ = np.where([feature_role(n) == role for n in regressor.feature_names], regressor.coef_, 0.0)
        regressor.intercept_ = 0.0
        part = LatencyModel(regressor, device=self.device, feature_ranges=self.feature_ranges, metrics=self.metrics,
                            notes=self.notes)
        part._warned_out_of_range = True  # the whole model warns about its ranges, once
        return part

    def part_of_network(self, X: np.ndarray) -> np.ndarray:
        """Feature rows (``(n, len(feature_names))``) of parts counted alone, as the parts cost inside a network:
        without the calls only a part run alone makes (ORT's layout changes at a graph's edges;
        ``OpTable.part_of_network``). Eager PyTorch has none: the rows are returned as they are."""
        table = get_table(self.runtime)
        if not table.edge_classes or not len(X):
            return X
        names = self.feature_names
        return np.array([[row[name] for name in names] for row in (
            table.part_of_network(dict(zip(names, values))) for values in X)], float).reshape(X.shape)

    def check_runtime(self, runtime: str | None, what: str = "this") -> None:
        """Refuse, in one line, to answer for another runtime than the model's (None: the model's own)."""
        if runtime is not None and runtime != self.runtime:
            raise RuntimeMismatch(f"the device model describes the {self.runtime} runtime, and {what} asks about "
                                  f"{runtime}: its costs do not carry over; profile that runtime with `nni-latency "
                                  f"profile --runtime {runtime}` and use that model")

    @classmethod
    def fit(cls, rows: Sequence[BlockFeatures | Mapping[str, float]], latencies_ms: Sequence[float],
            kind: str = DEFAULT_KIND, **kwargs) -> LatencyModel:
        """Fit a model of ``kind`` on feature rows and measured latencies (ms), for the runtime its ``device``
        record names (eager PyTorch when it names none)."""
        runtime = protocol_of(kwargs.get("device") or {}).runtime
        names = get_table(runtime).all_feature_names
        X = features_matrix(rows, names)
        y = np.asarray(latencies_ms, float)
        if len(y) != len(X):
            raise InvalidInput(f"{len(X)} feature rows but {len(y)} latencies")
        if np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise InvalidInput("latencies must be finite and positive; drop NaN/inf/zero measurements first")
        regressor = make_regressor(kind, runtime)
        regressor.fit(X[:, [names.index(n) for n in regressor.feature_names]], y)
        ranges = {name: (float(X[:, i].min()), float(X[:, i].max())) for i, name in enumerate(names)}
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
        X = features_matrix(rows, self.regressor.feature_names, self.feature_names)
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
        included), counted as this model's runtime runs it on this model's device (eager PyTorch: a module too
        large to run here is counted on meta tensors). A batch size outside those the model was profiled at warns
        once (``coverage.CoverageWarning``). Every prediction from a module goes through here.

        ``input_shape`` is a shape, a list of shapes (a forward of several inputs), or inputs of another dtype than
        the module's floats: ``((1, 64), torch.int64)`` (token ids), ``"1,64:int64;1,64:bool"``, or
        ``count.inputs.InputSpec`` s. Integer inputs are drawn in ``[0, n)``, ``n`` the smallest ``num_embeddings``
        of the module's embeddings (``count.inputs.integer_bound``). A ``torch.jit.script`` module is refused."""
        specs = input_specs(input_shape)
        check_countable(module)
        if any(spec.is_integer and spec.high is None for spec in specs):  # the ids' bound comes from the module
            module = module if isinstance(module, nn.Module) else module()
            specs = with_bounds(specs, module)
        check_batch(self, batch_of(specs), stacklevel=3)
        with pricing_uncovered(self):  # an uncovered operator's warning says how much of this prediction it takes
            return get_runtime(self.runtime).count_shape(module, specs[0] if len(specs) == 1 else specs,
                                                         self.counting)

    def counter(self):
        """``count(module, inputs) -> (features, output)`` on given input tensors, as this model's runtime counts
        them: what the NAS profilers count every unit of a space with."""
        runtime, counting = get_runtime(self.runtime), self.counting
        return lambda module, inputs: runtime.count(module, inputs, counting)

    def predict_module(self, module, input_shape, runtime: str | None = None) -> float:
        """Latency (ms) of ``module`` on ``input_shape`` (batch included; any form ``count`` takes, token ids
        included), from one counted forward pass; ``runtime`` (the model's unless given) is refused when it is not
        the model's."""
        self.check_runtime(runtime, "predict_module")
        return self.predict_one(self.count(module, input_shape))

    def cost_terms(self, features: BlockFeatures | Mapping[str, float]) -> CostTerms:
        """The affine piece of the model that applies at ``features`` (piecewise kinds choose it from them)."""
        X = features_matrix([features], self.regressor.feature_names, self.feature_names)
        coefficients, intercepts = self.regressor.affine_at(X)
        return CostTerms(dict(zip(self.regressor.feature_names, map(float, coefficients[0]))), float(intercepts[0]))

    def breakdown(self, rows) -> dict[str, np.ndarray]:
        """Predicted ms split by role (compute, memory, overhead) for each row; sums to the prediction."""
        X = features_matrix(rows, self.regressor.feature_names, self.feature_names)
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
            if name.endswith(".calls") or name.startswith("overhead."):
                continue  # counts of calls: a network makes many more than a block, each priced as one call
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
            "features": {name: get_table(self.runtime).doc(name) for name in self.regressor.feature_names},
            "feature_ranges": {k: list(v) for k, v in self.feature_ranges.items()},
            "device": self.device,
            "metrics": self.metrics,
            "notes": self.notes,
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> LatencyModel:
        """The model in a document written by ``to_dict``; every problem is a one-line ``ModelFileError`` naming
        ``source``. Numbers must be JSON numbers, and every weight must name a feature of the model's runtime."""
        schema.check_envelope(data, source)
        kind = data.get("kind")
        schema.require(kind in MODEL_KINDS, source, f"unknown model kind {kind!r} (known: {', '.join(MODEL_KINDS)})")
        schema.check_sections(data, source)
        device = data.get("device") or {}
        if records_protocol(device):
            try:
                protocol_of(device)
            except (TypeError, ValueError) as error:
                raise ModelFileError(f"{source}: 'device' describes an invalid measurement protocol ({error})") \
                    from None
        parameters = data.get("parameters")
        schema.require(isinstance(parameters, Mapping), source, "'parameters' must be an object")
        schema.check_finite(parameters, source, "parameters")
        try:
            regressor = MODEL_KINDS[kind].from_state(parameters)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{source}: parameters of kind {kind!r} are incomplete or invalid ({_why(error)}); "
                                 "if the file comes from an older nni-latency, refit it with `nni-latency fit "
                                 "microbench.jsonl`") from None
        runtime = protocol_of(device).runtime
        schema.require(getattr(regressor, "runtime", runtime) == runtime, source,
                       f"its {kind} weights price {getattr(regressor, 'runtime', '?')} operators but its device "
                       f"record names the {runtime} runtime; the model is damaged: refit it with `nni-latency fit`")
        _check_costs(regressor, source)
        ranges = data.get("feature_ranges") or {}
        schema.check_ranges(ranges, get_table(runtime).all_feature_names, source)
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


def _why(error: Exception) -> str:
    """What a regressor's ``from_state`` found wrong: a missing key is named as such."""
    return f"missing {error}" if isinstance(error, KeyError) else str(error)
