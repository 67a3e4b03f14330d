"""The README stays a five-minute read that tells the truth: short, its test command the one CI runs, its module
map the package's modules, and its links pointing at files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 200


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _pytest_command(line: str) -> str:
    """The ``python3 -m pytest ...`` part of a shell line (after any ``&&``)."""
    return line.split("&&")[-1].split("#")[0].strip()


def test_readme_is_a_five_minute_read():
    lines = _readme().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_ci_runs_exactly_the_readmes_test_command():
    readme = [line for line in _readme().splitlines() if "-m pytest" in line and "pip install" in line]
    ci = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if "-m pytest" in line and not line.lstrip().startswith("#")]
    assert len(readme) == 1 and len(ci) == 1, (readme, ci)
    assert _pytest_command(ci[0]) == _pytest_command(readme[0])
    extras = re.search(r'-e "(\.\[[a-z,]+\])"', readme[0]).group(1)
    assert f'-e "{extras}"' in (ROOT / ".ci" / "run").read_text(encoding="utf-8")  # the same extras installed


def _map_block() -> str:
    return _readme().split("## Module map", 1)[1].split("```text", 1)[1].split("```", 1)[0]


def _module_map() -> set[str]:
    return {match.group(1) for match in re.finditer(r"^  (\S+?\.py|\S+?/)\s", _map_block(), re.M)}


def _nested_maps() -> dict[str, set[str]]:
    """folder -> the modules the map lists under it (lines indented four spaces), for folders it opens."""
    nested: dict[str, set[str]] = {}
    folder = None
    for line in _map_block().splitlines():
        top = re.match(r"^  (\S+?/)\s", line)
        inner = re.match(r"^    (\S+?\.py|\S+?/)\s", line)
        if top:
            folder = top.group(1)
        elif inner and folder:
            nested.setdefault(folder, set()).add(inner.group(1))
    return nested


def _package_modules() -> set[str]:
    package = ROOT / "nni_latency"
    files = {p.name for p in package.glob("*.py")}
    folders = {f"{p.name}/" for p in package.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    return files | folders


def test_module_map_names_every_module_and_no_other():
    listed, present = _module_map(), _package_modules()
    assert not present - listed, f"add a line for each of {sorted(present - listed)} to README.md's module map"
    assert not listed - present, f"README.md's module map names {sorted(listed - present)}, which no longer exist"


def test_the_folders_the_map_opens_list_every_module_they_hold():
    nested = _nested_maps()
    assert len(nested) >= 8, sorted(nested)  # the pipeline's folders are opened, one line per module
    for folder, listed in nested.items():
        path = ROOT / "nni_latency" / folder
        present = {p.name for p in path.glob("*.py") if p.name != "__init__.py"} | {
            f"{p.name}/" for p in path.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
        assert listed == present, f"README.md's module map under {folder}: missing {sorted(present - listed)}, " \
                                  f"gone {sorted(listed - present)}"


@pytest.mark.parametrize("page", ["README.md", "docs/ACCURACY.md", "docs/PROTOCOL.md", "docs/ANALYZE.md",
                                  "docs/TROUBLESHOOTING.md", "docs/NAS.md"])
def test_relative_links_point_at_files(page):
    path = ROOT / page
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8"))
    missing = [target for target in targets if not (path.parent / target).exists()]
    assert not missing, f"{page} links to missing files: {missing}"
