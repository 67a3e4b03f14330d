"""The measurement protocol: its checks, the one reader (new and older layouts), and the same fields in every
JSONL row and in the device model a profiling run writes."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_PROFILE_COUNT

from nni_latency.files.fileio import read_jsonl
from nni_latency.model.model import LatencyModel
from nni_latency.profile import run as profiling
from nni_latency.runtimes.measurement import LatencyMeasurement
from nni_latency.runtimes.protocol import (LEGACY_VECTOR_WIDTH, TIMING_FIELDS, MeasurementProtocol, detect_vector_width,
                                           protocol_of)
from nni_latency.suite.config import ProfileConfig, TimingConfig

BAD_FIELDS = {
    "device": (dict(device="tpu"), "unknown device 'tpu'"),
    "threads": (dict(threads=0), "threads must be a positive integer, got 0"),
    "threads_bool": (dict(threads=True), "threads must be a positive integer"),
    "batch": (dict(batch=-1), "batch must be a positive integer, got -1"),
    "dtype": (dict(dtype="int8"), "unknown dtype 'int8'"),
    "protocol": (dict(protocol="warm"), "unknown protocol 'warm': use one of rotate, hot"),
    "allocator": (dict(allocator="jemalloc"), "unknown allocator policy 'jemalloc'"),
    "working_set": (dict(working_set_mb=0), "working_set_mb must be a positive number"),
    "run_times": (dict(min_run_time=2.0, max_run_time=1.0), "min_run_time (2.0) must be at most max_run_time"),
    "vector_width": (dict(vector_width=0), "vector_width must be a positive integer"),
}


@pytest.mark.parametrize("fields,message", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_bad_fields_are_one_line_value_errors_naming_the_field(fields, message):
    with pytest.raises(ValueError) as raised:
        MeasurementProtocol(**fields)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_protocol_is_frozen_and_hashable():
    protocol = MeasurementProtocol(vector_width=16)
    with pytest.raises(AttributeError):
        protocol.threads = 2
    assert len({protocol, MeasurementProtocol(vector_width=16)}) == 1


@pytest.mark.parametrize("device,expected", [("cuda", 8), ("cuda:1", 8), ("cpu", detect_vector_width("cpu"))])
def test_vector_width_is_detected_for_the_device(device, expected):
    assert MeasurementProtocol(device=device).vector_width == expected
    assert detect_vector_width("cpu") in (4, 8, 16)


def test_round_trip_through_a_dict_and_json():
    protocol = MeasurementProtocol(device="cuda:0", threads=2, dtype="bf16", batch=8, protocol="hot",
                                   allocator="default", working_set_mb=8, min_run_time=0.01, max_run_time=0.5,
                                   max_spread=0.2, vector_width=8)
    assert MeasurementProtocol.from_dict(json.loads(json.dumps(protocol.to_dict()))) == protocol


# (id, a row or device section in an older layout, the fields it reads as)
OLDER_LAYOUTS = {
    "row": ({"key": "b", "latency_ms": 1.0, "device": "cpu", "threads": 1, "dtype": "fp32", "protocol": "rotate",
             "allocator": "steady", "device_name": "Xeon", "spec": {"batch": 4}},
            dict(device="cpu", threads=1, batch=4, vector_width=LEGACY_VECTOR_WIDTH)),
    "model": ({"name": "Xeon", "type": "cuda", "threads": 2, "dtype": "fp16", "protocol": "hot", "batch": 8,
               "config": {"timing": {"working_set_mb": 256, "min_run_time": 0.05, "max_run_time": 0.5}}},
              dict(device="cuda", threads=2, dtype="fp16", batch=8, protocol="hot", working_set_mb=256.0,
                   min_run_time=0.05, max_run_time=0.5, vector_width=LEGACY_VECTOR_WIDTH)),
    "empty": ({}, dict(device="cpu", threads=1, batch=1, vector_width=LEGACY_VECTOR_WIDTH)),
}


@pytest.mark.parametrize("data,expected", OLDER_LAYOUTS.values(), ids=OLDER_LAYOUTS.keys())
def test_older_layouts_read_with_fallbacks(data, expected):
    protocol = protocol_of(data)
    assert {name: getattr(protocol, name) for name in expected} == expected


def test_protocol_of_a_model_and_of_a_protocol():
    protocol = MeasurementProtocol(threads=3, vector_width=8)
    model = LatencyModel(None, device={"name": "x", **protocol.to_dict()})
    assert protocol_of(model) == protocol == model.protocol and protocol_of(protocol) is protocol
    assert LatencyModel(None).protocol is None and LatencyModel(None).vector_width == LEGACY_VECTOR_WIDTH


def test_with_timing_takes_the_timing_budget_only():
    timing = TimingConfig(protocol="hot", working_set_mb=4, min_run_time=0.01, max_run_time=0.05, max_spread=0.2)
    protocol = MeasurementProtocol(vector_width=16).with_timing(timing)
    assert {name: getattr(protocol, name) for name in TIMING_FIELDS} == {
        "working_set_mb": 4.0, "min_run_time": 0.01, "max_run_time": 0.05, "max_spread": 0.2}
    assert protocol.protocol == "rotate"  # what to measure is not the timing budget


def test_profiling_writes_the_same_protocol_into_every_row_and_the_model(tmp_path, monkeypatch):
    def fake_measure(module, shape, protocol, **options):
        return LatencyMeasurement((0.1 + 1e-3 * sum(shape),), 10, protocol.protocol, 2)

    monkeypatch.setattr(profiling, "measure_latency", fake_measure)
    config = ProfileConfig(count=TINY_PROFILE_COUNT, channels=[8, 32], resolutions=[7, 14], batch=2,
                           timing=TimingConfig(protocol="hot", working_set_mb=4, min_run_time=0.01, max_run_time=0.05))
    result = profiling.run_profile(config, "cpu", tmp_path, threads=1, progress=False)
    expected = profiling.profile_protocol(config, "cpu", 1)
    rows = list(read_jsonl(tmp_path / "microbench.jsonl"))
    document = json.loads((tmp_path / "device_model.json").read_text())
    fields = expected.to_dict()
    assert all({name: row[name] for name in fields} == fields for row in rows)
    assert {name: document["device"][name] for name in fields} == fields
    assert {protocol_of(row) for row in rows} == {expected} == {protocol_of(result.model),
                                                                  LatencyModel.load(tmp_path / "device_model.json").protocol}
    assert expected.batch == 2 and expected.protocol == "hot" and expected.working_set_mb == 4.0
