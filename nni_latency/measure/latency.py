"""``measure_latency``: the latency of one module under a ``MeasurementProtocol``, timed by the protocol's runtime
(eager PyTorch or ONNX Runtime), the same way for the profile's blocks, the test sets and whole networks."""

from __future__ import annotations

from typing import Any, Sequence

from ..runtimes import get_runtime
from ..runtimes.measurement import LatencyMeasurement
from ..runtimes.protocol import MeasurementProtocol
from .allocator import warn_if_unset

__all__ = ["measure_latency", "protocol_with"]


def protocol_with(protocol: Any, overrides: dict[str, Any]) -> MeasurementProtocol:
    """The protocol to measure under: ``protocol`` (or the defaults) with ``overrides`` applied.

    A device given in place of the protocol (the positional argument of earlier versions) is an override.
    """
    if protocol is not None and not isinstance(protocol, MeasurementProtocol):
        if "device" in overrides:
            raise TypeError("measure_latency() got the device twice (positionally and as device=)")
        overrides = {"device": protocol, **overrides}
        protocol = None
    return (protocol or MeasurementProtocol()).replace(**overrides)


def measure_latency(module, input_shape: Sequence[int] | Sequence[Sequence[int]],
                    protocol: MeasurementProtocol | str | None = None, /, *, max_copies: int = 32,
                    retries: int = 1, **overrides: Any) -> LatencyMeasurement:
    """Inference latency (ms) of ``module`` on ``input_shape`` under ``protocol`` (its ``quantile`` of the timed
    runs; the measurement also holds the median and mean), eval mode, no grad, in the protocol's runtime.

    ``overrides`` replace fields of the protocol (``threads=1``, ``protocol="hot"``, ``runtime="onnxruntime"``,
    ...); without a protocol they apply to ``MeasurementProtocol()``'s defaults, and a device string in its place
    is read as ``device=``. A copy of ``module`` is timed. Timing stops once IQR/median is below ``max_spread``; a
    measurement still noisier than that is repeated up to ``retries`` times with a longer budget, then flagged
    ``noisy``.
    """
    protocol = protocol_with(protocol, overrides)
    warn_if_unset(protocol, stacklevel=2)
    return get_runtime(protocol.runtime).measure(module, input_shape, protocol, max_copies=max_copies,
                                                 retries=retries)
