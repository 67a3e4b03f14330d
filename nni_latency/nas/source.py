"""``LatencySource``: what the FBNet loss, NNI's profiler penalties and the search report need from a source
of latency, whether it is predicted (``LatencyProfiler``) or a measured lookup table (``search.lut_source``).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Protocol, runtime_checkable

from .label_tables import LatencyTerm

_logger = logging.getLogger(__name__)

__all__ = ["LatencySource"]


@runtime_checkable
class LatencySource(Protocol):
    """The latency (ms) of every architecture of a space, as a sum of tables over its labels.

    ``label_values`` gives each label's candidate values in the order of the tables' axes; ``terms`` are
    the tables (their sum over a sample is the latency); ``profile(sample)`` evaluates them for one
    architecture, and ``uniform_expected_latency()`` averages them over uniformly chosen labels.
    """

    label_values: dict[str, list]
    terms: list[LatencyTerm]

    def profile(self, sample: Mapping[str, Any]) -> float:
        ...

    def uniform_expected_latency(self) -> float:
        ...
