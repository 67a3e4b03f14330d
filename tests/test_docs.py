"""Docs that run as written (issue 20): every shell command and Python block of README.md and docs/*.md is
either run here, on a tiny profile written where the docs expect a model (``runs/cpu``), or skipped for a
reason named in ``BLOCKS``. A block the table does not know fails the test until it is classified, so a new
snippet in the docs is run (or its skip explained) from the day it is written.

A block's id is its file and its first line (a command: the whole command), which stays put when the text
around it changes.
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
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_SHELL = ("bash", "sh", "shell", "console", "")
_COMMANDS = ("nni-latency ", "python ", "python3 ", "bash ", "pip ")

RUN = "run"
SLOW = "slow"  # a real profile, a test set or a search: minutes
# id -> RUN, or the reason it is skipped.
BLOCKS = {
    "README.md: pip install torch==2.13.0 && pip install -e . && nni-latency profile --device cpu --threads 1 "
    "--output-dir runs/cpu": "installs packages and profiles the default suite (minutes); CI does the same",
    'README.md: pip install -e ".[test]" && python3 -m pytest -q': "the whole test suite: this test is part of it",
    "README.md: from nni_latency import LatencyModel, analyze_network, zoo": RUN,
    "README.md: from nni_latency.nas import FBNet, FBNetLatencyLoss, LatencyProfiler": RUN,
    "docs/ACCURACY.md: nni-latency evaluate --model runs/cpu/device_model.json --output-dir runs/evaluate":
        "measures the 1,000-block test set (10-15 minutes)",
    "docs/ACCURACY.md: nni-latency evaluate --model runs/cpu/device_model.json --networks cnn,hub:proxylessnas:5 "
    "--output-dir runs/networks": "measures 40 whole networks (tens of minutes)",
    "docs/ANALYZE.md: nni-latency analyze examples/analyze/networks.py:resnet18_style --input-shape 1,3,224,224 "
    "--model runs/cpu/device_model.json --json resnet.json --plot resnet.png": RUN,
    "docs/ANALYZE.md: nni-latency analyze zoo:deit_tiny --model runs/cpu/device_model.json": RUN,
    "docs/ANALYZE.md: nni-latency analyze zoo:mobilenet_v2 --model runs/cpu/device_model.json --measure --ops "
    "--ops-plot ops.png": "times MobileNetV2 whole and every one of its aten calls (a minute on one thread)",
    "docs/NAS.md: import torch": "trains a supernet on digits for several epochs (minutes)",
    "docs/NAS.md: profiler = LatencyProfiler(space, (1, 3, 32, 32), \"device_model.json\")":
        "a fragment: it continues the search script above it (space, LatencyDARTS)",
    "docs/NAS.md: nni-latency search --config darts_search.yaml --set latency.device_model=runs/cpu/device_model.json "
    "--set latency.target_ms=1.5 --set latency.alpha=2 --output-dir runs/darts_budget":
        "a DARTS search (minutes)",
    "docs/NAS.md: nni-latency search --config darts_search.yaml --set latency.device_model=... "
    "--set latency.target_ms=0.001": "'...' stands for the model path of the command above",
    "docs/NAS.md: nni-latency lut --model runs/cpu/device_model.json --space fbnet --input-size 224 "
    "--output-dir runs/cpu/lut": RUN,
    "docs/NAS.md: nni-latency lut --model ... --space fbnet --space-arg width_mult=0.5 --space-arg depth_mult=0.25 "
    "--input-size 96 --output-dir runs/cpu/lut_small --measure": "'...' stands for a model path; --measure times "
                                                                 "every candidate (minutes)",
    "docs/NAS.md: nni-latency lut --model ... --space proxylessnas --space-arg width_mult=0.5 --input-size 224 "
    "--output-dir ...": "'...' stands for a model path and a folder",
    "docs/PROTOCOL.md: from nni_latency import LatencyModel, apply_allocator_policy, measure_latency": RUN,
    "docs/PROTOCOL.md: from nni_latency.measure.hostload import HostLoad, watch_host": RUN,
}


def _commands(body: str) -> list[str]:
    """The shell commands of a block: lines (joined over trailing backslashes) that start with a command."""
    joined = re.sub(r"\\\n\s*", "", body)
    lines = [line.strip().removeprefix("$ ") for line in joined.splitlines()]
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


def _run(language: str, code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "Agg"}
    if language == "python":
        argv = [sys.executable, "-c", code]
    else:
        words = shlex.split(code)
        argv = [sys.executable, "-m", "nni_latency.cli.dispatch", *words[1:]] if words[0] == "nni-latency" else words
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("block", sorted(BLOCKS), ids=lambda block: block[:90])
def test_a_doc_block_runs_as_written(block, workspace):
    if BLOCKS[block] != RUN:
        pytest.skip(BLOCKS[block])
    if block not in FOUND:
        pytest.skip("no longer in the docs (test_the_table_names_only_blocks_the_docs_hold says so)")
    result = _run(*FOUND[block], workspace)
    assert result.returncode == 0, f"{block}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr


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
