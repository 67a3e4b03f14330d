"""The drift probe: recording it when profiling, the drifted / not-drifted decision and its warning, and models
without a probe; fake timings throughout (each probe block gets a latency from a table, scaled per round)."""

from __future__ import annotations

import logging

import pytest

from nni_latency import DriftWarning
from nni_latency.files.config import load_config
from nni_latency.measure import drift
from nni_latency.measure.drift import DRIFT_FLOOR, PROBE_BLOCKS, PROBE_ROUNDS, check_drift, probe_protocol, record_probe
from nni_latency.profile import run as profiling
from nni_latency.runtimes.measurement import LatencyMeasurement
from nni_latency.runtimes.protocol import MeasurementProtocol
from nni_latency.suite.config import ProfileConfig

# ms of each probe block (by its input shape) on the fake device
BASE_MS = {spec.input_shape: ms for spec, ms in zip(PROBE_BLOCKS, (1.0, 2.0, 0.5))}


class FakeDevice:
    """Times the probe blocks from ``BASE_MS`` x ``scale``, with the round's factor from ``round_factors``."""

    def __init__(self, scale: float = 1.0, round_factors=(1.0, 1.0, 1.0)):
        self.scale, self.round_factors, self.calls = scale, round_factors, 0

    def __call__(self, module, shape):
        factor = self.round_factors[(self.calls // len(PROBE_BLOCKS)) % len(self.round_factors)]
        self.calls += 1
        return LatencyMeasurement((BASE_MS[tuple(shape)] * self.scale * factor,), 1, "hot", 1)


@pytest.fixture
def probed_model(synthetic_model):
    synthetic_model.device["probe"] = record_probe(synthetic_model.protocol, measure=FakeDevice())
    return synthetic_model


def test_the_probe_records_blocks_total_spread_and_when():
    device = FakeDevice(round_factors=(1.0, 1.1, 0.9))
    probe = record_probe(MeasurementProtocol(), measure=device)
    assert device.calls == len(PROBE_BLOCKS) * PROBE_ROUNDS
    assert [b["key"] for b in probe["blocks"]] == [s.key for s in PROBE_BLOCKS]
    assert [b["latency_ms"] for b in probe["blocks"]] == [1.0, 2.0, 0.5]  # the median of each block's rounds
    assert probe["total_ms"] == pytest.approx(3.5)
    assert probe["round_total_ms"] == pytest.approx([3.5, 3.85, 3.15])
    assert probe["spread"] == pytest.approx(0.35 / 3.5)  # IQR / median of the rounds' totals
    assert probe["rounds"] == PROBE_ROUNDS and probe["when"] and probe["protocol"]["protocol"] == "hot"


def test_the_probe_has_a_short_budget_of_its_own():
    protocol = probe_protocol(MeasurementProtocol(min_run_time=0.1, max_run_time=0.6, threads=2))
    assert protocol.min_run_time <= 0.05 and protocol.max_run_time <= 0.1 and protocol.rounds == PROBE_ROUNDS
    assert protocol.threads == 2 and protocol.protocol == "hot"


# (id, scale now, round factors now, drifted, fragments of the message)
DECISIONS = [
    ("slower", 1.10, (1.0, 1.0, 1.0), True, ["runs 10.0% slower", "probe 3.500 ms then, 3.850 ms now",
                                             f"noise ±{100 * DRIFT_FLOOR:.1f}%"]),
    ("faster", 0.85, (1.0, 1.0, 1.0), True, ["runs 15.0% faster"]),
    ("within_floor", 1.03, (1.0, 1.0, 1.0), False, ["no drift beyond the noise", "+3.0%"]),
    # the rounds now spread by 15% (IQR / median of 1.0, 1.15, 0.85): a 10% change is within that noise
    ("within_noise", 1.10, (1.0, 1.15, 0.85), False, ["noise ±15.0%"]),
    ("beyond_noise", 1.40, (1.0, 1.15, 0.85), True, ["runs 40.0% slower", "noise ±15.0%"]),
]


@pytest.mark.parametrize("scale, factors, drifted, fragments", [c[1:] for c in DECISIONS],
                         ids=[c[0] for c in DECISIONS])
def test_drift_decision_and_message(probed_model, recwarn, scale, factors, drifted, fragments):
    check = check_drift(probed_model, measure=FakeDevice(scale, factors))
    assert check.drifted is drifted and check.ratio == pytest.approx(scale)
    assert all(fragment in check.message for fragment in fragments), check.message
    warned = [w for w in recwarn if issubclass(w.category, DriftWarning)]
    assert len(warned) == (1 if drifted else 0)
    if drifted:
        assert str(warned[0].message) == check.message
    data = check.to_dict()
    assert data["drifted"] is drifted and data["probe_then_ms"] == pytest.approx(3.5)
    assert [b["key"] for b in data["blocks"]] == [s.key for s in PROBE_BLOCKS]


def test_the_recorded_noise_counts_too(synthetic_model):
    synthetic_model.device["probe"] = record_probe(synthetic_model.protocol,
                                                   measure=FakeDevice(round_factors=(1.0, 1.2, 0.8)))
    check = check_drift(synthetic_model, measure=FakeDevice(1.15))
    assert not check.drifted and check.noise == pytest.approx(0.2)  # IQR / median of the recorded passes


def test_the_probe_is_retimed_as_recorded_whatever_the_callers_threads(probed_model, monkeypatch):
    seen = []

    def measure_latency(module, shape, protocol):
        seen.append(protocol)
        return LatencyMeasurement((BASE_MS[tuple(shape)],), 1, "hot", 1)

    monkeypatch.setattr(drift, "measure_latency", measure_latency)
    check_drift(probed_model, probed_model.protocol.replace(threads=4))
    assert {p.threads for p in seen} == {1} and {p.protocol for p in seen} == {"hot"}


def test_a_model_without_a_probe_is_skipped_with_a_debug_log(synthetic_model, caplog):
    with caplog.at_level(logging.DEBUG, logger="nni_latency.measure.drift"):
        assert check_drift(synthetic_model, measure=pytest.fail) is None
    assert "no drift probe" in caplog.text


def test_a_probe_of_another_device_type_is_not_compared(probed_model):
    assert check_drift(probed_model, MeasurementProtocol(device="cuda"), measure=pytest.fail) is None


def test_run_profile_records_the_probe_in_the_model(tiny_profile_config, tmp_path, monkeypatch):
    from conftest import synthetic_latency

    from nni_latency.runtimes.torch.counting import extract_features

    def fake(module, shape, protocol=None, **_):
        return LatencyMeasurement((synthetic_latency(extract_features(module, shape)),), 1, "rotate", 1)

    monkeypatch.setattr(profiling, "measure_latency", fake)
    monkeypatch.setattr(drift, "measure_latency", fake)
    config = load_config(tiny_profile_config, ProfileConfig)
    result = profiling.run_profile(config, "cpu", tmp_path, progress=False)
    probe = result.model.device["probe"]
    assert [b["key"] for b in probe["blocks"]] == [s.key for s in PROBE_BLOCKS] and probe["spread"] == 0.0
    from nni_latency.model.model import LatencyModel

    saved = LatencyModel.load(tmp_path / "device_model.json")
    assert saved.device["probe"]["total_ms"] == pytest.approx(probe["total_ms"])
    assert saved.device["batches"] == sorted({r["spec"]["batch"] for r in result.records})
    check = check_drift(saved, measure=lambda module, shape: fake(module, shape))
    assert check.ratio == pytest.approx(1.0) and not check.drifted

