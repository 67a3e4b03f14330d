"""Search spaces for latency-aware NAS: ``FBNetSpace`` is the FBNet paper's space as an NNI ``ModelSpace``;
``hub`` builds it and every space of NNI's hub by name, with the profiler that costs it."""

from ..errors import require

require(("nni", "pytorch_lightning"), "nas", "the search spaces (nni_latency.spaces)")

from .fbnet import CANDIDATE_NAMES, FBNetSpace
from .hub import SPACES, build_space, profiler_for, space_names

__all__ = ["FBNetSpace", "CANDIDATE_NAMES", "SPACES", "build_space", "profiler_for", "space_names"]
