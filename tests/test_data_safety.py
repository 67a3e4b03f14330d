"""No good file destroyed, no incompatible rows pooled, one writer per folder (issue 20).

The table is what a user may do by mistake: argv (``{name}`` placeholders are the files of the ``files``
fixture) -> the word its one-line refusal holds, and the files that must be byte-identical afterwards.
Timing is replaced by a synthetic device: nothing here measures anything.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from nni_latency import plots
from nni_latency.cli.dispatch import main
from nni_latency.files.config import apply_overrides, find_config
from nni_latency.files.locking import folder_lock
from nni_latency.files.outputs import file_kind
from nni_latency.profile import run as profiling
from nni_latency.rows.check import check_one_protocol, select_rows
from nni_latency.runtimes.measurement import LatencyMeasurement


def _run(argv: list[str]) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exited:
            code = exited.code
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


@pytest.fixture(autouse=True)
def synthetic_device(monkeypatch):
    """Blocks "measure" at once; the fit plot (seconds of matplotlib, checked elsewhere) is skipped."""
    def measure(module, shape, protocol, **options):
        latency = 0.01 + 1e-7 * math.prod(shape) * sum(p.numel() for p in module.parameters()) ** 0.5
        return LatencyMeasurement((latency,) * 3, 1, protocol.protocol, 1)

    monkeypatch.setattr(profiling, "measure_latency", measure)
    monkeypatch.setattr(profiling, "record_probe", lambda protocol: {})
    monkeypatch.setattr(plots, "plot_fit", lambda *args, **kwargs: [])


@pytest.fixture
def files(tmp_path, synthetic_model, synthetic_dataset, tiny_profile_config):
    specs, rows, latencies = synthetic_dataset
    paths = {"tmp": tmp_path, "config": tiny_profile_config}
    data = json.loads(json.dumps(synthetic_model.to_dict()))

    def write(name: str, text: str) -> None:
        paths[name] = tmp_path / name
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_text(text)

    measured = [{"key": s.key, "spec": s.to_dict(), "features": r.as_dict(), "latency_ms": lat, "threads": 1,
                 "device_name": "synthetic"} for s, r, lat in zip(specs, rows, latencies)]
    write("model.json", json.dumps(data, indent=2))
    write("another_model.json", json.dumps(data, indent=2))
    write("rows.jsonl", "".join(json.dumps(r) + "\n" for r in measured))
    write("mixed.jsonl", "".join(json.dumps({**r, "threads": 1 + i % 2}) + "\n" for i, r in enumerate(measured)))
    write("report.json", json.dumps({"network": "x", "blocks": []}))
    weights = dict(data["parameters"]["weights"])
    weights[next(iter(weights))] = None
    write("null.json", json.dumps({**data, "parameters": {**data["parameters"], "weights": weights}}))
    write("nodevice.json", json.dumps({key: value for key, value in data.items() if key != "device"}))
    write("dup.yaml", "seed: 0\ncount: 14\ncount: 20\n")
    write("afile", "")
    write("net.py", "from torch import nn\n\ndef tiny():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\n")
    write("multi.py", "from torch import nn\n\n"
                      "class Two(nn.Module):\n"
                      "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(16, 8)\n"
                      "    def forward(self, x, y):\n        return self.fc(x) + self.fc(y)\n\n"
                      "class Batch(nn.Module):\n"
                      "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(16, 8)\n"
                      "    def forward(self, batch: dict):\n        return self.fc(batch['tokens'])\n")
    write("other/microbench.jsonl", "".join(json.dumps({**r, "device_name": "Another CPU @ 1 GHz"}) + "\n"
                                            for r in measured[:3]))
    return paths


def _fill(argv: list[str], files: dict) -> list[str]:
    def fill(part: str) -> str:
        for name, path in files.items():
            part = part.replace("{" + name + "}", str(path))
        return part
    return [fill(part) for part in argv]


M = ["--model", "{model.json}"]
NET = ["{net.py}:tiny", "--input-shape", "1,3,8,8"]
# id -> (argv, word in the one error line, files that must be byte-identical afterwards)
REFUSED = {
    "fit-output-is-its-dataset": (["fit", "{rows.jsonl}", "--output", "{rows.jsonl}", "--no-plot"],
                                  "is also this command's dataset", ["rows.jsonl"]),
    "fit-output-over-a-report": (["fit", "{rows.jsonl}", "--output", "{report.json}", "--no-plot"],
                                 "holds a JSON report", ["report.json"]),
    "fit-rows-of-two-thread-counts": (["fit", "{mixed.jsonl}", "--output", "{tmp}/m.json", "--no-plot"],
                                      "fit --only threads=1", ["mixed.jsonl"]),
    "fit-only-matches-nothing": (["fit", "{mixed.jsonl}", "--only", "threads=8", "--no-plot"],
                                 "keeps no row", ["mixed.jsonl"]),
    "analyze-json-is-its-model": (["analyze", *NET, *M, "--json", "{model.json}"], "is also this command's --model",
                                  ["model.json"]),
    "analyze-json-over-rows": (["analyze", *NET, *M, "--json", "{rows.jsonl}"], "holds a JSONL file of measured rows",
                               ["rows.jsonl"]),
    "analyze-plot-over-a-model": (["analyze", *NET, *M, "--plot", "{another_model.json}"], "holds a device model",
                                  ["another_model.json"]),
    "analyze-plot-is-unwritable": (["analyze", *NET, *M, "--plot", "{afile}/x.png"], "a file of that name", []),
    "analyze-too-large-to-run": (["analyze", "zoo:resnet18", *M, "--input-shape", "1,3,20000,20000"],
                                 "too large for analyze", []),
    "profile-resumes-another-machine": (["profile", "--config", "{config}", "--output-dir", "{tmp}/other",
                                         "--no-progress"], "was measured on 'Another CPU @ 1 GHz'",
                                        ["other/microbench.jsonl"]),
    "profile-config-has-a-duplicate-key": (["profile", "--config", "{dup.yaml}", "--output-dir", "{tmp}/p"],
                                           "duplicate key 'count' at line 3", ["dup.yaml"]),
    "set-value-yaml-cannot-parse": (["profile", "--config", "{config}", "--set", "seed=*x", "--output-dir", "{tmp}/p"],
                                    "seed must be int, got '*x'", []),
    "model-null-weight": (["predict", "--model", "{null.json}"], "is null, expected a finite number", ["null.json"]),
    "input-shape-negative-attached": (["predict", *M, "--input-shape=-1,3,8,8"], "give positive integers", []),
    "forward-takes-two-inputs": (["predict", *M, "{multi.py}:Two", "--input-shape", "1,4,16"],
                                 "forward(x, y) takes 2 inputs: give one shape per input, separated by ';'", []),
    "forward-takes-a-dict": (["predict", *M, "{multi.py}:Batch", "--input-shape", "1,4,16"],
                             "forward(batch) takes a dict", []),
    "input-shape-negative-separate": (["predict", *M, "--input-shape", "-1,3,8,8"], "give positive integers", []),
}


@pytest.mark.parametrize("argv, word, kept", REFUSED.values(), ids=REFUSED.keys())
def test_a_mistake_is_refused_in_one_line_and_the_good_file_kept(argv, word, kept, files):
    before = {name: files[name].read_bytes() for name in kept}
    result = _run(_fill(argv, files))
    lines = [line for line in result.err.splitlines() if ": warning: " not in line]
    assert result.code == 2, result.out + result.err
    assert len(lines) == 1 and lines[0].startswith(f"nni-latency {argv[0]}: error: "), result.err
    assert word in lines[0]
    assert "Traceback" not in result.err + result.out
    assert result.out == ""  # refused before any work: no report printed, then failed
    assert {name: files[name].read_bytes() for name in kept} == before


def test_fit_only_selects_one_part_of_a_mixture(files):
    result = _run(["fit", str(files["mixed.jsonl"]), "--only", "threads=2", "--output", str(files["tmp"] / "m.json"),
                   "--no-plot"])
    assert result.code == 0, result.err
    assert json.loads((files["tmp"] / "m.json").read_text())["metrics"]["points"] == 15


def test_profile_keeps_a_model_found_without_its_rows_before_measuring(files, monkeypatch):
    folder = files["tmp"] / "prof"
    folder.mkdir()
    original = files["model.json"].read_bytes()
    (folder / "device_model.json").write_bytes(original)

    def measuring_starts(*args, **kwargs):
        raise ValueError("measuring starts here")

    monkeypatch.setattr(profiling, "run_profile", measuring_starts)
    result = _run(["profile", "--config", str(files["config"]), "--output-dir", str(folder), "--no-progress"])
    assert "measuring starts here" in result.err
    kept = [p for p in folder.glob("device_model.*.json")]
    assert len(kept) == 1 and kept[0].read_bytes() == original


def test_analyze_keeps_the_report_it_replaces(files):
    report = files["tmp"] / "r.json"
    argv = _fill(["analyze", *NET, *M, "--json", str(report)], files)
    assert _run(argv).code == 0
    first = report.read_bytes()
    assert _run(argv).code == 0
    kept = list(files["tmp"].glob("r.*.json"))
    assert len(kept) == 1 and kept[0].read_bytes() == first


def test_a_model_without_device_warns_once_and_never_says_of_question_mark(files):
    result = _run(["predict", "--model", str(files["nodevice.json"])])
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if "provenance is unknown" in line]
    assert len(warnings) == 1 and warnings[0].startswith("nni-latency predict: warning: ")
    assert "model of ?" not in result.out and "unknown device" in result.out


# ---- one writer per folder

_HOLDER = textwrap.dedent("""
    import sys, time
    from nni_latency.files.locking import folder_lock
    with folder_lock(sys.argv[1], "nni-latency profile"):
        print("held", flush=True)
        time.sleep(600)
