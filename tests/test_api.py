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


def test_warning_classes_are_exported_so_they_can_be_filtered():
    for name in ("UncoveredOperatorWarning", "OutOfRangeWarning", "AllocatorWarning"):
        assert issubclass(getattr(nni_latency, name), UserWarning)


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no_such_name"):
        nni_latency.no_such_name


@pytest.mark.parametrize("statement", ["import nni_latency.cli.dispatch", "import nni_latency",
                                       "import nni_latency.cli.dispatch; nni_latency.cli.dispatch.build_parser()"],
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
    **{f"analysis.{name}": ("nni_latency.analysis.report", name, target) for name, target in {
        "analyze": "nni_latency.analysis.report:analyze_network", "Report": "nni_latency.analysis.report:LatencyReport",
        "plot_report": "nni_latency.plots:plot_report", "classify_bound": "nni_latency.model.terms:dominant_role",
        "FEATURE_ROLES": "nni_latency.model.terms:TERM_ROLES"}.items()},
    "metrics.json_safe": ("nni_latency.fit.metrics", "json_safe", "nni_latency.files.fileio:json_safe"),
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


# Every module of the flat layout, once: (former module, a name it held, where that name lives now)
MOVED_MODULES = {
    "analysis": ("nni_latency.analysis", "analyze_network", "nni_latency.analysis.report"),
    "blocks": ("nni_latency.blocks", "MBConv", "nni_latency.suite.blocks"),
    "cell_ops": ("nni_latency.cell_ops", "CELL_OPS", "nni_latency.suite.cell_ops"),
    "cli": ("nni_latency.cli", "main", "nni_latency.cli.dispatch"),
    "commands": ("nni_latency.commands.profile", "run", "nni_latency.cli.commands.profile"),
    "config": ("nni_latency.config", "ProfileConfig", "nni_latency.suite.config"),
    "coverage": ("nni_latency.coverage", "CoverageWarning", "nni_latency.model.coverage"),
    "dataset": ("nni_latency.dataset", "load_records", "nni_latency.rows.store"),
    "drift": ("nni_latency.drift", "check_drift", "nni_latency.measure.drift"),
    "evaluation": ("nni_latency.evaluation", "evaluate_model", "nni_latency.evaluate.blocks"),
    "features": ("nni_latency.features", "extract_features", "nni_latency.runtimes.torch.counting"),
    "fileio": ("nni_latency.fileio", "append_jsonl", "nni_latency.files.fileio"),
    "fit": ("nni_latency.fit", "fit_records", "nni_latency.fit.fitting"),
    "forward_checks": ("nni_latency.forward_checks", "branch_note", "nni_latency.count.forward_checks"),
    "hf_models": ("nni_latency.hf_models", "HFVision", "nni_latency.zoo.hf"),
    "hostload": ("nni_latency.hostload", "HostLoad", "nni_latency.measure.hostload"),
    "locking": ("nni_latency.locking", "folder_lock", "nni_latency.files.locking"),
    "meta_counting": ("nni_latency.meta_counting", "count_features", "nni_latency.runtimes.torch.meta"),
    "metrics": ("nni_latency.metrics", "error_summary", "nni_latency.fit.metrics"),
    "microbench": ("nni_latency.microbench", "run_profile", "nni_latency.profile.run"),
    "network": ("nni_latency.network", "select_blocks", "nni_latency.analysis.network"),
    "network_evaluation": ("nni_latency.network_evaluation", "evaluate_networks", "nni_latency.evaluate.networks"),
    "network_selection": ("nni_latency.network_selection", "select_networks", "nni_latency.evaluate.selection"),
    "op_classes": ("nni_latency.op_classes", "op_class_rows", "nni_latency.analysis.op_errors"),
    "op_timing": ("nni_latency.op_timing", "time_ops", "nni_latency.runtimes.torch.clock"),
    "operators": ("nni_latency.operators", "OP_CLASSES", "nni_latency.runtimes.torch.operators"),
    "outputs": ("nni_latency.outputs", "check_outputs", "nni_latency.files.outputs"),
    "parts": ("nni_latency.parts", "encoder_blocks", "nni_latency.analysis.parts"),
    "profiling": ("nni_latency.profiling", "device_description", "nni_latency.runtimes.torch.device"),
    "progress": ("nni_latency.progress", "progress_bar", "nni_latency.measure.progress"),
    "protocol": ("nni_latency.protocol", "MeasurementProtocol", "nni_latency.runtimes.protocol"),
    "quiet": ("nni_latency.quiet", "quiet_nni", "nni_latency.cli.quiet"),
    "regressors": ("nni_latency.regressors", "OperatorCostModel", "nni_latency.model.regressors"),
    "resume": ("nni_latency.resume", "set_aside", "nni_latency.files.fileio"),
    "rounds": ("nni_latency.rounds", "combine_rounds", "nni_latency.rows.store"),
    "rowcheck": ("nni_latency.rowcheck", "check_one_protocol", "nni_latency.rows.check"),
    "schema": ("nni_latency.schema", "check_envelope", "nni_latency.model.schema"),
    "suite": ("nni_latency.suite", "suite_specs", "nni_latency.suite.sampling"),
    "summary": ("nni_latency.summary", "format_profile_summary", "nni_latency.profile.summary"),
    "targets": ("nni_latency.targets", "load_network", "nni_latency.cli.targets"),
    "testset": ("nni_latency.testset", "generate_testset", "nni_latency.evaluate.testset"),
    "timing": ("nni_latency.timing", "measure_latency", "nni_latency.measure.latency"),
    "tokens": ("nni_latency.tokens", "TOKEN_FAMILIES", "nni_latency.suite.tokens"),
}
_STILL_PACKAGES = ("analysis", "cli", "fit", "suite")  # former modules that are packages of that name now


@pytest.mark.parametrize("former,name,home", MOVED_MODULES.values(), ids=MOVED_MODULES.keys())
def test_former_module_paths_still_import(former, name, home):
    from nni_latency.deprecation import MOVED_MODULES as moved

    stem = former.removeprefix("nni_latency.").partition(".")[0]
    if stem in _STILL_PACKAGES:  # the package keeps the name, no warning: its __init__ hands it on
        value = getattr(importlib.import_module(former), name)
    else:
        assert stem in moved
        moved_names = [former.rpartition(".")[0], former] if former.count(".") > 1 else [former]
        for moved_name in moved_names:
            sys.modules.pop(moved_name, None)
        with pytest.warns(DeprecationWarning) as caught:
            value = getattr(importlib.import_module(former), name)
        assert [str(w.message).partition(" moved to nni_latency.")[0] for w in caught] == moved_names
        for moved_name in moved_names:
            sys.modules.pop(moved_name, None)
    assert value is getattr(importlib.import_module(home), name)


def test_a_former_module_names_where_an_unknown_name_went():
    sys.modules.pop("nni_latency.timing", None)
    with pytest.warns(DeprecationWarning):
        former = importlib.import_module("nni_latency.timing")
    with pytest.raises(AttributeError, match="moved to nni_latency.measure.latency"):
        former.no_such_name
    sys.modules.pop("nni_latency.timing", None)


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
