"""YAML configs as dataclasses: unknown and mistyped keys, wrong types, the nested timing section,
``--set`` overrides, invalid YAML and the packaged configs."""

from __future__ import annotations

import pytest

from nni_latency.files.config import apply_overrides, config_from_dict, config_to_dict, load_config, packaged_config
from nni_latency.model.regressors import MODEL_KINDS
from nni_latency.runtimes.protocol import ALLOCATORS, PROTOCOLS
from nni_latency.suite.blocks import FAMILIES
from nni_latency.suite.config import ProfileConfig, TimingConfig


def _write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _one_line_error(path, **kwargs) -> str:
    with pytest.raises(ValueError) as raised:
        load_config(path, ProfileConfig, **kwargs)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_config_file_becomes_nested_dataclasses(tmp_path):
    path = _write(tmp_path, "count: 20\nchannels: [8, 64]\nmax_mflops: 100\ntiming:\n  protocol: hot\n"
                            "  min_run_time: 0.01\n")
    config = load_config(path, ProfileConfig)
    assert config.count == 20 and config.channels == [8, 64]
    assert config.max_mflops == 100.0 and isinstance(config.max_mflops, float)  # an int is a valid float
    assert isinstance(config.timing, TimingConfig)
    assert config.timing.protocol == "hot" and config.timing.min_run_time == 0.01
    assert config.timing.max_run_time == TimingConfig().max_run_time  # unset keys keep their defaults
    assert config.seed == ProfileConfig().seed


@pytest.mark.parametrize("text", ["", "# only a comment\n", "timing:\n"], ids=["empty", "comment", "empty_timing"])
def test_empty_config_and_sections_give_defaults(tmp_path, text):
    assert load_config(_write(tmp_path, text), ProfileConfig) == ProfileConfig()


UNKNOWN_KEYS = {
    "typo_top_level": ("cuont: 5\n", ["config.cuont", "did you mean 'count'"]),
    "typo_nested": ("timing:\n  protocl: hot\n", ["config.timing.protocl", "did you mean 'protocol'"]),
    "typo_channels": ("chanels: [8, 16]\n", ["config.chanels", "did you mean 'channels'"]),
    "unrelated_key": ("zzzz: 1\n", ["config.zzzz", "known keys:", "count", "timing"]),
    "unrelated_nested_key": ("timing:\n  qqqq: 1\n", ["config.timing.qqqq", "known keys:", "protocol"]),
}


@pytest.mark.parametrize("text,fragments", UNKNOWN_KEYS.values(), ids=UNKNOWN_KEYS.keys())
def test_unknown_keys_are_named_with_a_suggestion(tmp_path, text, fragments):
    path = _write(tmp_path, text)
    message = _one_line_error(path)
    assert str(path) in message and "unknown key" in message
    for fragment in fragments:
        assert fragment in message


WRONG_TYPES = {
    "int_as_text": ("count: many\n", "config.count must be int, got 'many'"),
    "int_as_float": ("count: 1.5\n", "config.count must be int, got 1.5"),
    "int_as_bool": ("count: true\n", "config.count must be int, got True"),
    "float_as_bool": ("max_mflops: yes\n", "config.max_mflops must be float, got True"),
    "str_as_int": ("dtype: 16\n", "config.dtype must be str, got 16"),
    "list_as_scalar": ("channels: 8\n", "config.channels must be a list, got 8"),
    "list_item": ("channels: [8, big]\n", "config.channels[1] must be int, got 'big'"),
    "mapping_as_list": ("families: [mbconv]\n", "config.families must be a mapping"),
    "mapping_value": ("families: {mbconv: lots}\n", "config.families.mbconv must be float, got 'lots'"),
    "section_as_scalar": ("timing: 5\n", "config.timing must be a mapping"),
    "nested_float": ("timing:\n  min_run_time: fast\n", "config.timing.min_run_time must be float, got 'fast'"),
    "top_level_list": ("- count: 5\n", "must be a mapping of keys to values"),
}


