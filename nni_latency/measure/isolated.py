"""Measuring a network in a fresh process, as a user's own script would: what ran before in a process changes what
a network measures there (a process that had built a supernet and run a zoo of networks timed the same frozen
network up to 1.78x slower than a fresh one), so every whole network the project scores is timed in a process of
its own, spawned with the protocol's allocator policy and thread count.

The network travels as a builder (a picklable callable that returns it, such as ``NetworkSpec.build`` bound to its
spec), never as weights: the child builds it afresh, times it with ``measure_latency`` and sends the measurement
back. An error in the child comes back as the one line it would have raised. A builder that cannot be pickled (NNI
keeps local lambdas in the frozen networks of MobileNetV3Space and NasBench101) is handed to a forked child
instead, where the platform forks: still a process of its own, though one that starts from this one's memory.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import pickle
import traceback
from typing import Any, Callable, Sequence

from ..errors import MeasurementError, NniLatencyError
from ..runtimes.measurement import LatencyMeasurement
from ..runtimes.protocol import MeasurementProtocol
from .allocator import apply_allocator_policy
from .latency import measure_latency

_logger = logging.getLogger(__name__)

__all__ = ["measure_fresh", "measure_module_fresh", "FRESH_TIMEOUT_S"]

FRESH_TIMEOUT_S = 900.0  # a network that takes longer than this to build and time is stuck, not slow


def _child(connection, builder: Callable[[], Any], input_shape, protocol: MeasurementProtocol,
           options: dict[str, Any]) -> None:
    """The spawned process: the protocol's allocator policy, the network built afresh, timed, sent back."""
    try:
        apply_allocator_policy(protocol)
        connection.send(("ok", measure_latency(builder(), input_shape, protocol, **options)))
    except BaseException as error:  # noqa: BLE001 -- whatever failed goes back to the parent as its one line
        connection.send(("error", (isinstance(error, (NniLatencyError, ValueError)), type(error).__name__,
                                   str(error), traceback.format_exc(limit=3))))
    finally:
        connection.close()


def _start_method(builder: Callable[[], Any]) -> str:
    try:
        pickle.dumps(builder)
        return "spawn"
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        if "fork" not in multiprocessing.get_all_start_methods():
            raise MeasurementError(f"the network cannot be sent to a fresh process ({error}) and this platform "
                                   "cannot fork: measure it in this process") from None
        _logger.debug("the builder cannot be pickled (%s): measuring in a forked process", error)
        return "fork"


def measure_fresh(builder: Callable[[], Any], input_shape: Sequence[int] | Sequence[Sequence[int]],
                  protocol: MeasurementProtocol, timeout: float = FRESH_TIMEOUT_S,
                  **options: Any) -> LatencyMeasurement:
    """``measure_latency(builder(), input_shape, protocol, **options)`` in a freshly spawned process (forked, when
    ``builder`` cannot be pickled)."""
    context = multiprocessing.get_context(_start_method(builder))
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, builder, input_shape, protocol, options), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise MeasurementError(f"measuring in a fresh process took more than {timeout:.0f} s; the network may be "
                                   "stuck: measure it in this process to see where")
        status, payload = receive.recv()
    except EOFError:
        child.join()
        raise MeasurementError(f"the fresh process measuring the network died (exit code {child.exitcode}); "
                               "out of memory? measure it in this process to see the error") from None
    finally:
        receive.close()
        if child.is_alive():
            child.terminate()
        child.join()
    if status == "ok":
        return payload
    user_error, kind, message, details = payload
    _logger.debug("the fresh process failed:\n%s", details)
    if user_error:
        raise MeasurementError(" ".join(message.split()))
    raise MeasurementError(f"measuring in a fresh process failed ({kind}: {message.splitlines()[0] if message else ''})")


def _given(module):
    """The network itself: a picklable builder of a network already built (a sample frozen from a space)."""
    return module


def measure_module_fresh(module, input_shape: Sequence[int] | Sequence[Sequence[int]],
                         protocol: MeasurementProtocol, **options: Any) -> LatencyMeasurement:
    """``measure_fresh`` of a network already built: it travels to the child pickled (or, where it cannot be
    pickled, in a forked child's memory)."""
    return measure_fresh(functools.partial(_given, module), input_shape, protocol, **options)
