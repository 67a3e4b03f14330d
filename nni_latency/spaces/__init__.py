"""Search spaces for latency-aware NAS; ``FBNetSpace`` is the FBNet paper's space as an NNI ``ModelSpace``."""

from .fbnet import CANDIDATE_NAMES, FBNetSpace

__all__ = ["FBNetSpace", "CANDIDATE_NAMES"]
