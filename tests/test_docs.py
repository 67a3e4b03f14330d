"""Docs that run as written (issue 20): every shell command and Python block of README.md, docs/*.md and
examples/*/README.md is either run here, on a tiny profile written where the docs expect a model (``runs/cpu``),
or skipped for a reason named in ``BLOCKS``. A block the table does not know fails the test until it is
classified, so a new snippet in the docs is run (or its skip explained) from the day it is written.

A block's id is its file and its first line (a command: the whole command), which stays put when the text
around it changes.

Example outputs are checked too, so they cannot go stale: a fenced block whose first line is ``$ COMMAND`` shows
what COMMAND prints (the lines up to the next ``$ ``). The command is run on the tiny profile (an example of a
command too slow to run here is not allowed) and its output must have the example's structure: the
same first line and every other line of the example, once what depends on the machine and on the device model
is masked (``MASKS``: numbers, the machine's name, a row's rank and bound, the bottlenecks' names). Rows may come
in another order; ``...`` stands for any text, and a line that starts with ``...`` for lines left out.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nni_latency.cli.dispatch import main

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "examples").glob("*/README.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_SHELL = ("bash", "sh", "shell", "console", "")
_COMMANDS = ("nni-latency ", "python ", "python3 ", "bash ", "pip ")

RUN = "run"
SLOW = "slow"  # a real profile, a test set or a search: minutes
PROFILES = "profiles this machine on the default suite (about a minute)"
ELIDED = "'...' stands for the model path of the command above"
# id -> RUN, or the reason it is skipped.
BLOCKS = {
    "README.md: pip install torch==2.13.0 && pip install -e . && nni-latency profile --device cpu --threads 1 "
    "--output-dir runs/cpu": "installs packages and profiles the default suite (minutes); CI does the same",
    'README.md: pip install -e ".[test]" && python3 -m pytest -q': "the whole test suite: this test is part of it",
    'README.md: pip install -e ".[onnx]" && nni-latency profile --device cpu --runtime onnxruntime --output-dir runs/ort':
        "installs packages and profiles ONNX Runtime (minutes); tests/test_onnxruntime.py profiles a tiny suite",
    "README.md: from nni_latency import LatencyModel, analyze_network, zoo": RUN,
    "README.md: from nni_latency.cli.quiet import quiet_nni": RUN,
    "docs/ACCURACY.md: nni-latency evaluate --model runs/cpu/device_model.json --output-dir runs/evaluate":
        "measures the 1,000-block test set (10-15 minutes)",
    "docs/ACCURACY.md: nni-latency evaluate --model runs/cpu/device_model.json --networks cnn,hub:proxylessnas:5 "
    "--output-dir runs/networks": "measures 40 whole networks (tens of minutes)",
    "docs/ANALYZE.md: nni-latency analyze examples/analyze/networks.py:resnet18_style --input-shape 1,3,224,224 "
    "--model runs/cpu/device_model.json --json resnet.json --plot resnet.png": RUN,
    "docs/ANALYZE.md: nni-latency analyze zoo:deit_tiny --model runs/cpu/device_model.json": RUN,
    "docs/ANALYZE.md: nni-latency analyze zoo:mobilenet_v2 --model runs/cpu/device_model.json --measure --ops "
    "--ops-plot ops.png": RUN,  # a few seconds with the tiny profile's timing budget
    "docs/NAS.md: import torch": "trains a supernet on digits for several epochs (minutes)",
    "docs/NAS.md: profiler = LatencyProfiler(space, (1, 3, 32, 32), \"device_model.json\")":
        "a fragment: it continues the search script above it (space, LatencyDARTS)",
    "docs/NAS.md: nni-latency search --config darts_search.yaml --set latency.device_model=runs/cpu/device_model.json "
    "--set latency.target_ms=1.5 --set latency.alpha=2 --output-dir runs/darts_budget":
        "a DARTS search (minutes)",
    "docs/NAS.md: nni-latency search --config darts_search.yaml --set latency.device_model=runs/cpu/device_model.json "
    "--set latency.target_ms=0.001 --output-dir runs/darts_unreachable": RUN,
    "docs/NAS.md: nni-latency lut --model runs/cpu/device_model.json --space fbnet --input-size 224 "
    "--output-dir runs/cpu/lut": RUN,
    "docs/NAS.md: nni-latency lut --model ... --space fbnet --space-arg width_mult=0.5 --space-arg depth_mult=0.25 "
    "--input-size 96 --output-dir runs/cpu/lut_small --measure": "'...' stands for a model path; --measure times "
                                                                 "every candidate (minutes)",
    "docs/NAS.md: nni-latency lut --model ... --space proxylessnas --space-arg width_mult=0.5 --input-size 224 "
    "--output-dir ...": "'...' stands for a model path and a folder",
    "docs/PROTOCOL.md: from nni_latency import LatencyModel, apply_allocator_policy, measure_latency": RUN,
    "docs/ACCURACY.md: from nni_latency import LatencyModel, apply_allocator_policy, evaluate_networks": RUN,
    "examples/analyze/README.md: from nni_latency import LatencyModel, analyze_network, zoo": RUN,
    "examples/analyze/README.md: nni-latency analyze examples/analyze/networks.py:mobilenet_v2_style --input-shape "
    "1,3,224,224 --model runs/cpu/device_model.json --depth 2 --top 5": RUN,
    "examples/analyze/README.md: nni-latency analyze examples/analyze/networks.py:resnet18_style --input-shape "
    "1,3,224,224 --model runs/cpu/device_model.json --json resnet.json --plot resnet.png": RUN,
    "examples/darts_search/README.md: nni-latency profile --output-dir runs/cpu # once per device": PROFILES,
    "examples/darts_search/README.md: nni-latency search --config darts_search.yaml --set "
    "latency.device_model=runs/cpu/device_model.json": "a DARTS search of the packaged config (minutes)",
    "examples/darts_search/README.md: nni-latency search --config darts_search.yaml --set latency.device_model=... "
    "--set latency.alpha=0": ELIDED,
    "examples/darts_search/README.md: nni-latency search --config darts_search.yaml --set latency.device_model=... "
    "--set latency.target_ms=1.5": ELIDED,
    "examples/darts_search/README.md: nni-latency search --config darts_search.yaml --set latency.device_model=... "
    "--set strategy.name=evolution --set latency.target_ms=1.5 --set multi_trial.trials=12": ELIDED,
    "examples/darts_search/README.md: nni-latency search --config darts_search.yaml --set latency.device_model=... "
    "--set strategy.name=fbnet": ELIDED,
    "examples/darts_search/README.md: nni-latency search --config examples/darts_search/smoke.yaml":
        "profiles, then searches (under a minute); tests/test_search_spaces.py runs this config on a synthetic model",
    "examples/fbnet_search/README.md: nni-latency profile --output-dir runs/profile # once per device (about a "
    "minute on a CPU)": PROFILES,
    "examples/fbnet_search/README.md: nni-latency search --config examples/fbnet_search/smoke.yaml":
        "profiles, then searches (30-80 s); tests/test_search.py runs this config on a synthetic model",
    "examples/fbnet_search/README.md: nni-latency search --set latency.device_model=runs/profile/device_model.json":
        "the default search (about 4 CPU-minutes)",
    "examples/fbnet_search/README.md: nni-latency search --set latency.device_model=runs/profile/device_model.json "
    "--set latency.alpha=0 --output-dir runs/fbnet_no_latency": "the default search (about 4 CPU-minutes)",
    "docs/PROTOCOL.md: from nni_latency.measure.hostload import HostLoad, watch_host": RUN,
}


def _commands(body: str) -> list[str]:
    """The shell commands of a block: lines (joined over trailing backslashes) that start with a command; in a
    session block (its first line ``$ COMMAND``) only the ``$`` lines, the others being what they print."""
    joined = re.sub(r"\\\n\s*", "", body)
    session = joined.lstrip().startswith("$ ")
    lines = [line.strip() for line in joined.splitlines()]
    lines = [line.removeprefix("$ ") for line in lines if line.startswith("$ ") or not session]
    return [line for line in lines if line.startswith(_COMMANDS)]


def doc_blocks() -> dict[str, tuple[str, str]]:
    """id -> (language, code) of every Python block and shell command of the docs."""
    found: dict[str, tuple[str, str]] = {}
    for path in DOCS:
        name = path.relative_to(REPO).as_posix()
        for match in _FENCE.finditer(path.read_text(encoding="utf-8")):
            language, body = match.group(1), match.group(2)
            if language == "python":
                first = next(line for line in body.splitlines() if line.strip())
                found[f"{name}: {first.strip()}"] = ("python", body)
            elif language in _SHELL:
                for command in _commands(body):
                    found[f"{name}: {' '.join(command.split())}"] = ("shell", command)
    return found


FOUND = doc_blocks()


def example_outputs() -> dict[str, tuple[str, list[str]]]:
    """id (as ``BLOCKS``' of its command) -> (command, the lines the doc says it prints), for every example output:
    a fenced block whose first line is ``$ COMMAND``."""
    found: dict[str, tuple[str, list[str]]] = {}
    for path in DOCS:
        name = path.relative_to(REPO).as_posix()
        for match in _FENCE.finditer(path.read_text(encoding="utf-8")):
            lines = re.sub(r"\\\n\s*", "", match.group(2)).splitlines()
            if match.group(1) not in _SHELL + ("text",) or not lines or not lines[0].startswith("$ "):
                continue
            command, shown = None, []
            for line in lines + ["$ "]:
                if line.startswith("$ "):
                    if command and shown:
                        found[f"{name}: {' '.join(command.split())}"] = (command, shown)
                    command, shown = line[2:].strip(), []
                elif line.strip():
                    shown.append(line)
    return found


EXAMPLES = example_outputs()
# What an example output may differ in from today's run on the tiny profile: the machine, and what the device model
# decides (a row's rank and bound, which rows are bottlenecks); then every number. Applied in this order.
MASKS = [
    (r"(?<=model of ).*?(?=, \d+ thread)", "MACHINE"),  # analyze's header: "op_linear model of AMD EPYC, 1 thread"
    (r"(?<=device model )(\w+) on .*?(?=, )", r"\1 on MACHINE"),  # evaluate's header
    (r"^\s*\*?\s*\d+\s+(?=\S)", ""),  # a row's rank, starred when the row is a bottleneck
    (r"\b(compute|memory|overhead)\b", "BOUND"),  # a row's bound
    (r"(?<=bottlenecks \(\*\): ).*?(?= = )", "NAMES"),
    (r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?[kMG]?", "#"),  # a number, with its unit (822.08M FLOPs, 125.44k acts)
    (r"-{2,}", "-"),
    (r"\s+", " "),
]


def masked(line: str) -> str:
    for pattern, replacement in MASKS:
        line = re.sub(pattern, replacement, line)
    return line.strip()


def _pattern(line: str) -> re.Pattern:
    """The masked example line as a pattern: ``...`` stands for any text."""
    return re.compile(".*".join(re.escape(part) for part in masked(line).split("...")))


def structure_differences(shown: list[str], printed: str) -> list[str]:
    """What an example output shows that the command no longer prints (empty: the example holds): its first line
    must be the first line printed, every other line some line printed, each once masked (``MASKS``)."""
    lines = [masked(line) for line in printed.splitlines() if line.strip()]
    if not lines:
        return ["the command printed nothing"]
    problems = []
    if not _pattern(shown[0]).fullmatch(lines[0]):
        problems.append(f"first line: the doc shows {masked(shown[0])!r}, the command prints {lines[0]!r}")
    for line in shown[1:]:
        if line.lstrip().startswith("..."):  # lines left out (with a note of what they hold)
            continue
        if not any(_pattern(line).fullmatch(other) for other in lines):
            problems.append(f"no line like {masked(line)!r}")
    return problems


def test_every_doc_block_is_classified():
    unknown = sorted(set(FOUND) - set(BLOCKS))
    assert not unknown, f"classify these doc blocks in tests/test_docs.py BLOCKS (RUN or a skip reason): {unknown}"


def test_the_table_names_only_blocks_the_docs_hold():
    stale = sorted(set(BLOCKS) - set(FOUND))
    assert not stale, f"these BLOCKS entries are no longer in the docs: {stale}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_profile_yaml):
    """A folder laid out as the docs assume: a tiny profile in runs/cpu (and as ./device_model.json), the repo's
    examples/ and configs/ beside it."""
    root = tmp_path_factory.mktemp("docs")
    config = root / "tiny.yaml"
    config.write_text(tiny_profile_yaml, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["profile", "--config", str(config), "--output-dir", str(root / "runs" / "cpu"), "--no-progress"])
    assert code == 0, err.getvalue()
    shutil.copy(root / "runs" / "cpu" / "device_model.json", root / "device_model.json")
    for name in ("examples", "configs"):
        (root / name).symlink_to(REPO / name)
    return root


def test_the_structure_check_sees_a_stale_example():
    printed = ("Net on 1x3x32x32, blocks: depth 1 (2); op_linear model of AMD EPYC, 1 thread(s)\n"
               "    block  type    pred ms  bound\n--  -----  ------  -------  -----\n"
               "*1  conv   Conv2d    0.500  compute\n 2  fc     Linear    0.100  memory\n"
               "total predicted 0.600 ms; bottlenecks (*): conv = 83.3% of the time\n")
    shown = ["Net on 1x3x224x224, blocks: depth 1 (2); op_linear model of Intel Xeon @ 2.8GHz, 4 thread(s)",
             "    block  type    pred ms  bound", "--  -----  ------  -------  -----",
             " 1  fc     Linear    1.234  compute", "...",
             "total predicted 9.9 ms; bottlenecks (*): fc = 50.0% of the time"]
    assert structure_differences(shown, printed) == []
    stale = [shown[0].replace("op_linear", "relative_linear"), "    block  type    pred ms  bound  error", "...",
             " 3  pool   MaxPool2d    0.1  memory"]
    assert len(structure_differences(stale, printed)) == 3  # another model kind, a column, a row no longer there


def test_examples_show_commands_the_docs_classify():
    unknown = sorted(set(EXAMPLES) - set(BLOCKS))
    assert not unknown, f"example outputs of commands tests/test_docs.py BLOCKS does not know: {unknown}"
    unchecked = sorted(e for e in EXAMPLES if BLOCKS.get(e) != RUN)
    assert not unchecked, f"example outputs of commands that do not run here: make them RUN (or show none): {unchecked}"


_RAN: dict[str, subprocess.CompletedProcess] = {}


def _documented_status(command: str) -> int:
    """2 where the docs show ``command`` ending in its one-line error (an example of a refusal), else 0."""
    return 2 if any(c == command and ": error: " in shown[-1] for c, shown in EXAMPLES.values()) else 0


def _run_once(language: str, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``_run``, once per command for the module: an example output reuses its command's run."""
    if code not in _RAN:
        _RAN[code] = _run(language, code, cwd)
    return _RAN[code]


@pytest.mark.parametrize("example", sorted(EXAMPLES), ids=lambda example: example[:90])
def test_an_example_output_is_what_the_command_prints_today(example, workspace):
    command = EXAMPLES[example][0]
    result = _run_once("shell", command, workspace)
    assert result.returncode == _documented_status(EXAMPLES[example][0]), result.stderr[-2000:]
    problems = structure_differences(EXAMPLES[example][1], result.stdout + result.stderr)
    assert not problems, f"{example}: the example no longer matches what `{command}` prints: {problems}"


def _run(language: str, code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "Agg"}
    if language == "python":
        argv = [sys.executable, "-c", code]
    else:
        words = shlex.split(code)
        entry = "import sys; from nni_latency.cli.dispatch import main; sys.exit(main(sys.argv[1:]))"
        argv = [sys.executable, "-c", entry, *words[1:]] if words[0] == "nni-latency" else words
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("block", sorted(BLOCKS), ids=lambda block: block[:90])
def test_a_doc_block_runs_as_written(block, workspace):
    if BLOCKS[block] != RUN:
        pytest.skip(BLOCKS[block])
    if block not in FOUND:
        pytest.skip("no longer in the docs (test_the_table_names_only_blocks_the_docs_hold says so)")
    language, code = FOUND[block]
    result = _run_once(language, code, workspace)
    expected = _documented_status(code)
    assert result.returncode == expected, f"{block}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr
    assert "AllocatorWarning" not in result.stderr, f"{block}: a snippet that times sets the allocator policy first"


def _module_references(text: str) -> set[str]:
    """``nni_latency/x/y.py`` paths and ``nni_latency.x.y`` names a doc mentions."""
    return set(re.findall(r"nni_latency(?:/[\w]+)+(?:\.\w+)?/?|nni_latency(?:\.\w+)+", text))


def _resolves(reference: str) -> bool:
    """A path that exists, or a dotted name whose module imports (from its new home: no DeprecationWarning) and holds
    the rest of the name."""
    import importlib
    import warnings

    if "/" in reference:
        return (REPO / reference).exists()
    parts = reference.split(".")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for cut in range(len(parts), 0, -1):
            try:
                value = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            except DeprecationWarning:
                return False
            try:
                for attribute in parts[cut:]:
                    value = getattr(value, attribute)
            except (AttributeError, DeprecationWarning):
                return False
            return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_the_docs_name_modules_of_todays_layout(doc):
    """No former module path (``nni_latency.timing``, ``nni_latency/features.py``, ``op_timing.time_ops``): every
    module or name a doc mentions is where it is now (README's module map; ``deprecation.MOVED_MODULES`` lists what
    moved)."""
    from nni_latency.deprecation import MOVED_MODULES

    text = doc.read_text(encoding="utf-8")
    if doc.name == "BENCHMARKS.md":
        pytest.skip("generated by benchmarks/run.py")
    gone = sorted(r for r in _module_references(text) if not _resolves(r.rstrip("/")))
    current = {path.stem for path in (REPO / "nni_latency").rglob("*.py")}
    files = ("jsonl", "json", "yaml", "yml", "png", "svg", "txt", "md", "csv")  # a file name, not a module's
    former = sorted({m.group(0) for name in set(MOVED_MODULES) - current
                     for m in re.finditer(rf"(?<![\w./]){name}\.(?!(?:{'|'.join(files)})\b)\w+", text)})
    assert not gone and not former, f"{doc.relative_to(REPO)} names modules of the former layout: {gone + former}"


def test_the_darts_smoke_example_profiles_the_pooling_its_cells_use():
    from collections import Counter

    from nni_latency.files.config import load_config, packaged_config
    from nni_latency.search.config import load_search_config
    from nni_latency.suite.config import ProfileConfig
    from nni_latency.suite.sampling import suite_specs

    search = load_search_config(REPO / "examples" / "darts_search" / "smoke.yaml")
    suite = load_config(packaged_config(search.latency.profile_config), ProfileConfig, search.latency.profile_set)
    families = Counter(spec.family for spec in suite_specs(suite))
    assert families["maxpool"] >= 2 and families["avgpool"] >= 2, families