""")


def test_a_second_writer_is_refused_and_a_killed_one_does_not_block(files):
    folder = files["tmp"] / "busy"
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        result = _run(["profile", "--config", str(files["config"]), "--output-dir", str(folder), "--no-progress"])
        assert result.code == 2
        assert f"is being written by pid {child.pid} (`nni-latency profile`" in result.err
        assert len(result.err.splitlines()) == 1
    finally:
        child.kill()
        child.wait()
    with folder_lock(folder, "test"):  # the kernel released the killed holder's lock
        pass


def test_the_lock_is_released_after_an_error(tmp_path):
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path, "test"):
            raise RuntimeError("boom")
    with folder_lock(tmp_path, "test"):
        pass


# ---- rows that belong together

ROWS = {
    "one-protocol": ([{"threads": 1}, {"threads": 1}], None),
    "two-thread-counts": ([{"threads": 1}, {"threads": 2}], "threads=1 (1 rows), threads=2 (1 rows)"),
    "two-machines": ([{"device_name": "A"}, {"device_name": "B"}], "device_name=A"),
    "an-older-row-records-less": ([{"threads": 1}, {}], None),
    "two-vector-widths": ([{"vector_width": 8}, {"vector_width": 16}], "vector_width=8"),
    "two-model-batches": ([{"batch": 1}, {"batch": 8}], "--only batch=1"),
}


@pytest.mark.parametrize("rows, word", ROWS.values(), ids=ROWS.keys())
def test_rows_of_several_protocols_are_refused(rows, word):
    if word is None:
        check_one_protocol(rows, "d.jsonl")
        return
    with pytest.raises(ValueError, match="mixes rows") as error:
        check_one_protocol(rows, "d.jsonl")
    assert word in str(error.value)


def test_select_rows_keeps_one_part():
    rows = [{"threads": 1}, {"threads": 2}, {"threads": 1}]
    assert select_rows(rows, "threads=1") == [{"threads": 1}, {"threads": 1}]
    with pytest.raises(ValueError, match="must be FIELD=VALUE"):
        select_rows(rows, "colour=red")


# ---- values read from files and flags

OVERRIDES = {
    "dots-are-a-string": ("latency.device_model=...", {"latency": {"device_model": "..."}}),
    "an-alias-is-a-string": ("name=*x", {"name": "*x"}),
    "a-number": ("count=3", {"count": 3}),
    "a-list": ("sizes=[1, 2]", {"sizes": [1, 2]}),
    "null": ("seed=null", {"seed": None}),
    "a-path": ("latency.device_model=runs/p/device_model.json",
               {"latency": {"device_model": "runs/p/device_model.json"}}),
}


@pytest.mark.parametrize("override, expected", OVERRIDES.values(), ids=OVERRIDES.keys())
def test_a_set_value_yaml_cannot_parse_is_a_string(override, expected):
    assert apply_overrides({}, [override]) == expected


KINDS = {
    "model": (lambda files: files["model.json"], "model"),
    "rows": (lambda files: files["rows.jsonl"], "rows"),
    "report": (lambda files: files["report.json"], "report"),
    "yaml": (lambda files: files["dup.yaml"], "yaml"),
    "missing": (lambda files: files["tmp"] / "nothing.json", None),
}


@pytest.mark.parametrize("path, kind", KINDS.values(), ids=KINDS.keys())
def test_a_file_kind_is_read_from_its_content(path, kind, files):
    assert file_kind(path(files)) == kind


def test_lookup_tables_are_their_own_kind_and_lut_checks_its_destinations_first(files, tmp_path):
    from nni_latency.nas.lut import LutRow, write_lut_json, write_lut_txt

    row = LutRow(layer="stage1", candidate="k3_e1", module="stage1.0", input_shape=(1, 16, 8, 8),
                 output_shape=(1, 16, 8, 8), predicted_ms=0.1)
    write_lut_json(tmp_path / "lut.json", [row])
    write_lut_txt(tmp_path / "lut.txt", [row])
    assert file_kind(tmp_path / "lut.json") == "lut" and file_kind(tmp_path / "lut.txt") == "lut"
    # a model kept where lut writes its table is refused before the space is built, and stays as it was
    folder = tmp_path / "into"
    folder.mkdir()
    model = folder / "lut.json"
    model.write_bytes(files["model.json"].read_bytes())
    result = _run(["lut", "--model", str(model), "--space", "fbnet", "--output-dir", str(folder)])
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "lut.json" in result.err
    assert model.read_bytes() == files["model.json"].read_bytes()


def test_a_documented_config_path_works_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config("configs/testset_smoke.yaml").is_file()
    assert find_config("configs/no_such.yaml").name == "no_such.yaml"


# ---- Ctrl-C

def test_ctrl_c_is_one_line_exit_130_and_no_library_error(files, monkeypatch, caplog):
    from nni_latency.cli.commands import fit

    def interrupted(args):
        os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C, inside the command
        time.sleep(1)
        raise AssertionError("not interrupted")

    monkeypatch.setattr(fit, "run", interrupted)
    result = _run(["fit", str(files["rows.jsonl"])])
    assert result.code == 130
    assert result.err.splitlines() == ["nni-latency fit: interrupted; nothing was written: rerun the same command"]


def test_ctrl_c_turned_into_exit_by_lightning_is_still_an_interruption(files, monkeypatch, capfd):
    import logging

    from nni_latency.cli.commands import fit

    def interrupted(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            logging.getLogger("nni").error("Model 1 fails to be executed.")
            raise SystemExit(1) from None  # what Lightning's trainer does on Ctrl-C

    monkeypatch.setattr(fit, "run", interrupted)
    result = _run(["fit", str(files["rows.jsonl"])])
    assert result.code == 130 and "fails to be executed" not in result.err + capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---- benchmarks write only their own files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_CHECK = os.path.join(REPO, "benchmarks", "gpu_check.sh")


@pytest.mark.parametrize("flags", [["--device", "cpu", "--quick"], ["--device", "cpu"]], ids=["quick", "cpu"])
def test_a_cpu_gpu_check_refuses_to_write_into_docs(flags, tmp_path):
    document = os.path.join(REPO, "docs", "BENCHMARKS.md")
    before = open(document, "rb").read()
    result = subprocess.run(["bash", GPU_CHECK, *flags, "--output-dir", str(tmp_path), "--document", document],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "does not write into docs/" in result.stderr
    assert open(document, "rb").read() == before


def test_a_quick_gpu_check_writes_its_figures_into_its_output_dir(tmp_path):
    child = subprocess.Popen(["bash", GPU_CHECK, "--device", "cpu", "--quick", "--output-dir", str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        line = next((line for line in child.stdout if line.startswith("gpu_check.sh: figures to")), "")
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert line.strip() == f"gpu_check.sh: figures to {tmp_path}/results and {tmp_path}/BENCHMARKS.md"


# ---- --set on the search config

SEARCH_SETS = {
    "another-space-drops-the-yaml-space-arguments": (["space.name=darts"], "darts", "width_mult", False),
    "a-typed-argument-of-the-new-space-stays": (["space.name=darts", "space.width=4"], "darts", "width", True),
    "the-same-space-keeps-them": (["space.input_size=16"], "fbnet", "width_mult", True),
}


@pytest.mark.parametrize("overrides, name, argument, present", SEARCH_SETS.values(), ids=SEARCH_SETS.keys())
def test_switching_the_space_from_the_command_line(overrides, name, argument, present):
    from nni_latency.search.config import load_search_config

    config = load_search_config(None, overrides)
    assert config.space.name == name and (argument in config.space.arguments) == present


@pytest.mark.parametrize("value", ["...", "*x"])
def test_a_search_model_path_yaml_cannot_parse_is_taken_as_given(value):
    from nni_latency.search.config import load_search_config

    assert load_search_config(None, [f"latency.device_model={value}"]).latency.device_model == value


def test_a_forward_of_two_inputs_takes_one_shape_per_input(files):
    result = _run(["predict", "--model", str(files["model.json"]), f"{files['multi.py']}:Two",
                   "--input-shape", "1,4,16;1,4,16"])
    assert result.code == 0, result.err
    assert "ms predicted" in result.out


# ---- honest counting

BRANCHES = {
    "same-path": (["conv", "relu", "add"], ["conv", "relu", "add"], None),
    "another-operator": (["conv", "relu", "add"], ["conv", "sigmoid", "add"], "call 2 is relu in one and sigmoid"),
    "an-early-exit": (["conv", "relu", "add"], ["conv"], "3 vs 1 calls; call 2 is relu in one and the end"),
}


@pytest.mark.parametrize("first, second, word", BRANCHES.values(), ids=BRANCHES.keys())
def test_a_data_dependent_forward_is_said_to_cover_the_branch_taken(first, second, word):
    from nni_latency.count.forward_checks import branch_note

    note = branch_note(first, second)
    if word is None:
        assert note is None
    else:
        assert word in note and "covers the branch this input took" in note and "\n" not in note
