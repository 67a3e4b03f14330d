"""The package's shape: no import cycle between its modules, counting the imports inside functions (a function-level
import that climbs back up the pipeline is a cycle all the same), and small modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nni_latency"
MAX_LINES = 500


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports anywhere: at import time and inside functions (not for typing
    only)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for statement in ast.walk(node):
            if isinstance(statement, ast.ImportFrom):
                base = package.split(".")
                if statement.level:
                    base = base[:len(base) - statement.level + 1]
                    target = ".".join(base + ([statement.module] if statement.module else []))
                else:
                    target = statement.module or ""
                for alias in statement.names:
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if candidate in known else target)
            elif isinstance(statement, ast.Import):
                found.update(alias.name for alias in statement.names)
    return {module for module in found if module in known and module != name}


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    paths = {_module_name(path, package): path for path in package.rglob("*.py")}
    known = set(paths)
    return {name: _imports(path, name, known) for name, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state and (found := visit(child)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_sees_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (package / "c.py").write_text("import json\nfrom . import a\n")
    assert _cycle(_graph(package)) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("import json\n")
    assert _cycle(_graph(package)) is None


def test_the_import_graph_sees_the_package():
    graph = _graph()
    assert "nni_latency.model.model" in graph["nni_latency.fit.fitting"]
    assert "nni_latency.count.features" in graph["nni_latency.nas.structure"]
    assert "nni_latency.runtimes.torch.device" in graph["nni_latency.profile.run"]


def test_no_import_cycle_inside_the_package():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_no_module_is_over_500_lines():
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


BENCHMARKS = PACKAGE.parent / "benchmarks"


def _benchmark_graph(folder: Path = BENCHMARKS) -> dict[str, set[str]]:
    """Which benchmark scripts each one imports, anywhere in it (in functions too: a script run alone imports
    its siblings there), as they import one another: by bare module name, the folder on ``sys.path``."""
    paths = {path.stem: path for path in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
        graph[name] = {module for module in found if module in paths and module != name}
    return graph


def test_the_benchmark_graph_sees_a_synthetic_cycle(tmp_path):
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def main():\n    from c import helper\n")
    (tmp_path / "c.py").write_text("import json\nfrom a import x\n")
    assert _cycle(_benchmark_graph(tmp_path)) == ["a", "b", "c", "a"]
    (tmp_path / "c.py").write_text("import json\n")
    assert _cycle(_benchmark_graph(tmp_path)) is None


def test_the_benchmark_graph_sees_the_benchmarks():
    graph = _benchmark_graph()
    assert {"common", "whole_networks", "gpu_section"} <= graph["run"]
    assert "common" in graph["whole_networks"]


def test_no_import_cycle_between_the_benchmarks():
    assert _cycle(_benchmark_graph()) is None, " -> ".join(_cycle(_benchmark_graph()) or [])
