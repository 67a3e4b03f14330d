"""measure_latency on tiny modules (protocols, copies, thread count), what it leaves alone (the module, cudnn's
flag, the random state, the allocator policy) and the device / dtype / option checks.

No assertion here is about wall time or relative speed: those belong to benchmarks, not unit tests.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from nni_latency.measure import allocator as allocator_module
from nni_latency.measure.allocator import (AllocatorWarning, allocator_advice, apply_allocator_policy,
                                           use_steady_allocator)
from nni_latency.measure.latency import measure_latency
from nni_latency.runtimes.measurement import LatencyMeasurement, relative_spread
from nni_latency.runtimes.protocol import ALLOCATORS, PROTOCOLS, MeasurementProtocol
from nni_latency.runtimes.torch import timing
from nni_latency.runtimes.torch.device import resolve_device, resolve_dtype

FAST = dict(min_run_time=0.01, max_run_time=0.05, retries=0)
HAS_GPU = torch.cuda.is_available()


def _tiny_conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())


# (measure_latency keyword arguments, expected protocol, expected copies: exact int or a predicate)
PROTOCOL_CASES = {
    "rotate_default": (dict(), "rotate", lambda copies: copies >= 2),
    "rotate_small_working_set": (dict(working_set_mb=1e-6), "rotate", lambda copies: copies == 2),
    "rotate_capped_copies": (dict(working_set_mb=1024, max_copies=3), "rotate", lambda copies: copies == 3),
    "hot": (dict(protocol="hot"), "hot", lambda copies: copies == 1),
    "hot_default_allocator": (dict(protocol="hot", allocator="default"), "hot", lambda copies: copies == 1),
}


@pytest.mark.parametrize("options,protocol,copies_ok", PROTOCOL_CASES.values(), ids=PROTOCOL_CASES.keys())
def test_measure_latency_records_protocol_and_copies(options, protocol, copies_ok):
    measurement = measure_latency(_tiny_conv(), (1, 4, 8, 8), "cpu", **FAST, **options)
    assert isinstance(measurement, LatencyMeasurement)
    assert measurement.median_ms > 0
    assert measurement.iqr_ms >= 0
    assert measurement.repeats > 0
    assert isinstance(measurement.noisy, bool)
    assert measurement.protocol == protocol
    assert copies_ok(measurement.copies), measurement.copies
    assert set(measurement.to_dict()) == {"latency_ms", "median_ms", "mean_ms", "iqr_ms", "repeats", "noisy", "protocol", "copies",
                                          "times_ms"}
    assert measurement.latency_ms == measurement.median_ms  # the default protocol's statistic is the median


def test_the_protocols_quantile_is_the_latency():
    measurement = LatencyMeasurement(times_ms=(1.0, 2.0, 3.0, 4.0, 5.0), number_per_run=1, protocol="rotate",
                                     copies=1, quantile=0.25)
    assert measurement.latency_ms == pytest.approx(2.0) and measurement.median_ms == pytest.approx(3.0)


def test_measure_latency_with_several_inputs():
    class Add(nn.Module):
        def forward(self, a, b):
            return a + b

    measurement = measure_latency(Add(), [(1, 4, 8, 8), (1, 4, 8, 8)], "cpu", protocol="hot", **FAST)
    assert measurement.median_ms > 0 and measurement.copies == 1


def test_measure_latency_accepts_bf16_on_cpu():
    module = _tiny_conv()
    fp32 = measure_latency(module, (1, 4, 16, 16), "cpu", dtype="fp32", protocol="hot", **FAST)
    bf16 = measure_latency(module, (1, 4, 16, 16), "cpu", dtype="bf16", protocol="hot", **FAST)
    # the same module, timed: bf16 is of fp32's order (oneDNN emulates it without AVX512-BF16, 3-5x slower here),
    # not a constant, a failure turned into zero, or the time of a cast alone
    assert 0.1 < bf16.latency_ms / fp32.latency_ms < 50
    assert next(module.parameters()).dtype == torch.float32  # the caller's module was not cast


def test_thread_count_is_restored():
    original = torch.get_num_threads()
    torch.set_num_threads(3)  # differs from the threads measured with, so a leak would show
    try:
        measure_latency(_tiny_conv(), (1, 4, 8, 8), "cpu", threads=1, protocol="hot", **FAST)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(original)


@pytest.mark.parametrize("allocator,warns", [("steady", True), ("default", False)])
def test_measuring_never_enables_the_allocator_policy(allocator_never_enabled, allocator, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        measure_latency(_tiny_conv(), (1, 4, 8, 8), "cpu", protocol="hot", allocator=allocator, **FAST)
    messages = [str(w.message) for w in caught if issubclass(w.category, AllocatorWarning)]
    assert len(messages) == warns
    assert all("apply_allocator_policy" in m and "\n" not in m for m in messages)
    assert allocator_module.steady_allocator_state() is None


@pytest.mark.parametrize("allocator,calls", [("steady", 1), ("default", 0)])
def test_apply_allocator_policy_enables_what_the_protocol_asks_for(monkeypatch, allocator, calls):
    seen = []
    monkeypatch.setattr(allocator_module, "use_steady_allocator", lambda: seen.append(1) or True)
    apply_allocator_policy(MeasurementProtocol(allocator=allocator))
    assert len(seen) == calls


def test_steady_allocator_is_idempotent():
    first = use_steady_allocator()
    assert isinstance(first, bool)
    assert use_steady_allocator() is first
    assert allocator_module.steady_allocator_state() is first


@pytest.mark.parametrize("values, spread", [
    ((1.5, 1.75, 2.0, 2.25, 2.5), 0.25),  # median 2.0 ms, IQR 0.5 ms
    ((1.0, 1.5, 2.0), 0.5 / 1.5),  # three rounds: the IQR is half the range
    ((2.0,), 0.0),
    ((0.0, 0.0, 0.0), float("inf")),
], ids=["five", "three", "one", "zero_median"])
def test_relative_spread(values, spread):
    assert relative_spread(values) == pytest.approx(spread)
    assert LatencyMeasurement(values, 1, "hot", 1).relative_spread == pytest.approx(spread)


def test_merge_pools_the_runs_of_its_rounds():
    rounds = [LatencyMeasurement((1.0, 2.0), 10, "rotate", 4, quantile=0.25),
              LatencyMeasurement((3.0, 4.0, 5.0, 6.0), 1, "rotate", 4, quantile=0.25)]
    merged = LatencyMeasurement.merge(rounds)
    assert merged.times_ms == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0) and merged.repeats == 24
    assert merged.latency_ms == pytest.approx(2.25) and merged.median_ms == pytest.approx(3.5)
    assert merged.round_ms == pytest.approx((1.25, 3.75)) and merged.copies == 4 and merged.quantile == 0.25
    assert merged.to_dict()["rounds"] == 2 and "rounds" not in rounds[0].to_dict()


@pytest.mark.parametrize("round_times, noisy", [
    (((1.0, 1.01), (1.02, 1.0)), False),
    (((1.0, 1.01, 1.0), (1.5, 1.51, 1.5)), True),  # each round is tight, but the rounds disagree by 50%
], ids=["agree", "rounds_disagree"])
def test_a_merged_measurement_is_noisy_when_its_rounds_disagree(round_times, noisy):
    merged = LatencyMeasurement.merge([LatencyMeasurement(t, 1, "hot", 1, max_spread=0.1) for t in round_times])
    assert merged.noisy is noisy


def test_merging_nothing_is_a_value_error():
    with pytest.raises(ValueError, match="at least one round"):
        LatencyMeasurement.merge([])


@pytest.mark.parametrize("row, latency, repeats", [
    ({"latency_ms": 2.5, "times_ms": [2.0, 2.5, 3.0], "repeats": 30, "quantile": 0.5}, 2.5, 30),
    ({"latency_ms": 1.7, "repeats": 40, "noisy": False}, 1.7, 40),  # written before runs were kept
    ({"latency_ms": 1.7}, 1.7, 1),
], ids=["with_runs", "old_row", "bare"])
def test_a_row_on_disk_is_a_measurement_again(row, latency, repeats):
    measurement = LatencyMeasurement.from_dict(row)
    assert measurement.latency_ms == pytest.approx(latency) and measurement.repeats == repeats


def test_to_dict_and_from_dict_round_trip():
    measurement = LatencyMeasurement((1.0, 1.2, 1.1, 1.4), 5, "rotate", 3, max_spread=0.2, quantile=0.25)
    row = {**measurement.to_dict(), "max_spread": 0.2, "quantile": 0.25}  # the protocol's fields go with a row
    again = LatencyMeasurement.from_dict(row)
    assert again == measurement.__class__(**{**measurement.__dict__, "calls": 20})
    assert again.to_dict() == measurement.to_dict()


def test_measurement_keeps_raw_times_and_derives_its_statistics():
    measurement = LatencyMeasurement((1.0, 1.1, 1.2, 3.0), number_per_run=5, protocol="rotate", copies=2,
                                     max_spread=0.1)
    assert measurement.median_ms == pytest.approx(1.15)
    assert measurement.iqr_ms == pytest.approx(1.65 - 1.075)
    assert measurement.repeats == 20
    assert measurement.noisy  # IQR is half the median, over max_spread
    assert not LatencyMeasurement((1.0, 1.01, 1.02), 5, "rotate", 2, max_spread=0.1).noisy


# --- measuring leaves the caller's world alone

def _state(module: nn.Module) -> tuple:
    return (module.training, [(p.device, p.dtype, p.data_ptr()) for p in module.parameters()],
            [p.detach().clone() for p in module.parameters()])


@pytest.mark.parametrize("options", [dict(protocol="hot"), dict(protocol="rotate", working_set_mb=0.01),
                                     dict(protocol="hot", dtype="bf16")], ids=["hot", "rotate", "bf16"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_measuring_leaves_the_module_as_it_was(options, training):
    module = _tiny_conv().train(training)
    before = _state(module)
    measure_latency(module, (1, 4, 8, 8), "cpu", allocator="default", **FAST, **options)
    after = _state(module)
    assert after[:2] == before[:2]  # training flag; the same tensors on the same device, in the same dtype
    assert all(torch.equal(a, b) for a, b in zip(after[2], before[2]))


def test_measuring_leaves_the_random_state_alone():
    state = torch.get_rng_state()
    measure_latency(_tiny_conv(), (1, 4, 8, 8), "cpu", protocol="rotate", allocator="default", **FAST)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("flag", [False, True])
def test_cudnn_benchmark_is_restored_even_when_measuring_fails(monkeypatch, flag):
    # The CUDA branch sets the flag; without a GPU, moving the module there fails after it is set.
    monkeypatch.setattr(timing, "resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", flag)
    if not HAS_GPU:
        with pytest.raises((AssertionError, RuntimeError)):
            measure_latency(_tiny_conv(), (1, 4, 8, 8), "cpu", allocator="default", **FAST)
    else:
        measure_latency(_tiny_conv(), (1, 4, 8, 8), "cpu", allocator="default", **FAST)
    assert torch.backends.cudnn.benchmark is flag


@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")
def test_measuring_on_cuda_leaves_a_cpu_module_and_the_cudnn_flag_alone(monkeypatch):
    module = _tiny_conv().train()
    before = _state(module)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    measure_latency(module, (1, 4, 8, 8), "cuda", allocator="default", **FAST)
    assert torch.backends.cudnn.benchmark is False
    after = _state(module)
    assert after[:2] == before[:2] and all(torch.equal(a, b) for a, b in zip(after[2], before[2]))


def test_a_protocol_and_overrides():
    protocol = MeasurementProtocol(protocol="hot", allocator="default", min_run_time=0.01, max_run_time=0.05)
    measurement = measure_latency(_tiny_conv(), (1, 4, 8, 8), protocol, retries=0, threads=1)
    assert measurement.protocol == "hot" and measurement.copies == 1
    with pytest.raises(TypeError):
        measure_latency(_tiny_conv(), (1, 4, 8, 8), protocol, threads_=1)


BAD_OPTIONS = {
    "protocol": (dict(protocol="warm"), "unknown protocol 'warm': use one of " + ", ".join(PROTOCOLS)),
    "allocator": (dict(allocator="jemalloc"), "unknown allocator policy 'jemalloc': use one of "
                  + ", ".join(ALLOCATORS)),
    "dtype": (dict(dtype="int8"), "unknown dtype 'int8'"),
    "fp16_on_cpu": (dict(dtype="fp16"), "fp16 is not supported on cpu"),
    "device": (dict(device="tpu"), "unknown device 'tpu'"),
}


@pytest.mark.parametrize("options,message", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_options_are_one_line_value_errors(options, message):
    options = {"device": "cpu", **options}
    with pytest.raises(ValueError) as raised:
        measure_latency(_tiny_conv(), (1, 4, 8, 8), **FAST, **options)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("threads", [0, -2])
def test_non_positive_threads_is_a_value_error(threads):
    with pytest.raises(ValueError, match="threads") as raised:
        measure_latency(_tiny_conv(), (1, 4, 8, 8), "cpu", threads=threads, **FAST)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("device,expected", [("cpu", torch.device("cpu")), (torch.device("cpu"), torch.device("cpu"))],
                         ids=["text", "torch_device"])
def test_resolve_device_cpu(device, expected):
    assert resolve_device(device) == expected


@pytest.mark.parametrize("device,fragment", [("tpu", "unknown device 'tpu'"), ("meta", "'meta' is not supported"),
                                             ("cpu:x", "unknown device")], ids=["unknown", "meta", "garbage"])
def test_resolve_device_rejects_other_devices(device, fragment):
    with pytest.raises(ValueError, match=fragment):
        resolve_device(device)


@pytest.mark.skipif(HAS_GPU, reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_gpu_says_to_use_cpu(device):
    with pytest.raises(ValueError) as raised:
        resolve_device(device)
    message = str(raised.value)
    assert "no CUDA GPU" in message and "--device cpu" in message and "\n" not in message


@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")
def test_cuda_index_out_of_range():
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("dtype,expected", [("fp32", torch.float32), ("float32", torch.float32),
                                            ("bf16", torch.bfloat16), (torch.float32, torch.float32)],
                         ids=["fp32", "float32", "bf16", "torch_dtype"])
def test_resolve_dtype_on_cpu(dtype, expected):
    assert resolve_dtype(dtype, torch.device("cpu")) == expected


@pytest.mark.parametrize("dtype", ["fp16", "float16", torch.float16])
def test_fp16_is_refused_on_cpu(dtype):
    with pytest.raises(ValueError, match="fp16 is not supported on cpu"):
        resolve_dtype(dtype, torch.device("cpu"))


def test_fp16_is_allowed_on_cuda_devices():
    # Only the device type matters, so this runs without a GPU.
    assert resolve_dtype("fp16", torch.device("cuda")) == torch.float16


def test_rotated_copies_have_tensors_of_their_own_and_fill_the_working_set():
    from nni_latency.runtimes.torch.timing import clone_module as _clone
    from nni_latency.runtimes.torch.timing import replicas as _replicas

    block = nn.Sequential(nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
    copy_ = _clone(block)
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(block.state_dict().values(), copy_.state_dict().values()))
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), copy_(x))
    per_copy = sum(t.numel() * 4 for t in [*block.parameters(), *block.buffers(), x])
    rotate = MeasurementProtocol(protocol="rotate", working_set_mb=10 * per_copy / 2**20)
    replicas = _replicas(block, (x,), rotate, max_copies=32)
    assert len(replicas) == 10  # the working set alone decides the count (not the time the copies cost)
    assert len(_replicas(block, (x,), rotate.replace(working_set_mb=1000.0), max_copies=32)) == 32
    assert len(_replicas(block, (x,), rotate.replace(protocol="hot", working_set_mb=1000.0), max_copies=32)) == 1


class _Slow(nn.Module):
    """A call that takes longer than the whole timing budget (a network, timed whole)."""

    def forward(self, x):
        import time

        time.sleep(0.03)
        return x


def test_a_call_longer_than_the_budget_still_gets_three_runs():
    protocol = MeasurementProtocol(protocol="hot", min_run_time=0.001, max_run_time=0.01)
    measurement = measure_latency(_Slow(), (1, 4), protocol)
    assert len(measurement.times_ms) == 3
    assert all(t >= 30.0 for t in measurement.times_ms)


@pytest.mark.parametrize("allocator, device, preload, advised", [
    ("default", "cpu", "", True),
    ("steady", "cpu", "", False),
    ("default", "cpu", "/usr/lib/libjemalloc.so.2", False),
    ("default", "cuda", "", False),
], ids=["glibc", "steady", "jemalloc", "cuda"])
def test_allocator_advice_only_for_plain_glibc_on_cpu(monkeypatch, allocator, device, preload, advised):
    monkeypatch.setenv("LD_PRELOAD", preload)
    advice = allocator_advice(MeasurementProtocol(device=device, allocator=allocator))
    assert (advice is not None) is advised
    if advised:
        assert "35%" in advice and "LD_PRELOAD" in advice and "timing.allocator: steady" in advice
