"""The device-model file: JSON round trip for every kind, plain JSON, atomic writes, and one-line errors
for every way a model file can be bad."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nni_latency.files import fileio
from nni_latency.model.model import LatencyModel
from nni_latency.model.regressors import MODEL_KINDS
from nni_latency.model.schema import SCHEMA_VERSION
from nni_latency.runtimes.torch.operators import FEATURE_NAMES

DEVICE = {"name": "test cpu", "type": "cpu", "threads": 1, "dtype": "fp32", "batch": 1, "protocol": "rotate"}


@pytest.fixture(params=list(MODEL_KINDS))
def model_of_each_kind(request, synthetic_dataset):
    _, rows, latencies = synthetic_dataset
    model = LatencyModel.fit(rows, latencies, kind=request.param, device=DEVICE, notes="fitted in a test")
    model.metrics = {"points": len(rows), "cv": {"mdape": 0.05}}
    return model, rows


def test_round_trip_keeps_predictions_and_metadata(model_of_each_kind, tmp_path):
    model, rows = model_of_each_kind
    path = tmp_path / "device_model.json"
    model.save(path)
    loaded = LatencyModel.load(path)

    assert loaded.kind == model.kind
    assert loaded.parameters == model.parameters
    assert loaded.device == model.device
    assert loaded.metrics == model.metrics
    assert loaded.notes == model.notes
    assert loaded.feature_ranges == model.feature_ranges
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))
    assert loaded.to_dict() == model.to_dict()


def test_the_file_is_plain_versioned_json(model_of_each_kind, tmp_path):
    model, _ = model_of_each_kind
    path = tmp_path / "model.json"
    model.save(path)
    raw = path.read_bytes()
    assert not raw.startswith(b"\x80")  # no pickle protocol header
    data = json.loads(raw.decode("utf-8"))  # strict JSON: NaN/Infinity would still parse, so check below
    assert data["format"] == "nni-latency/device-model"
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["unit"] == "ms" and data["kind"] == model.kind
    assert set(data["features"]) <= set(FEATURE_NAMES)
    assert "NaN" not in raw.decode() and "Infinity" not in raw.decode()


def test_dict_round_trip_without_a_file(model_of_each_kind):
    model, rows = model_of_each_kind
    again = LatencyModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(again.predict(rows), model.predict(rows))


def test_save_replaces_an_existing_file_whole_and_leaves_no_temp_files(synthetic_model, tmp_path):
    path = tmp_path / "device_model.json"
    path.write_text("x" * 100_000)  # longer than the model: a partial overwrite would leave a tail
    synthetic_model.save(path)
    assert json.loads(path.read_text())["kind"] == synthetic_model.kind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device_model.json"]


def test_failed_write_keeps_the_old_file_and_removes_the_temp_file(synthetic_model, tmp_path, monkeypatch):
    path = tmp_path / "device_model.json"
    synthetic_model.save(path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    synthetic_model.notes = "changed"
    with pytest.raises(OSError, match="disk full"):
        synthetic_model.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device_model.json"]


def test_save_creates_missing_parent_directories(synthetic_model, tmp_path):
    path = tmp_path / "a" / "b" / "model.json"
    synthetic_model.save(path)
    assert LatencyModel.load(path).kind == synthetic_model.kind


def test_nan_metrics_can_be_saved(synthetic_model, tmp_path):
    synthetic_model.metrics = {"cv": {"relative_linear": {"mdape_high": float("nan")}}}
    synthetic_model.save(tmp_path / "model.json")
    loaded = LatencyModel.load(tmp_path / "model.json")
    value = loaded.metrics["cv"]["relative_linear"]["mdape_high"]
    assert value is None or np.isnan(value)


def test_one_regime_two_regime_model_round_trips(tmp_path):
    rows = [{name: 0.0 for name in FEATURE_NAMES} | {"acts": 1e3 * i, "inp": 2e3 * i, "flops": 1e6 * i * i}
            for i in range(1, 21)]
    latencies = [1e-4 * r["acts"] + 1e-5 * r["inp"] + 1e-7 * r["flops"] + 0.1 for r in rows]
    model = LatencyModel.fit(rows, latencies, kind="two_regime")
    assert model.regressor.breakpoint_ == -np.inf  # no low regime
    model.save(tmp_path / "model.json")
    assert json.loads((tmp_path / "model.json").read_text())["parameters"]["breakpoint"] is None  # strict JSON
    loaded = LatencyModel.load(tmp_path / "model.json")
    assert loaded.regressor.breakpoint_ == -np.inf
    np.testing.assert_allclose(loaded.predict(rows), model.predict(rows))


def _valid(synthetic_model) -> dict:
    return json.loads(json.dumps(synthetic_model.to_dict()))


def _without(data: dict, key: str) -> dict:
    return {k: v for k, v in data.items() if k != key}


# name -> (what to write, given the valid dict; fragment of the expected message)
BAD_FILES = {
    "empty_file": (lambda d: "", "corrupt or truncated JSON"),
    "truncated": (lambda d: json.dumps(d)[: len(json.dumps(d)) // 2], "corrupt or truncated JSON"),
    "not_json": (lambda d: "kind: relative_linear\n", "corrupt or truncated JSON"),
    "json_list": (lambda d: "[1, 2, 3]", "not a device model"),
    "no_format": (lambda d: json.dumps(_without(d, "format")), "not an nni-latency device model"),
    "other_format": (lambda d: json.dumps(d | {"format": "onnx"}), "not an nni-latency device model"),
    "no_schema_version": (lambda d: json.dumps(_without(d, "schema_version")), "schema_version"),
    "newer_schema": (lambda d: json.dumps(d | {"schema_version": SCHEMA_VERSION + 1}), "upgrade nni-latency"),
    "other_unit": (lambda d: json.dumps(d | {"unit": "us"}), "unit 'us'"),
    "unknown_kind": (lambda d: json.dumps(d | {"kind": "mlp"}), "unknown model kind 'mlp'"),
    "no_parameters": (lambda d: json.dumps(_without(d, "parameters")), "'parameters' must be an object"),
    "parameters_missing_intercept": (lambda d: json.dumps(d | {"parameters": _without(d["parameters"], "intercept")}),
                                     "incomplete or invalid"),
    "parameters_missing_weight": (lambda d: json.dumps(d | {"parameters": d["parameters"] | {
        "weights": dict(list(d["parameters"]["weights"].items())[1:])}}), "incomplete or invalid"),
    "parameters_wrong_type": (lambda d: json.dumps(d | {"parameters": d["parameters"] | {"intercept": "fast"}}),
                              "incomplete or invalid"),
    "unknown_feature_range": (lambda d: json.dumps(d | {"feature_ranges": {"bogus": [0, 1]}}), "feature_ranges"),
    # Values, not only structure: each of these would load and then predict nonsense.
    "nan_weight": (lambda d: json.dumps(_weight(d, 0, float("nan"))), "parameters.weights.{0} is nan"),
    "inf_weight": (lambda d: json.dumps(_weight(d, 1, float("inf"))), "parameters.weights.{1} is inf"),
    "negative_inf_intercept": (lambda d: json.dumps(d | {"parameters": d["parameters"] | {"intercept": -1e999}}),
                               "parameters.intercept is -inf"),
    "negative_weight": (lambda d: json.dumps(_weight(d, 2, -2e-6)),
                        "weight '{2}' is -2e-06, but every weight of this kind is a non-negative cost"),
    "negative_intercept": (lambda d: json.dumps(d | {"parameters": d["parameters"] | {"intercept": -0.5}}),
                           "weight 'intercept' is -0.5"),
    "boolean_weight": (lambda d: json.dumps(_weight(d, 0, True)), "parameters.weights.{0} is true"),
    # Numbers must be JSON numbers, and a weight must name a feature: "0.5" used as 0.5 or a typo ignored would
    # predict something other than what the file says.
    "string_weight": (lambda d: json.dumps(_weight(d, 0, "0.5")), "weight {0} is '0.5' (str), not a number"),
    "string_intercept": (lambda d: json.dumps(d | {"parameters": d["parameters"] | {"intercept": "1e3"}}),
                         "intercept is '1e3' (str), not a number"),
    "unknown_weight": (lambda d: json.dumps(d | {"parameters": d["parameters"] | {
        "weights": d["parameters"]["weights"] | {"flopz": 1e-6}}}), "feature(s) this model does not have: flopz"),
    "device_not_a_dict": (lambda d: json.dumps(d | {"device": "not a dict"}), "'device' must be an object"),
    "device_bad_protocol": (lambda d: json.dumps(d | {"device": d["device"] | {"threads": "x"}}),
                            "'device' describes an invalid measurement protocol (threads"),
    "metrics_not_a_dict": (lambda d: json.dumps(d | {"metrics": [1]}), "'metrics' must be an object"),
    "range_not_numbers": (lambda d: json.dumps(d | {"feature_ranges": {"acts": ["x", 1]}}),
                          "'feature_ranges.acts' must be [min, max] of finite numbers"),
    "range_reversed": (lambda d: json.dumps(d | {"feature_ranges": {"acts": [5, 1]}}), "min <= max, got [5, 1]"),
    "range_not_a_pair": (lambda d: json.dumps(d | {"feature_ranges": {"acts": 3}}), "'feature_ranges.acts'"),
    "ranges_not_a_dict": (lambda d: json.dumps(d | {"feature_ranges": [1, 2]}), "'feature_ranges' must be an object"),
    "deeply_nested": (lambda d: '{"a": ' * 5000 + "1" + "}" * 5000, "nested too deeply"),
}


def _weight(data: dict, index: int, value) -> dict:
    """``data`` with its ``index``-th weight set to ``value`` (messages name it as ``{index}``)."""
    name = list(data["parameters"]["weights"])[index]
    return data | {"parameters": data["parameters"] | {"weights": data["parameters"]["weights"] | {name: value}}}


@pytest.mark.parametrize("make,fragment", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_model_files_give_a_one_line_value_error(make, fragment, synthetic_model, tmp_path):
    path = tmp_path / "device_model.json"
    path.write_text(make(_valid(synthetic_model)), encoding="utf-8")
    with pytest.raises(ValueError) as raised:
        LatencyModel.load(path)
    message = str(raised.value)
    assert fragment.format(*_valid(synthetic_model)["parameters"].get("weights", {})) in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_file_says_how_to_create_one(tmp_path):
    path = tmp_path / "nowhere.json"
    with pytest.raises(ValueError, match="no such file.*nni-latency profile") as raised:
        LatencyModel.load(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_a_directory_is_not_a_model_file(tmp_path):
    with pytest.raises(ValueError, match="cannot be read") as raised:
        LatencyModel.load(tmp_path)
    assert "\n" not in str(raised.value)


def test_older_files_without_optional_sections_load(synthetic_model):
    data = _valid(synthetic_model)
    for optional in ("feature_ranges", "device", "metrics", "notes", "features"):
        data.pop(optional)
    model = LatencyModel.from_dict(data, "old.json")
    assert model.kind == synthetic_model.kind and model.device == {} and model.feature_ranges == {}


def test_text_in_another_encoding_is_reported_as_such_naming_the_offset(tmp_path, synthetic_model):
    path = tmp_path / "device_model.json"
    text = json.dumps(_valid(synthetic_model) | {"notes": "mesur\u00e9 au caf\u00e9"}, ensure_ascii=False)
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError) as raised:
        LatencyModel.load(path)
    message = str(raised.value)
    assert "is not UTF-8 text (byte 0xe9 at offset" in message and "binary" not in message and "\n" not in message


def test_a_pickle_is_rejected_with_a_one_line_error_naming_the_file(tmp_path, synthetic_model):
    import pickle

    path = tmp_path / "model.json"
    path.write_bytes(pickle.dumps(_valid(synthetic_model)))
    with pytest.raises(ValueError) as raised:
        LatencyModel.load(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)
    assert "binary file" in str(raised.value)


@pytest.mark.parametrize("kind", ["two_regime", "flops"])
def test_kinds_that_allow_negative_coefficients_still_load_them(kind, synthetic_dataset):
    _, rows, latencies = synthetic_dataset
    data = json.loads(json.dumps(LatencyModel.fit(rows, latencies, kind=kind).to_dict()))
    first = next(iter(data["parameters"]))
    data["parameters"][first] = -abs(data["parameters"][first]) - 1e-3
    assert LatencyModel.from_dict(data).kind == kind
