"""Has the machine moved since its device model was profiled? A small fixed probe answers it.

A device's speed drifts with its state (thermal limits, frequency governors, other tenants): on a shared VM
the same networks measured 5-10% slower half an hour after the profile. ``run_profile`` times a few fixed
blocks (``record_probe``) and stores them in the model; ``check_drift`` times them again before a later
measurement and warns (``DriftWarning``) when they moved beyond their own noise, so a user can tell whether
the model or the machine is off. (The other process-level cause of unstable timings, plain glibc malloc, is
``measure.allocator.allocator_advice``'s.)
"""

from __future__ import annotations

import datetime
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..runtimes.measurement import relative_spread
from ..runtimes.protocol import MeasurementProtocol, protocol_of
from ..suite.blocks import BlockSpec
from .latency import measure_latency

_logger = logging.getLogger(__name__)

__all__ = ["DriftWarning", "DriftCheck", "PROBE_BLOCKS", "PROBE_ROUNDS", "DRIFT_FLOOR", "record_probe",
           "time_probe", "check_drift"]

# One block per cost regime a drift can hit differently: a compute-bound dense conv, a memory-bound inverted
# residual (depthwise conv, BN, activations, residual add on a large map), and a linear layer (weight-bound).
PROBE_BLOCKS = (
    BlockSpec("conv_bn_relu", 64, 64, 28, 1, 3),
    BlockSpec("mbconv", 24, 24, 56, 1, 3, expansion=3),
    BlockSpec("classifier", 512, 1000, 7, 1, 1),
)
PROBE_ROUNDS = 3  # interleaved passes: the spread between them is the probe's own noise
# Below this the probe never reports drift: two medians of three passes differ by a few percent on a quiet
# machine (repeat measurements of a block differ by a median of 3% here), and a user acts on more than that.
DRIFT_FLOOR = 0.05
# The probe's timing budget, capped so it takes well under a second (3 blocks x 3 rounds).
_PROBE_MIN_RUN_TIME, _PROBE_MAX_RUN_TIME = 0.02, 0.08

Measure = Callable[[Any, Sequence[int]], Any]  # (module, input_shape) -> LatencyMeasurement


class DriftWarning(UserWarning):
    """The device times the drift probe differently than when its model was profiled, beyond the noise."""


def probe_protocol(protocol: MeasurementProtocol) -> MeasurementProtocol:
    """``protocol`` with the probe's short timing budget: one copy of each block (``hot``), so it stays quick."""
    return protocol.replace(protocol="hot", rounds=PROBE_ROUNDS,
                            min_run_time=min(_PROBE_MIN_RUN_TIME, protocol.min_run_time),
                            max_run_time=min(_PROBE_MAX_RUN_TIME, protocol.max_run_time))


def time_probe(protocol: MeasurementProtocol, specs: Sequence[BlockSpec] = PROBE_BLOCKS,
               measure: Measure | None = None) -> dict[str, Any]:
    """Time ``specs`` in ``protocol.rounds`` interleaved passes: per-block medians over the passes, their total,
    the total of each pass and the spread between passes (``measurement.relative_spread``), and when."""
    if measure is None:
        def measure(module, shape):
            return measure_latency(module, shape, protocol)

    modules = [spec.build(seed=0) for spec in specs]
    round_ms = [[float(measure(module, spec.input_shape).latency_ms) for spec, module in zip(specs, modules)]
                for _ in range(protocol.rounds)]
    per_block = np.median(np.array(round_ms), axis=0)
    totals = [sum(times) for times in round_ms]
    return {"blocks": [{"spec": spec.to_dict(), "key": spec.key, "latency_ms": float(ms),
                        "round_ms": [times[i] for times in round_ms]}
                       for i, (spec, ms) in enumerate(zip(specs, per_block))],
            "total_ms": float(per_block.sum()), "round_total_ms": totals, "spread": relative_spread(totals),
            "rounds": protocol.rounds, "protocol": protocol.to_dict(),
            "when": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def record_probe(protocol: MeasurementProtocol, measure: Measure | None = None) -> dict[str, Any]:
    """The probe timed under ``protocol`` (with the probe's budget), for ``device["probe"]`` of a device model."""
    return time_probe(probe_protocol(protocol), measure=measure)


@dataclass(frozen=True)
class DriftCheck:
    """The probe now against the probe when the model was profiled.

    ``ratio`` is now / then; ``noise`` the threshold it is judged against (the larger spread between the
    probe's passes, then or now, and at least ``DRIFT_FLOOR``); ``drifted`` when |ratio - 1| exceeds it.
    """

    ratio: float
    noise: float
    drifted: bool
    message: str
    then_ms: float
    now_ms: float
    profiled_when: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "change": self.ratio - 1, "noise": self.noise, "drifted": self.drifted,
                "message": self.message, "probe_then_ms": self.then_ms, "probe_now_ms": self.now_ms,
                "profiled_when": self.profiled_when, "blocks": self.blocks}


def _message(ratio: float, noise: float, then_ms: float, now_ms: float, drifted: bool) -> str:
    direction = "slower" if ratio >= 1 else "faster"
    probe = f"probe {then_ms:.3f} ms then, {now_ms:.3f} ms now, noise ±{100 * noise:.1f}%"
    if drifted:
        return (f"the device runs {100 * abs(ratio - 1):.1f}% {direction} than when it was profiled ({probe}); "
                "measurements now include that drift: let the machine settle (load, temperature) or profile again")
    return f"no drift beyond the noise since profiling ({probe}; {100 * (ratio - 1):+.1f}%)"


def check_drift(model: Any, protocol: MeasurementProtocol | None = None, *, measure: Measure | None = None,
                stacklevel: int = 2) -> DriftCheck | None:
    """Time the model's probe again and compare; warn (``DriftWarning``) when the device moved beyond the noise.

    The probe is re-timed exactly as it was recorded (threads, dtype, protocol, timing), on ``protocol``'s
    device when given, so a different thread count asked for elsewhere does not read as drift. Returns None,
    with a debug log, for a model without a probe (written before probes were recorded) or one recorded on
    another kind of device.
    """
    probe = (getattr(model, "device", None) or {}).get("probe")
    if not isinstance(probe, Mapping) or not probe.get("blocks"):
        _logger.debug("the device model has no drift probe (profiled by an older version); no drift check")
        return None
    recorded = protocol_of(probe.get("protocol") or model)
    if protocol is not None and protocol.device != recorded.device:
        if protocol.device_type != recorded.device_type:
            _logger.debug("the drift probe was recorded on %s, not comparable with %s; no drift check",
                          recorded.device, protocol.device)
            return None
        recorded = recorded.replace(device=protocol.device)
    specs = [BlockSpec(**block["spec"]) for block in probe["blocks"]]
    now = time_probe(recorded, specs, measure)
    then_ms, now_ms = float(probe["total_ms"]), now["total_ms"]
    ratio = now_ms / then_ms if then_ms > 0 else float("inf")
    noise = max(DRIFT_FLOOR, float(probe.get("spread", 0.0)), now["spread"])
    drifted = abs(ratio - 1) > noise
    message = _message(ratio, noise, then_ms, now_ms, drifted)
    if drifted:
        warnings.warn(message, DriftWarning, stacklevel=stacklevel)
    else:
        _logger.debug(message)
    blocks = [{"key": then["key"], "then_ms": then["latency_ms"], "now_ms": block["latency_ms"]}
              for then, block in zip(probe["blocks"], now["blocks"])]
    return DriftCheck(ratio, noise, drifted, message, then_ms, now_ms, probe.get("when"), blocks)

