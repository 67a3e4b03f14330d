"""From measured rows to a fitted device model: each kind fitted on its evidence (``op_linear`` on the operators' own
times), cross-validation done once (``fitting``), and the error metrics every score uses (``metrics``)."""

from .fitting import (CV_FOLDS, MIN_POINTS, cross_validated_metrics, cross_validated_predictions, fit_kind, fit_records,
                      fit_with_cv, reference_model)

__all__ = ["fit_records", "fit_kind", "fit_with_cv", "cross_validated_predictions", "cross_validated_metrics",
           "reference_model", "MIN_POINTS", "CV_FOLDS"]
