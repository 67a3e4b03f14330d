"""A rerun of ``nni-latency profile`` into a folder that holds measurements: the same config resumes, another
config is refused with the difference named and leaves the old model untouched, ``--force`` keeps the old
files aside; and what a run writes is readable by others (0644 under umask 022), as ``open()`` would make it.

Timing is replaced by the synthetic device of ``conftest`` (no test here measures anything).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import stat
from types import SimpleNamespace

import pytest

from nni_latency import plots
from nni_latency.cli.dispatch import main
from nni_latency.files import fileio
from nni_latency.files.fileio import atomic_write_json, atomic_write_text
from nni_latency.plots import pyplot, save_figure
from nni_latency.profile import run as profiling
from nni_latency.runtimes.measurement import LatencyMeasurement


def _run(argv: list[str]) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


@pytest.fixture
def synthetic_device(monkeypatch):
    """Blocks "measure" at once, at a latency that grows with their size; the fit plot (seconds of matplotlib,
    checked elsewhere) is skipped. Returns the list of measured shapes."""
    measured = []

    def measure(module, shape, protocol, **options):
        measured.append(shape)
        latency = 0.01 + 1e-7 * math.prod(shape) * sum(p.numel() for p in module.parameters()) ** 0.5
        return LatencyMeasurement((latency,) * 3, 1, protocol.protocol, 1)

    monkeypatch.setattr(profiling, "measure_latency", measure)
    monkeypatch.setattr(profiling, "record_probe", lambda protocol: {})
    monkeypatch.setattr(plots, "plot_fit", lambda *args, **kwargs: [])
    return measured


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _profile(config, output_dir, *extra) -> SimpleNamespace:
    return _run(["profile", "--config", str(config), "--output-dir", str(output_dir), "--no-progress", *extra])


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_rerun_with_another_config_is_refused_and_the_model_kept(tiny_profile_config, tmp_path, synthetic_device,
                                                                    umask_022):
    first = _profile(tiny_profile_config, tmp_path)
    assert first.code == 0, first.err
    assert "(this run took 14 measurements and reused 0 from the dataset; 1 round(s) per block)" in first.out
    model, dataset = (tmp_path / "device_model.json").read_bytes(), (tmp_path / "microbench.jsonl").read_bytes()
    for name in ("device_model.json", "microbench.jsonl"):
        assert _mode(tmp_path / name) == 0o644, name

    for override, key in (("seed=1", "seed=0"), ("count=12", "count=14"), ("families={basic: 1.0}", "families")):
        refused = _profile(tiny_profile_config, tmp_path, "--set", override)
        assert refused.code == 2, refused.out
        line = refused.err.strip()
        assert "\n" not in line and key in line and "--force" in line and "new --output-dir" in line
    assert (tmp_path / "device_model.json").read_bytes() == model
    assert (tmp_path / "microbench.jsonl").read_bytes() == dataset

    measured = len(synthetic_device)
    again = _profile(tiny_profile_config, tmp_path)  # the same config resumes, measuring nothing
    assert again.code == 0, again.err
    assert "(this run took 0 measurements and reused 14 from the dataset; 1 round(s) per block)" in again.out and len(synthetic_device) == measured


def test_a_rerun_of_an_interrupted_run_with_another_config_is_refused(tiny_profile_config, tmp_path,
                                                                      synthetic_device):
    assert _profile(tiny_profile_config, tmp_path).code == 0
    (tmp_path / "device_model.json").unlink()  # as if the first run had stopped before fitting
    refused = _profile(tiny_profile_config, tmp_path, "--set", "seed=5")
    assert refused.code == 2 and "this config does not sample" in refused.err and "--force" in refused.err


def test_force_starts_afresh_and_keeps_the_old_files_aside(tiny_profile_config, tmp_path, synthetic_device):
    assert _profile(tiny_profile_config, tmp_path).code == 0
    old_model = (tmp_path / "device_model.json").read_bytes()
    forced = _profile(tiny_profile_config, tmp_path, "--set", "seed=1", "--force")
    assert forced.code == 0, forced.err
    assert "(this run took 14 measurements and reused 0 from the dataset; 1 round(s) per block)" in forced.out
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name.count(".") == 2)
    assert [name.split(".")[0] for name in kept] == ["device_model", "microbench"], kept
    assert (tmp_path / kept[0]).read_bytes() == old_model


# ---- file modes: what open() would give

def _figure(path):
    plt = pyplot()
    figure = plt.figure()
    save_figure(figure, path, (".png",))
    plt.close(figure)


WRITERS = {
    "json": lambda path: atomic_write_json(path, {"a": 1}),
    "text": lambda path: atomic_write_text(path, "lut\n"),
    "figure": _figure,
}


@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_new_files_get_0644_under_umask_022(write, tmp_path, umask_022):
    path = tmp_path / "result.png"
    write(path)
    assert _mode(path) == 0o644


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("{}")
    os.chmod(path, 0o600)
    atomic_write_json(path, {"a": 1})
    assert _mode(path) == 0o600


def test_no_temporary_file_is_left_when_writing_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.os, "replace", lambda *a: (_ for _ in ()).throw(PermissionError(13, "denied", a[0])))
    with pytest.raises(PermissionError) as raised:
        atomic_write_json(tmp_path / "lut.json", {})
    assert raised.value.filename == str(tmp_path / "lut.json")
    assert list(tmp_path.iterdir()) == []


def test_refitting_another_kind_keeps_the_profiled_model_aside(tiny_profile_config, tmp_path, synthetic_device):
    assert _profile(tiny_profile_config, tmp_path).code == 0
    profiled = (tmp_path / "device_model.json").read_bytes()
    refit = _run(["fit", str(tmp_path / "microbench.jsonl"), "--kind", "flops", "--no-plot"])
    assert refit.code == 0, refit.err
    assert "kept the previous op_linear model (14 points) as" in refit.out
    kept = [p for p in tmp_path.glob("device_model.*.json")]
    assert len(kept) == 1 and kept[0].read_bytes() == profiled