@pytest.mark.parametrize("text,fragment", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_wrong_types_are_one_line_errors(tmp_path, text, fragment):
    path = _write(tmp_path, text)
    message = _one_line_error(path)
    assert fragment in message
    assert str(path) in message


@pytest.mark.parametrize("text,line", [("count: [1, 2\n", 2), ("timing:\n  protocol: hot\n bad: 1\n", 3),
                                       ("count: 5\ncount2: @x\n", 2)],
                         ids=["unclosed_list", "bad_indent", "reserved_char"])
def test_invalid_yaml_names_the_file_and_line(tmp_path, text, line):
    path = _write(tmp_path, text)
    message = _one_line_error(path)
    assert "not valid YAML" in message and str(path) in message
    assert f"line {line}" in message


def test_missing_config_file(tmp_path):
    message = _one_line_error(tmp_path / "absent.yaml")
    assert "cannot be read" in message and "absent.yaml" in message


OVERRIDES = {
    "int": (["count=7"], lambda c: c.count == 7),
    "nested": (["timing.protocol=hot"], lambda c: c.timing.protocol == "hot"),
    "nested_float": (["timing.min_run_time=0.01"], lambda c: c.timing.min_run_time == 0.01),
    "list": (["channels=[8, 16]"], lambda c: c.channels == [8, 16]),
    "mapping_entry": (["families.mbconv=1.0"], lambda c: c.families["mbconv"] == 1.0 and "basic" in c.families),
    "later_wins": (["count=3", "count=4"], lambda c: c.count == 4),
    "value_with_equals": (["dtype=a=b"], lambda c: c.dtype == "a=b"),
}


@pytest.mark.parametrize("overrides,check", OVERRIDES.values(), ids=OVERRIDES.keys())
def test_overrides_apply_before_validation(tmp_path, overrides, check):
    path = _write(tmp_path, "count: 20\nfamilies: {mbconv: 0.5, basic: 0.5}\ntiming:\n  protocol: rotate\n")
    assert check(load_config(path, ProfileConfig, overrides))


def test_apply_overrides_builds_missing_sections_in_place():
    data = {"count": 1}
    result = apply_overrides(data, ["timing.protocol=hot", "seed=3"])
    assert result is data
    assert data == {"count": 1, "timing": {"protocol": "hot"}, "seed": 3}


OVERRIDE_ERRORS = {
    "no_equals": ("count", "must look like dotted.key=value"),
    "through_a_scalar": ("count.low=1", "'count' is not a section"),
}


@pytest.mark.parametrize("override,fragment", OVERRIDE_ERRORS.values(), ids=OVERRIDE_ERRORS.keys())
def test_malformed_overrides(override, fragment):
    with pytest.raises(ValueError, match=fragment):
        apply_overrides({"count": 5}, [override])


@pytest.mark.parametrize("override,fragment", [
    ("cuont=5", "did you mean 'count'"),
    ("timing.protocl=hot", "did you mean 'protocol'"),
    ("count=lots", "config.count must be int"),
    ("count=", "config.count must be int, got None"),
], ids=["typo", "nested_typo", "wrong_type", "empty_value"])
def test_overrides_are_validated_like_the_file(tmp_path, override, fragment):
    message = _one_line_error(_write(tmp_path, "count: 5\n"), overrides=[override])
    assert fragment in message


def test_config_from_dict_and_back():
    config = config_from_dict(ProfileConfig, {"count": 3, "timing": {"protocol": "hot"}})
    data = config_to_dict(config)
    assert data["count"] == 3 and data["timing"]["protocol"] == "hot"
    assert config_from_dict(ProfileConfig, data) == config


@pytest.mark.parametrize("name", ["profile_cpu.yaml", "profile_cuda.yaml"])
def test_packaged_profile_configs_load_and_name_valid_choices(name):
    config = load_config(packaged_config(name), ProfileConfig)
    assert set(config.families) <= set(FAMILIES)
    assert sum(config.families.values()) > 0
    assert config.model_kind in MODEL_KINDS
    assert config.timing.protocol in PROTOCOLS and config.timing.allocator in ALLOCATORS
    assert config.dtype in ("fp32", "fp16", "bf16")
    assert config.count >= 20 and config.threads >= 1
    low, high = config.channels
    assert 0 < low < high


def test_unknown_packaged_config():
    with pytest.raises(ValueError, match="no packaged config named 'nope.yaml'"):
        packaged_config("nope.yaml")
