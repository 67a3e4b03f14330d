"""Scaling a profiler's tables role by role (compute, memory, per-call overhead): to what a fusing runtime costs a
space's networks whole, and to what a space's own networks measure (calibration).

The tables are priced once per role (``role_terms``: the device model restricted to one role's weights) and summed
with a scale per role (``scaled_terms``); the intercept, paid once per network, is never scaled.

* **Fusion** (``fusion_scales``): ONNX Runtime folds a batch norm into the convolution before it and an activation
  into the kernel, which parts counted alone never see. For such a device model (``OpTable.fuses_modules``) a few
  random architectures of the space are counted whole, as ORT runs them, and each role's tables are scaled by the
  ratio of the networks' cost to the parts' sum in that role. The ratios come from ORT's own optimizer on this
  space's own networks, never from rules written here.
* **Calibration** (``calibrate``): ``N`` random architectures of the space, each measured end to end in a fresh
  process, and one scale per role fitted to them with a strong prior toward the device model (ridge toward 1 on the
  relative error, bounded): the few-shot adaptation HELP and LitePred use between devices, applied between a
  profile and a search space. Its error on held-out samples (each left out of the fit in turn) is kept before and
  after.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from ..count.features import ROLES
from ..errors import InvalidInput
from ..measure.isolated import measure_module_fresh
from .label_tables import LatencyTerm, merge_terms
from .walk import TermBuilder

_logger = logging.getLogger(__name__)

__all__ = ["role_terms", "scaled_terms", "role_costs", "fusion_scales", "calibrate", "FUSION_SAMPLES", "PRIOR",
           "SCALE_BOUNDS"]

FUSION_SAMPLES = 4
PRIOR = 1.0  # ridge weight pulling each role's scale toward 1 (the device model), in squared relative error
SCALE_BOUNDS = (0.25, 4.0)


def role_terms(analysis, space) -> dict[str, list[LatencyTerm]]:
    """The space's tables priced by each role of the device model alone (no intercept)."""
    terms = {}
    for role in ROLES:
        builder = TermBuilder(analysis, analysis.model.role_part(role))
        builder.walk(space, "", [])
        terms[role] = [term for term in builder.terms if term.sources != ("intercept",)]
    return terms


def scaled_terms(labels, intercept_ms: float, by_role: Mapping[str, Sequence[LatencyTerm]],
                 scales: Mapping[str, float]) -> list[LatencyTerm]:
    """One table per label set: each role's tables times its scale, plus the intercept."""
    terms = [LatencyTerm((), np.asarray(intercept_ms, float), ("intercept",))]
    for role, role_tables in by_role.items():
        terms += [LatencyTerm(t.labels, t.table * scales.get(role, 1.0), t.sources) for t in role_tables]
    return merge_terms(labels, terms)


def role_costs(labels, by_role: Mapping[str, Sequence[LatencyTerm]], sample: Mapping[str, Any]) -> dict[str, float]:
    """What each role's tables charge ``sample`` (ms)."""
    complete = labels.complete(sample) if labels.derived else sample
    return {role: float(sum(t.table[tuple(labels.position(label, complete[label]) for label in t.labels)]
                            for t in role_tables)) for role, role_tables in by_role.items()}


def _random_samples(space, count: int, seed: int) -> list[dict]:
    samples = []
    for index in range(count):
        memo: dict = {}
        space.random(memo=memo, random_state=np.random.RandomState(seed + index))
        samples.append(memo)
    return samples


def fusion_scales(profiler, by_role, samples: int = FUSION_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """Per role, the space's networks counted whole over their parts' sum (``samples`` random architectures)."""
    model, whole, parts = profiler.device_model, dict.fromkeys(ROLES, 0.0), dict.fromkeys(ROLES, 0.0)
    for sample in _random_samples(profiler.model_space, samples, seed):
        features = model.count(profiler.model_space.freeze(sample), profiler.input_shape)
        for role, ms in model.cost_terms(features).split(features.as_dict(model.feature_names)).items():
            whole[role] += ms
        for role, ms in role_costs(profiler.space_labels, by_role, sample).items():
            parts[role] += ms
    scales = {role: float(whole[role] / parts[role]) if parts[role] > 0 else 1.0 for role in ROLES}
    return {"samples": samples, "scales": scales, "whole_ms": whole, "parts_ms": parts}


def _fit(costs: np.ndarray, intercept: float, measured: np.ndarray, prior: float) -> np.ndarray:
    """Role scales minimising the squared relative error of ``costs @ s + intercept`` against ``measured`` plus
    ``prior * |s - 1|^2``, clipped to ``SCALE_BOUNDS``."""
    weights = 1.0 / measured
    design = costs * weights[:, None]
    target = (measured - intercept - costs.sum(axis=1)) * weights  # solve for s - 1
    gram = design.T @ design + prior * np.eye(costs.shape[1])
    delta = np.linalg.solve(gram, design.T @ target)
    return np.clip(1.0 + delta, *SCALE_BOUNDS)


def calibrate(profiler, by_role, scales: Mapping[str, float], count: int, seed: int = 1000,
              prior: float = PRIOR) -> dict[str, Any]:
    """Measure ``count`` random architectures of the profiler's space, each in a fresh process under the device
    model's protocol, and fit a scale per role (on top of ``scales``) with a strong prior toward 1; the error on
    each sample when it is left out of the fit, before and after."""
    if count < 2:
        raise InvalidInput(f"calibrate needs at least 2 measured architectures, got {count}")
    protocol = profiler.device_model.measuring_protocol()
    samples = _random_samples(profiler.model_space, count, seed)
    measured, costs = [], []
    for index, sample in enumerate(samples):
        network = profiler.model_space.freeze(sample)
        measured.append(measure_module_fresh(network, profiler.input_shape, protocol).median_ms)
        role_ms = role_costs(profiler.space_labels, by_role, sample)
        costs.append([role_ms[role] * scales.get(role, 1.0) for role in ROLES])
        _logger.info("calibration %d/%d: measured %.3f ms", index + 1, count, measured[-1])
    measured, costs = np.array(measured), np.array(costs)
    intercept = profiler.intercept_ms
    before = np.abs(costs.sum(axis=1) + intercept - measured) / measured
    held_out = []
    for i in range(count):
        keep = np.arange(count) != i
        fitted = _fit(costs[keep], intercept, measured[keep], prior)
        held_out.append(abs(costs[i] @ fitted + intercept - measured[i]) / measured[i])
    fitted = _fit(costs, intercept, measured, prior)
    return {"samples": count, "seed": seed, "prior": prior, "scales": dict(zip(ROLES, map(float, fitted))),
            "measured_ms": measured.tolist(), "predicted_ms": (costs.sum(axis=1) + intercept).tolist(),
            "statistic": "median of the timed runs, each architecture in a fresh process",
            "mdape_before": float(np.median(before)), "mdape_after_held_out": float(np.median(held_out))}
