"""Every bad input on the command line ends in one line, ``nni-latency CMD: error: ...``, exit status 2 and no
traceback; warnings reach the user as one line each; and nothing is measured on the way.

The table is what a new user tried (issue 13): each case is argv (``{tmp}``-style placeholders are the files
of the ``files`` fixture) -> a word the single error line must hold.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from nni_latency.cli.dispatch import main
from nni_latency.errors import describe_error
from nni_latency.files import fileio
from nni_latency.profile import run as profiling


def _run(argv: list[str]) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exited:  # argparse's usage errors
            code = exited.code
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


@pytest.fixture(autouse=True)
def no_measuring(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a block was measured")

    monkeypatch.setattr(profiling, "measure_latency", refuse)


def _model_dict(synthetic_model) -> dict:
    return json.loads(json.dumps(synthetic_model.to_dict()))


def _damaged(data: dict, value: float) -> dict:
    """``data`` with its first weight set to ``value``."""
    weights = dict(data["parameters"]["weights"])
    weights[next(iter(weights))] = value
    return {**data, "parameters": {**data["parameters"], "weights": weights}}


@pytest.fixture
def files(tmp_path, synthetic_model, synthetic_dataset, tiny_profile_config):
    """Everything the table points at, written once per test into ``tmp_path``."""
    specs, rows, latencies = synthetic_dataset
    paths = {"tmp": tmp_path, "config": tiny_profile_config}
    data = _model_dict(synthetic_model)

    def write(name: str, text: str | bytes) -> None:
        paths[name] = tmp_path / name
        (paths[name].write_bytes if isinstance(text, bytes) else paths[name].write_text)(text)

    write("model.json", json.dumps(data))
    write("nan.json", json.dumps(_damaged(data, float("nan"))))
    write("inf.json", json.dumps(_damaged(data, float("inf"))))
    write("negative.json", json.dumps(_damaged(data, -1e-3)))
    write("device.json", json.dumps({**data, "device": "not a dict"}))
    write("ranges.json", json.dumps({**data, "feature_ranges": {"acts": ["x", 1]}}))
    write("latin1.json", json.dumps(data).replace('"notes": ""', '"notes": "caf\u00e9"').encode("latin-1"))
    write("deep.json", "{\"a\": " * 5_000 + "1" + "}" * 5_000)
    write("deep.yaml", "a: " + "[" * 1_500 + "]" * 1_500 + "\n")  # past the recursion limit, parsed in seconds
    write("afile", "")
    rows_jsonl = [{"key": s.key, "spec": s.to_dict(), "features": r.as_dict(), "latency_ms": lat}
                  for s, r, lat in zip(specs, rows, latencies)]
    write("dataset.jsonl", "".join(json.dumps(r) + "\n" for r in rows_jsonl))
    write("nan.jsonl", "".join(json.dumps({**r, "latency_ms": float("nan")}) + "\n" for r in rows_jsonl[:3]))
    write("net.py", "from torch import nn\n\n"
                    "def tokens():\n    return nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16))\n")
    (tmp_path / "folder").mkdir()
    paths["folder"] = tmp_path / "folder"
    return paths


M = ["--model", "{model.json}"]
# id -> (argv, word in the one error line)
CASES = {
    # 1. exceptions that used to escape as tracebacks
    "fit-dataset-is-a-folder": (["fit", "{folder}"], "is a directory"),
    "evaluate-dataset-is-a-folder": (["evaluate", *M, "--dataset", "{folder}"], "is a directory"),
    "fit-output-is-a-folder": (["fit", "{dataset.jsonl}", "--output", "{folder}", "--no-plot"], "is a directory"),
    "analyze-json-is-a-folder": (["analyze", "zoo:resnet18", *M, "--json", "{folder}"], "is a directory"),
    "predict-model-is-a-folder": (["predict", "--model", "{folder}"], "is a directory"),
    "fit-output-under-a-file": (["fit", "{dataset.jsonl}", "--output", "{afile}/model.json", "--no-plot"],
                                "a file of that name is in the way"),
    "lut-space-arg-not-a-number": (["lut", *M, "--space", "fbnet", "--space-arg", "width_mult=abc",
                                    "--output-dir", "{tmp}/lut"], "must be a number"),
    "deeply-nested-json-model": (["predict", "--model", "{deep.json}"], "nested too deeply"),
    "deeply-nested-yaml-config": (["profile", "--config", "{deep.yaml}", "--output-dir", "{tmp}/p"],
                                  "nested too deeply"),
    "threads-100000": (["profile", "--config", "{config}", "--threads", "100000", "--output-dir", "{tmp}/p"],
                       "CPU(s) of this machine"),
    "analyze-threads-100000": (["analyze", "zoo:resnet18", *M, "--measure", "--threads", "100000"],
                               "CPU(s) of this machine"),
    "predict-shape-too-large-to-allocate": (["predict", *M, "--input-shape", "100000,3200,5600,5600"],
                                            "too large to run here"),
    # 3. models that load but would predict nonsense
    "model-nan-weight": (["predict", "--model", "{nan.json}"], "is nan, expected a finite number"),
    "model-inf-weight": (["predict", "--model", "{inf.json}"], "is inf, expected a finite number"),
    "model-negative-weight": (["predict", "--model", "{negative.json}"], "is -0.001, but every weight"),
    "model-device-not-a-dict": (["predict", "--model", "{device.json}"], "'device' must be an object"),
    "model-bad-feature-ranges": (["predict", "--model", "{ranges.json}"], "'feature_ranges.acts' must be"),
    "model-latin-1-byte": (["predict", "--model", "{latin1.json}"], "is not UTF-8"),
    # 6. everything else a user hits
    "count-100000000": (["profile", "--config", "{config}", "--set", "count=100000000", "--output-dir", "{tmp}/p"],
                        "count must be at most"),
    "predict-rank-3-for-a-block": (["predict", *M, "--input-shape", "1,32,56"], "the block takes 1,32,56,56"),
    "predict-tokens-for-an-image-network": (["predict", *M, "zoo:resnet18", "--input-shape", "1,49,64"],
                                            "ResNet takes an image 1,3,224,224"),
    "predict-image-for-a-token-network": (["predict", *M, "{net.py}:tokens", "--input-shape", "1,3,32,32"],
                                          "takes tokens B,N,16"),
    "analyze-tokens-for-an-image-network": (["analyze", "zoo:resnet18", *M, "--input-shape", "1,49,64"],
                                            "ResNet takes an image 1,3,224,224"),
    "predict-stride-0": (["predict", *M, "--stride", "0"], "--stride must be at least 1, got 0"),
    "predict-c-in-0": (["predict", *M, "--c-in", "0"], "--c-in must be at least 1, got 0"),
    "predict-groups-do-not-divide": (["predict", *M, "--groups", "3"], "--groups 3 does not divide --c-in 32"),
    "predict-even-kernel": (["predict", *M, "--kernel", "4"], "--kernel 4 is even"),
    "fit-all-nan-rows": (["fit", "{nan.jsonl}", "--no-plot"], "all 3 row(s) have a NaN"),
    "unknown-zoo-network": (["analyze", "zoo:deit_tny", *M], "did you mean 'deit_tiny'"),
    "target-without-input-shape": (["analyze", "{net.py}:tokens", *M], "give --input-shape"),
    "usage-error-is-one-line": (["predict", *M, "--c-in", "x"], "invalid int value: 'x'"),
    "missing-required-option": (["analyze", "zoo:resnet18"], "required: --model"),
}


def _argv(argv: list[str], files: dict) -> list[str]:
    def fill(part: str) -> str:
        for name, path in files.items():
            part = part.replace("{" + name + "}", str(path))
        return part

    return [fill(part) for part in argv]


@pytest.mark.parametrize("argv, word", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_and_exit_2(argv, word, files):
    result = _run(_argv(argv, files))
    lines = [line for line in result.err.splitlines() if ": warning: " not in line]  # tiny models extrapolate
    assert result.code == 2, result.out + result.err
    assert len(lines) == 1 and lines[0].startswith(f"nni-latency {argv[0]}: error: "), result.err
    assert word in lines[0]
    assert "Traceback" not in result.err + result.out


def test_an_error_about_a_destination_names_it_not_the_temporary_file(files, monkeypatch):
    def denied(*args, dir=None, prefix="", suffix="", **kwargs):
        raise PermissionError(13, "Permission denied", os.path.join(dir, f"{prefix}x1y2z3{suffix}"))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", denied)
    out = files["tmp"] / "report.json"
    result = _run(["analyze", "zoo:resnet18", "--model", str(files["model.json"]), "--input-shape", "1,3,32,32",
                   "--json", str(out)])
    assert result.code == 2
    assert f"permission denied on '{out}'" in result.err
    assert ".tmp" not in result.err and "x1y2z3" not in result.err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_destination_is_one_line(files):
    locked = files["tmp"] / "locked"
    locked.mkdir(mode=0o555)
    result = _run(["fit", str(files["dataset.jsonl"]), "--output", str(locked / "m.json"), "--no-plot"])
    assert result.code == 2 and "permission denied" in result.err and str(locked) in result.err


def _unwritable(kind: str, tmp_path) -> str:
    """A destination the OS refuses, whatever the permission bits say: under /proc (root too), or (not root) in a
    read-only folder."""
    if kind == "proc":
        if not os.path.isdir("/proc/self"):
            pytest.skip("needs Linux /proc")
        return "/proc/nni-latency-test/report"
    if os.name != "posix" or os.geteuid() == 0:
        pytest.skip("root may write into a read-only folder")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    return str(locked / "report")


@pytest.mark.parametrize("flag, suffix", [("--json", ".json"), ("--plot", ".png")], ids=["json", "plot"])
@pytest.mark.parametrize("kind", ["proc", "read_only_folder"])
def test_an_unwritable_report_is_refused_before_the_report_is_printed(files, flag, suffix, kind):
    """The campaign's case: analyze printed the whole report, then failed to write it."""
    where = _unwritable(kind, files["tmp"]) + suffix
    result = _run(["analyze", "zoo:resnet18", "--model", str(files["model.json"]), "--input-shape", "1,3,32,32",
                   flag, where])
    lines = [line for line in result.err.splitlines() if ": warning: " not in line]
    assert result.code == 2 and len(lines) == 1, result.err
    if kind == "proc":
        assert f"{flag} {where!r} cannot be written" in lines[0] and "choose a location you may write" in lines[0]
    else:
        assert f"permission denied on '{Path(where).parent}'" in lines[0]
    assert not result.out  # nothing computed, nothing printed


