"""Where a model's time goes: one affine piece of it (``CostTerms``) priced term by term, and terms summed by role
(compute, memory, overhead). Code outside a model asks it for these instead of parsing its parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..count.features import ROLES, feature_role
from ..runtimes.torch.operators import FEATURE_NAMES

__all__ = ["CostTerms", "TERM_ROLES", "split_by_role", "dominant_role"]

# The role of every term of an eager-PyTorch model, and of the intercept (a fixed cost paid once per prediction,
# which is overhead); ``count.features.feature_role`` answers for any runtime's.
TERM_ROLES: dict[str, str] = {**{name: feature_role(name) for name in FEATURE_NAMES}, "intercept": "overhead"}


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
        role = feature_role(name)
        parts[role] = parts[role] + value
    return parts


def dominant_role(split: Mapping[str, float]) -> str:
    """The role (compute, memory or overhead) with the largest share of a cost split; ``-`` for no cost."""
    if sum(max(v, 0.0) for v in split.values()) <= 0:
        return "-"
    return max(ROLES, key=lambda role: split.get(role, 0.0))
