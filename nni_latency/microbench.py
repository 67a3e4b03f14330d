"""Former home of the profiling run and the dataset reader, split into ``profiling`` (the run) and ``dataset``
(the measured rows). The names still resolve here, with a ``DeprecationWarning``."""

from __future__ import annotations

from .deprecation import deprecated_names

__all__: list[str] = []

__getattr__ = deprecated_names(__name__, {
    **{name: f"nni_latency.profiling:{name}" for name in (
        "run_profile", "ProfileResult", "measure_specs", "profile_protocol", "validate_profile_config",
        "device_description", "MAX_COUNT")},
    **{name: f"nni_latency.dataset:{name}" for name in ("load_records", "recount_features", "has_current_features")},
    **{name: f"nni_latency.suite:{name}" for name in ("sample_specs", "round_channels")},
    "measure_modules": "nni_latency.rounds:measure_modules",
    "MIN_POINTS": "nni_latency.fit:MIN_POINTS",
    "cross_validated_predictions": "nni_latency.fit:cross_validated_predictions",
    "cross_validated_metrics": "nni_latency.fit:cross_validated_metrics",
    "PROTOCOL_KEYS": "nni_latency.protocol:RESUME_FIELDS",
})
