"""The profiling suite: block sampling, resumable measurement into JSONL, loading datasets.

Measurement here goes through a fake ``measure`` callback, so no test depends on timing.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from nni_latency.files.fileio import read_jsonl
from nni_latency.fit.fitting import MIN_POINTS
from nni_latency.measure import allocator
from nni_latency.measure.allocator import AllocatorWarning
from nni_latency.profile import run as profiling
from nni_latency.profile.run import measure_specs
from nni_latency.rows.store import load_records
from nni_latency.runtimes.measurement import LatencyMeasurement
from nni_latency.runtimes.protocol import MeasurementProtocol
from nni_latency.runtimes.torch import timing
from nni_latency.runtimes.torch.counting import extract_features
from nni_latency.runtimes.torch.operators import FEATURE_NAMES
from nni_latency.suite.blocks import FAMILIES, BlockSpec
from nni_latency.suite.config import ProfileConfig, TimingConfig
from nni_latency.suite.sampling import sample_specs

PROTOCOL = {"device": "cpu", "threads": 1, "dtype": "fp32", "protocol": "rotate", "allocator": "steady"}


def _tiny_config(**changes) -> ProfileConfig:
    base = dict(count=8, channels=[8, 16], resolutions=[7, 14], extra_batch_share=0.0,
                timing=TimingConfig(min_run_time=0.01, max_run_time=0.05))
    return ProfileConfig(**(base | changes))


# ---- sampling

@pytest.mark.parametrize("count", [1, 5, 20, 100])
def test_sample_specs_honours_count_with_distinct_keys(count):
    specs = sample_specs(ProfileConfig(count=count))
    assert len(specs) == count
    assert len({spec.key for spec in specs}) == count


def test_sample_specs_is_deterministic_for_a_seed():
    config = ProfileConfig(count=30, seed=3)
    assert sample_specs(config) == sample_specs(ProfileConfig(count=30, seed=3))
    assert sample_specs(config) != sample_specs(ProfileConfig(count=30, seed=4))


@pytest.mark.parametrize("families,expected", [
    ({"basic": 1.0, "skip": 1.0, "mbconv": 0.0}, {"basic": 5, "skip": 5}),
    ({"mbconv": 3.0, "dw_separable": 1.0}, {"mbconv": 8, "dw_separable": 2}),
    ({"shuffle": 1.0}, {"shuffle": 10}),
], ids=["zero_weight_left_out", "weighted", "single_family"])
def test_sample_specs_allocates_families_by_weight(families, expected):
    specs = sample_specs(ProfileConfig(count=10, families=families))
    counts = {family: sum(spec.family == family for spec in specs) for family in {s.family for s in specs}}
    assert counts == expected


# Families whose shape the config alone decides (stems, heads and pools have their own rules).
CONFIGURED_FAMILIES = ("mbconv", "dw_separable", "basic", "bottleneck")


def test_sample_specs_stays_inside_the_configured_ranges():
    config = ProfileConfig(count=60, resolutions=[14, 28], kernels=[3, 5], strides=[1, 2], batch=2,
                           extra_batches=[4], extra_batch_share=0.5)
    specs = sample_specs(config)
    conv_specs = [spec for spec in specs if spec.family in CONFIGURED_FAMILIES]
    assert len(conv_specs) > 20
    assert {spec.resolution for spec in conv_specs} <= {14, 28}
    assert {spec.stride for spec in conv_specs} <= {1, 2}
    assert all(spec.stride == 1 for spec in conv_specs if spec.resolution == 14)  # no stride at the smallest map
    assert {spec.kernel for spec in conv_specs} <= {3, 5}
    assert {spec.batch for spec in specs} == {2, 4}
    assert {spec.act for spec in specs} <= set(config.activations)
    assert all(spec.family in config.families for spec in specs)


def test_sampled_tiny_suite_builds_and_runs():
    for spec in sample_specs(_tiny_config(count=12)):
        features = extract_features(spec.build(), spec.input_shape)
        assert features.uncovered == ()
        assert features.conv_ops + features.mem_ops > 0 or spec.family == "skip"


@pytest.mark.parametrize("families,message", [
    ({"mbconv": 1.0, "resnet": 1.0}, "unknown block family 'resnet'"),
    ({"mbconv": 0.0}, "at least one family a positive weight"),
], ids=["unknown_family", "all_zero"])
def test_sample_specs_rejects_bad_families(families, message):
    with pytest.raises(ValueError, match=message):
        sample_specs(ProfileConfig(families=families))


# ---- measuring with resume

class FakeMeasure:
    """A ``measure`` callback with deterministic latencies; raises KeyboardInterrupt after ``stop_after`` calls."""

    def __init__(self, stop_after: int | None = None):
        self.stop_after = stop_after
        self.shapes: list[tuple] = []

    def __call__(self, module, shape):
        if self.stop_after is not None and len(self.shapes) == self.stop_after:
            raise KeyboardInterrupt
        self.shapes.append(tuple(shape))
        return LatencyMeasurement(times_ms=(0.1 * len(self.shapes),), number_per_run=10, protocol="rotate", copies=2)


@pytest.fixture(scope="module")
def tiny_specs() -> list[BlockSpec]:
    return sample_specs(_tiny_config())


def _keys_in_file(path) -> list[str]:
    return [row["key"] for row in read_jsonl(path)]


def test_measure_specs_appends_every_row_with_its_protocol(tiny_specs, tmp_path):
    dataset = tmp_path / "microbench.jsonl"
    rows = measure_specs(tiny_specs, dataset, PROTOCOL, FakeMeasure(), progress=False)
    assert [row["key"] for row in rows] == [spec.key for spec in tiny_specs]
    assert _keys_in_file(dataset) == [spec.key for spec in tiny_specs]
    row = next(read_jsonl(dataset))
    assert row["spec"] == tiny_specs[0].to_dict()
    assert set(row["features"]) == set(FEATURE_NAMES)
    assert row["latency_ms"] == pytest.approx(0.1)
    assert {key: row[key] for key in PROTOCOL} == PROTOCOL
    assert {"iqr_ms", "noisy", "repeats", "copies", "times_ms"} <= set(row)


@pytest.mark.parametrize("interrupt_after", [0, 3, 7])
def test_interrupted_run_resumes_without_remeasuring(tiny_specs, tmp_path, interrupt_after):
    dataset = tmp_path / "microbench.jsonl"
    with pytest.raises(KeyboardInterrupt):
        measure_specs(tiny_specs, dataset, PROTOCOL, FakeMeasure(stop_after=interrupt_after), progress=False)
    measured_before = _keys_in_file(dataset) if dataset.exists() else []
    assert measured_before == [spec.key for spec in tiny_specs[:interrupt_after]]  # rows written as they go

    resumed = FakeMeasure()
    rows = measure_specs(tiny_specs, dataset, PROTOCOL, resumed, progress=False)

    remaining = tiny_specs[interrupt_after:]
    assert resumed.shapes == [spec.input_shape for spec in remaining]
    keys = _keys_in_file(dataset)
    assert len(keys) == len(set(keys)) == len(tiny_specs)
    assert sorted(row["key"] for row in rows) == sorted(spec.key for spec in tiny_specs)


def test_complete_dataset_measures_nothing(tiny_specs, tmp_path):
    dataset = tmp_path / "microbench.jsonl"
    measure_specs(tiny_specs, dataset, PROTOCOL, FakeMeasure(), progress=False)
    again = FakeMeasure()
    rows = measure_specs(tiny_specs[:4], dataset, PROTOCOL, again, progress=False)
    assert again.shapes == []
    assert [row["key"] for row in rows] == [spec.key for spec in tiny_specs[:4]]  # only the wanted rows


@pytest.mark.parametrize("key,value", [("threads", 2), ("device", "cuda:0"), ("dtype", "bf16"),
                                       ("protocol", "hot"), ("allocator", "default")])
def test_resume_with_another_protocol_is_refused(tiny_specs, tmp_path, key, value):
    dataset = tmp_path / "microbench.jsonl"
    measure_specs(tiny_specs[:2], dataset, PROTOCOL, FakeMeasure(), progress=False)
    with pytest.raises(ValueError) as raised:
        measure_specs(tiny_specs, dataset, PROTOCOL | {key: value}, FakeMeasure(), progress=False)
    message = str(raised.value)
    assert f"{key}={PROTOCOL[key]!r}" in message and repr(value) in message and "--output-dir" in message


def test_measuring_with_the_default_measure_leaves_the_allocator_policy_alone(tiny_specs, tmp_path,
                                                                             allocator_never_enabled):
    protocol = MeasurementProtocol(protocol="hot", min_run_time=0.01, max_run_time=0.02)
    with pytest.warns(AllocatorWarning):
        rows = measure_specs(tiny_specs[:1], tmp_path / "microbench.jsonl", protocol, progress=False)
    assert rows[0]["latency_ms"] > 0 and allocator.steady_allocator_state() is None


def test_building_blocks_leaves_the_callers_random_state_alone(tiny_specs, tmp_path):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    measure_specs(tiny_specs[:3], tmp_path / "microbench.jsonl", PROTOCOL, FakeMeasure(), progress=False)
    assert torch.equal(torch.get_rng_state(), state)


def test_resume_after_a_torn_write_keeps_the_file_loadable(tiny_specs, tmp_path):
    dataset = tmp_path / "microbench.jsonl"
    measure_specs(tiny_specs[:3], dataset, PROTOCOL, FakeMeasure(), progress=False)
    with open(dataset, "a", encoding="utf-8") as handle:
        handle.write('{"key": "' + tiny_specs[3].key + '", "spec": {"fam')  # killed mid-write
    measure_specs(tiny_specs, dataset, PROTOCOL, FakeMeasure(), progress=False)
    assert sorted(_keys_in_file(dataset)) == sorted(spec.key for spec in tiny_specs)


# ---- checking a configuration before measuring

BAD_CONFIGS = {
    "model_kind": (dict(model_kind="mlp"), {}, "unknown model kind 'mlp'"),
    "threads_argument": ({}, dict(threads=0), "threads must be at least 1, got 0"),
    "threads_in_config": (dict(threads=-1), {}, "threads must be at least 1, got -1"),
    "count": (dict(count=MIN_POINTS - 1), {}, f"count must be at least {MIN_POINTS}"),
    "batch": (dict(batch=0), {}, "batch sizes must be at least 1"),
    "extra_batches": (dict(extra_batches=[2, 0]), {}, "batch sizes must be at least 1"),
    "channels_length": (dict(channels=[8]), {}, "channels must be [low, high]"),
    "channels_order": (dict(channels=[32, 8]), {}, "channels must be [low, high]"),
    "resolutions_empty": (dict(resolutions=[]), {}, "resolutions must be positive"),
    "resolutions_zero": (dict(resolutions=[0, 7]), {}, "resolutions must be positive"),
    "protocol": (dict(timing=TimingConfig(protocol="warm")), {}, "timing.protocol must be one of"),
    "allocator": (dict(timing=TimingConfig(allocator="tcmalloc")), {}, "timing.allocator must be one of"),
    "run_times": (dict(timing=TimingConfig(min_run_time=0.5, max_run_time=0.1)), {}, "min_run_time <= max_run_time"),
    "fp16_on_cpu": (dict(dtype="fp16"), {}, "fp16 is not supported on cpu"),
}


@pytest.mark.parametrize("changes,arguments,message", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_run_profile_checks_the_config_before_measuring(tmp_path, monkeypatch, changes, arguments, message):
    monkeypatch.setattr(profiling, "measure_latency", lambda *a, **k: pytest.fail("measured a block"))
    config = _tiny_config(**({"count": max(MIN_POINTS, 14)} | changes))
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        profiling.run_profile(config, "cpu", tmp_path / "out", progress=False, **arguments)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "out").exists()


# ---- loading datasets

def _row(key: str, latency, features: dict | None = None) -> dict:
    features = features if features is not None else dict.fromkeys(FEATURE_NAMES, 1.0)
    return {"key": key, "latency_ms": latency, "features": features, **PROTOCOL}


def _write_jsonl(path, rows, tail: str = ""):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + tail, encoding="utf-8")
    return path


def test_load_records_drops_non_finite_and_non_positive_rows_with_a_warning(tmp_path):
    rows = [_row("good1", 0.5), _row("nan", math.nan), _row("inf", math.inf), _row("neg_inf", -math.inf),
            _row("zero", 0.0), _row("negative", -1.0), _row("text", "fast"), _row("none", None), _row("good2", 2)]
    path = _write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.warns(UserWarning, match="dropped 7 row"):
        records = load_records(path)
    assert [r["key"] for r in records] == ["good1", "good2"]


def test_load_records_tolerates_a_truncated_last_line(tmp_path, caplog):
    path = _write_jsonl(tmp_path / "data.jsonl", [_row("a", 1.0), _row("b", 2.0)], tail='{"key": "c", "lat')
    records = load_records(path)
    assert [r["key"] for r in records] == ["a", "b"]
    assert "incomplete line(s) (3)" in caplog.text


def test_load_records_skips_a_torn_middle_line_with_a_warning(tmp_path, caplog):
    # A resumed run appends after a torn line, so torn lines are not only ever the last one.
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(_row("a", 1.0)) + "\n{broken\n" + json.dumps(_row("b", 1.0)) + "\n")
    assert [r["key"] for r in load_records(path)] == ["a", "b"]
    assert "incomplete line(s) (2)" in caplog.text


def test_load_records_rejects_a_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(_row("a", 1.0)) + "\n[1, 2]\n")
    with pytest.raises(ValueError, match="line 2 is not a JSON object"):
        load_records(path)


def test_load_records_of_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*nni-latency profile"):
        load_records(tmp_path / "absent.jsonl")


def test_rows_from_an_older_feature_set_are_recounted_from_their_spec(tmp_path):
    spec = BlockSpec("mbconv", 8, 16, 7, expansion=3)
    old = _row(spec.key, 1.0, features={"acts": 1.0}) | {"spec": spec.to_dict()}
    (record,) = load_records(_write_jsonl(tmp_path / "data.jsonl", [old]))
    assert record["features"] == extract_features(spec.build(), spec.input_shape).as_dict()


def test_rows_without_features_or_spec_are_an_error(tmp_path):
    path = _write_jsonl(tmp_path / "data.jsonl", [_row("lonely", 1.0, features={"acts": 1.0})])
    with pytest.raises(ValueError, match="'lonely' lacks features and a block spec"):
        load_records(path)


def test_every_family_can_be_sampled():
    assert set(FAMILIES) == {spec.family for spec in sample_specs(ProfileConfig(
        count=len(FAMILIES), families=dict.fromkeys(FAMILIES, 1.0)))}
