"""The public API: every exported name resolves, and importing the command line (or the package) stays cheap."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

import nni_latency
import nni_latency.nas


@pytest.mark.parametrize("package", [nni_latency, nni_latency.nas], ids=["nni_latency", "nni_latency.nas"])
def test_every_exported_name_resolves(package):
    assert package.__all__ and all(getattr(package, name) is not None for name in package.__all__)
    assert set(package.__all__) <= set(dir(package))


def test_warning_classes_are_exported_so_they_can_be_filtered():
    for name in ("UncoveredOperatorWarning", "OutOfRangeWarning", "AllocatorWarning"):
        assert issubclass(getattr(nni_latency, name), UserWarning)


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no_such_name"):
        nni_latency.no_such_name


@pytest.mark.parametrize("statement", ["import nni_latency.cli", "import nni_latency",
                                       "import nni_latency.cli; nni_latency.cli.build_parser()"],
                         ids=["cli", "package", "parser"])
def test_importing_the_command_line_does_not_import_torch(statement):
    check = f"import sys; {statement}; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    assert nni_latency.__version__ == version("nni-latency")


# Every former name, once: (module, former name, "module:new name")
MOVED = {
    "analyze": ("nni_latency", "analyze", "nni_latency:analyze_network"),
    "Report": ("nni_latency", "Report", "nni_latency:LatencyReport"),
    **{f"analysis.{name}": ("nni_latency.analysis", name, target) for name, target in {
        "analyze": "nni_latency.analysis:analyze_network", "Report": "nni_latency.analysis:LatencyReport",
        "plot_report": "nni_latency.plots:plot_report", "classify_bound": "nni_latency.model:dominant_role",
        "FEATURE_ROLES": "nni_latency.model:TERM_ROLES"}.items()},
    # the profiling run and its rows moved out of microbench
    **{f"microbench.{name}": ("nni_latency.microbench", name, target) for name, target in {
        "run_profile": "nni_latency.profiling:run_profile", "ProfileResult": "nni_latency.profiling:ProfileResult",
        "measure_specs": "nni_latency.profiling:measure_specs",
        "profile_protocol": "nni_latency.profiling:profile_protocol",
        "validate_profile_config": "nni_latency.profiling:validate_profile_config",
        "device_description": "nni_latency.profiling:device_description",
        "MAX_COUNT": "nni_latency.profiling:MAX_COUNT",
        "load_records": "nni_latency.dataset:load_records", "recount_features": "nni_latency.dataset:recount_features",
        "has_current_features": "nni_latency.dataset:has_current_features",
        "sample_specs": "nni_latency.suite:sample_specs", "round_channels": "nni_latency.suite:round_channels",
        "measure_modules": "nni_latency.rounds:measure_modules", "MIN_POINTS": "nni_latency.fit:MIN_POINTS",
        "cross_validated_predictions": "nni_latency.fit:cross_validated_predictions",
        "cross_validated_metrics": "nni_latency.fit:cross_validated_metrics",
        "PROTOCOL_KEYS": "nni_latency.protocol:RESUME_FIELDS"}.items()},
    "metrics.json_safe": ("nni_latency.metrics", "json_safe", "nni_latency.fileio:json_safe"),
    "profiler.ChoiceRecord": ("nni_latency.nas.profiler", "ChoiceRecord", "nni_latency.nas.lut:LutRow"),
}


@pytest.mark.parametrize("module,name,target", MOVED.values(), ids=MOVED.keys())
def test_former_names_still_work_with_a_deprecation_warning(module, name, target):
    new_module, new_name = target.split(":")
    with pytest.warns(DeprecationWarning, match=f"use {new_module}.{new_name}"):
        value = getattr(importlib.import_module(module), name)
    assert value is getattr(importlib.import_module(new_module), new_name)
    with pytest.raises(DeprecationWarning):  # and pyproject's filters fail any other test that uses it
        getattr(importlib.import_module(module), name)


# Every former LatencyModel method, once: (former call, current call, what the warning says to use)
MOVED_METHODS = {
    "predict_one_row": (lambda model, rows: model.predict(rows[0]), lambda model, rows: model.predict_one(rows[0]),
                        "use predict_one"),
    "predict_many": (lambda model, rows: model.predict_many(rows), lambda model, rows: model.predict(rows),
                     r"use predict\(rows\)"),
    "breakdown_many": (lambda model, rows: model.breakdown_many(rows), lambda model, rows: model.breakdown(rows),
                       r"use breakdown\(rows\)"),
}


@pytest.mark.parametrize("former,current,fragment", MOVED_METHODS.values(), ids=MOVED_METHODS.keys())
def test_former_model_methods_still_work_with_a_deprecation_warning(former, current, fragment, synthetic_model,
                                                                     synthetic_dataset):
    _, rows, _ = synthetic_dataset
    with pytest.warns(DeprecationWarning, match=fragment):
        value = former(synthetic_model, rows)
    expected = current(synthetic_model, rows)
    assert type(value) is type(expected)
    if isinstance(expected, dict):
        assert value.keys() == expected.keys()
        value, expected = list(value.values()), list(expected.values())
    np.testing.assert_array_equal(value, expected)
    with pytest.raises(DeprecationWarning):  # and pyproject's filters fail any other test that uses it
        former(synthetic_model, rows)