@pytest.mark.parametrize("error, word", [
    (MemoryError(), "ran out of memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried"),
     "ran out of memory"),
    (RuntimeError("could not create a primitive\nException raised from ..."), "could not create a primitive"),
    (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
    (IsADirectoryError(21, "Is a directory", "/x/out"), "'/x/out' is a directory"),
    (FileExistsError(17, "File exists", "/x/afile"), "cannot create directory '/x/afile'"),
    (PermissionError(13, "Permission denied", "/x/r.png"), "permission denied on '/x/r.png'"),
    (OSError(28, "No space left on device", "/x/m.json"), "no space left"),
    (KeyError("weights"), "unexpected KeyError"),
], ids=["memory", "allocation", "torch-runtime", "recursion", "directory", "file-exists", "permission", "no-space",
        "a-bug"])
def test_every_exception_is_described_in_one_line(error, word):
    text = describe_error(error)
    assert word in text and "\n" not in text


# ---- warnings reach the command line, one line each

def test_fit_says_which_rows_it_dropped(files):
    rows = files["dataset.jsonl"].read_text().splitlines()
    rows[0] = json.dumps({**json.loads(rows[0]), "latency_ms": float("nan")})
    files["dataset.jsonl"].write_text("\n".join(rows) + "\n")
    result = _run(["fit", str(files["dataset.jsonl"]), "--output", str(files["tmp"] / "refit.json"), "--no-plot"])
    assert result.code == 0, result.err
    assert "nni-latency fit: warning: " in result.err and "dropped 1 row(s) with NaN" in result.err


