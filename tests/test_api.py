"""The public API: every exported name resolves, and importing the command line (or the package) stays cheap."""

from __future__ import annotations

import subprocess
import sys

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


# (module, former name, "module:new name")
MOVED = {
    "analyze": ("nni_latency", "analyze", "nni_latency:analyze_network"),
    "Report": ("nni_latency", "Report", "nni_latency:LatencyReport"),
    "analysis.plot_report": ("nni_latency.analysis", "plot_report", "nni_latency.plots:plot_report"),
    "analysis.classify_bound": ("nni_latency.analysis", "classify_bound", "nni_latency.model:dominant_role"),
    "microbench.cross_validated_predictions": ("nni_latency.microbench", "cross_validated_predictions",
                                               "nni_latency.fit:cross_validated_predictions"),
    "metrics.json_safe": ("nni_latency.metrics", "json_safe", "nni_latency.fileio:json_safe"),
    "profiler.ChoiceRecord": ("nni_latency.nas.profiler", "ChoiceRecord", "nni_latency.nas.lut:LutRow"),
}


@pytest.mark.parametrize("module,name,target", MOVED.values(), ids=MOVED.keys())
def test_former_names_still_work_with_a_deprecation_warning(module, name, target):
    import importlib

    new_module, new_name = target.split(":")
    with pytest.warns(DeprecationWarning, match=f"use {new_module}.{new_name}"):
        value = getattr(importlib.import_module(module), name)
    assert value is getattr(importlib.import_module(new_module), new_name)
