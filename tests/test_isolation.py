"""Where a measurement runs: every whole network the project scores is timed in a process of its own, and the
allocator policy decides whether its tensors are faulted in again on every forward. No timing is asserted: the
tests count processes and page faults, which do not depend on the machine's load."""

from __future__ import annotations

import functools
import multiprocessing
import os
import resource

import pytest
import torch
from torch import nn

from nni_latency.errors import MeasurementError
from nni_latency.measure.isolated import measure_fresh
from nni_latency.runtimes.protocol import MeasurementProtocol

FAST = MeasurementProtocol(min_run_time=0.005, max_run_time=0.02, rounds=1)


class _ReportsItsProcess(nn.Module):
    def forward(self, x):
        raise ValueError(f"ran in process {os.getpid()}")


def _reporter():
    return _ReportsItsProcess()


def _pid_of(error: MeasurementError) -> int:
    return int(str(error).rsplit(" ", 1)[1])


def test_a_network_is_built_and_timed_in_another_process():
    with pytest.raises(MeasurementError, match="ran in process") as caught:
        measure_fresh(_reporter, (1, 4), FAST)
    assert _pid_of(caught.value) != os.getpid()


def test_a_network_that_cannot_be_pickled_is_timed_in_a_forked_process():
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("this platform cannot fork")
    unpicklable = lambda: _ReportsItsProcess()  # noqa: E731 -- a local lambda, as NNI keeps in some frozen networks
    with pytest.raises(MeasurementError, match="ran in process") as caught:
        measure_fresh(unpicklable, (1, 4), FAST)
    assert _pid_of(caught.value) != os.getpid()


def test_a_fresh_process_measures_and_sends_the_measurement_back():
    measured = measure_fresh(functools.partial(nn.Linear, 16, 16), (1, 16), FAST)
    assert measured.latency_ms > 0 and measured.median_ms > 0


def _faults_per_forward(policy: str, queue) -> None:
    torch.set_num_threads(1)
    if policy == "steady":
        from nni_latency.measure.allocator import use_steady_allocator

        use_steady_allocator()
    network = nn.Sequential(*[nn.Conv2d(64, 64, 3, padding=1) for _ in range(4)]).eval()
    x = torch.randn(1, 64, 56, 56)  # 800 KB activations: above glibc's default mmap threshold (128 KB)
    faults = []
    with torch.no_grad():
        for _ in range(6):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            network(x)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    queue.put(faults)


def _faults(policy: str) -> list[int]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_faults_per_forward, args=(policy, queue))
    child.start()
    faults = queue.get(timeout=120)
    child.join()
    return faults


@pytest.mark.skipif(not hasattr(resource, "getrusage") or os.uname().sysname != "Linux", reason="glibc and Linux")
def test_under_the_default_allocator_every_forward_faults_its_activations_in_again():
    # What a process ran before decides where its tensors land and whether freed memory went back to the kernel:
    # under glibc's defaults, activations above the mmap threshold are mapped and unmapped on every forward, so
    # each forward pays a page fault per 4 KB of them; the steady policy keeps freed memory, and after a warm-up
    # a forward faults nothing. Whole networks are therefore timed in fresh processes under the protocol's policy.
    default, steady = _faults("default"), _faults("steady")
    assert min(default[2:]) > 200, default
    assert max(steady[3:]) <= 0.1 * min(default[2:]), (default, steady)
