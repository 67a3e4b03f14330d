"""The device model: ``LatencyModel``, the one prediction path (``model``), the kinds of regressor it can hold
(``regressors``), its JSON file (``schema``), where its time goes (``terms``) and the batch sizes and threads it
covers (``coverage``)."""

from .model import LatencyModel, OutOfRangeWarning, features_matrix
from .regressors import DEFAULT_KIND, MODEL_KINDS, FlopsModel, OperatorCostModel, RelativeLinearModel, TwoRegimeModel
from .terms import TERM_ROLES, CostTerms, dominant_role, split_by_role

__all__ = ["LatencyModel", "OutOfRangeWarning", "features_matrix", "CostTerms", "TERM_ROLES", "split_by_role",
           "dominant_role", "MODEL_KINDS", "DEFAULT_KIND", "TwoRegimeModel", "RelativeLinearModel", "FlopsModel",
           "OperatorCostModel"]