def test_predict_warns_about_an_extrapolation(files):
    result = _run(["predict", "--model", str(files["model.json"]), "--family", "conv_bn_relu", "--c-in", "512",
                   "--c-out", "512", "--kernel", "7", "--resolution", "28"])
    assert result.code == 0, result.err
    warning = [line for line in result.err.splitlines() if "warning:" in line]
    assert len(warning) == 1 and "extrapolation" in warning[0] and warning[0].startswith("nni-latency predict: ")


def test_a_block_too_large_to_run_is_counted_on_meta_tensors(files):
    result = _run(["predict", "--model", str(files["model.json"]), "--family", "conv_bn_relu", "--c-in", "1024",
                   "--c-out", "1024", "--kernel", "7", "--resolution", "4096", "--json"])
    assert result.code == 0, result.err
    assert "counted on meta tensors" in result.err
    assert json.loads(result.out)["features"]["flops"] == 2.0 * 1024 * 1024 * 49 * 4096 ** 2


# ---- help texts

@pytest.mark.parametrize("command", ["profile", "fit", "predict", "evaluate", "analyze", "lut", "search"])
def test_help_shows_each_default_once_and_never_none(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    for default in ("cpu", "runs/profile", "mbconv"):
        assert text.count(f"(default: {default}) (default: {default})") == 0


def test_every_predict_option_has_help():
    from nni_latency.cli.dispatch import build_parser

    predict = build_parser()._subparsers._group_actions[0].choices["predict"]
    assert all(action.help for action in predict._actions), [a.dest for a in predict._actions if not a.help]
