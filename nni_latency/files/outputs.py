"""Where a command writes, checked before it measures or computes anything, so that no good file is destroyed.

Every command names its destinations (``Output``: a path, the kind of file it writes there, the flag that
named it) and its inputs, and calls ``check_outputs`` first. A destination that is one of the inputs is refused;
so is an existing file of another kind (a model over a JSONL of measurements, a report over a model), which is
told apart by its content, not its name; so is a destination that cannot be written (a read-only folder, a file
in the way). ``keep_previous`` then renames a file of the same kind aside (``name.<time>.ext``) just before it
is replaced, so a rerun never loses the earlier result.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import InvalidInput
from .formats import LUT_FORMAT, LUT_TXT_START, MODEL_FORMAT

_logger = logging.getLogger(__name__)

__all__ = ["Output", "KINDS", "PROFILE_OUTPUTS", "file_kind", "check_outputs", "keep_previous", "check_profile_folder"]

# kind -> how a message names it. ``plot`` files are drawn again at will: they are replaced without a copy.
KINDS = {"model": "device model", "rows": "JSONL file of measured rows", "report": "JSON report",
         "plot": "plot", "lut": "lookup table", "text": "text file", "yaml": "YAML config", "other": "file"}
_REPLACEABLE = ("plot",)
# What ``profile`` writes in its --output-dir.
PROFILE_OUTPUTS = {"device_model.json": "model", "microbench.jsonl": "rows", "fit.png": "plot", "fit.svg": "plot"}
_SNIFF_BYTES = 1 << 16


@dataclass(frozen=True)
class Output:
    """A file a command writes: ``kind`` (a key of ``KINDS``) says what it holds, ``flag`` how the user named it."""

    path: Path
    kind: str
    flag: str

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))
        if self.kind not in KINDS:
            raise InvalidInput(f"unknown output kind {self.kind!r}: use one of {', '.join(KINDS)}")


def _json_kind(value: object) -> str:
    if isinstance(value, Mapping) and value.get("format") == MODEL_FORMAT:
        return "model"
    if isinstance(value, Mapping) and value.get("format") == LUT_FORMAT:
        return "lut"
    if isinstance(value, Mapping) and ("latency_ms" in value or "key" in value and "features" in value):
        return "rows"
    return "report"


def file_kind(path: str | os.PathLike) -> str | None:
    """What the file at ``path`` holds, judged by its content (its name can lie): a key of ``KINDS``, or None
    when there is no such file. A folder is ``other``."""
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        return "other"
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return "other"
    if head.startswith(b"\x89PNG") or b"<svg" in head[:2048] or head.startswith(b"%PDF"):
        return "plot"
    text = head.decode("utf-8", errors="replace").lstrip()
    if not text:
        return "text"
    if text.startswith(LUT_TXT_START):
        return "lut"
    if text[0] in "{[":
        try:  # a JSONL file, or JSON written on one line
            return _json_kind(json.loads(text.splitlines()[0]))
        except ValueError:
            pass
        try:
            return _json_kind(json.loads(path.read_text(encoding="utf-8", errors="replace")))
        except (OSError, ValueError, RecursionError):
            return "other"
    first = text.splitlines()[0]
    if first.startswith(("#", "---")) or ":" in first.split("#")[0]:
        return "yaml" if path.suffix in (".yaml", ".yml") else "text"
    return "text"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _check_writable(output: Output) -> None:
    """The destination can be written, tested the way it will be written: a temporary file created (and removed)
    beside it, or, where its folder does not exist yet, a temporary folder in the nearest existing one (the
    permission bits alone do not tell: a read-only mount, /proc, or root's view of a read-only folder)."""
    where = str(output.path)
    if output.path.is_dir():
        raise InvalidInput(f"{output.flag} {where!r} is a directory, not a file; give the path of a file")
    if output.path.exists() and not os.access(output.path, os.W_OK):
        raise PermissionError(13, "Permission denied", where)
    parent = output.path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise FileExistsError(errno.EEXIST, "File exists", str(parent))
    try:
        if parent == output.path.parent:
            with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{output.path.name}.", suffix=".tmp"):
                pass
        else:
            os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".nni-latency-write-test-"))
    except PermissionError:
        raise PermissionError(13, "Permission denied", str(parent)) from None
    except OSError as error:
        raise InvalidInput(f"{output.flag} {where!r} cannot be written ({error.strerror or error} in "
                           f"{str(parent)!r}); choose a location you may write") from None


def check_outputs(outputs: Iterable[Output], inputs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
    """Refuse, in one line, a destination that is an input, that holds a file of another kind, that another
    destination of the same command also names, or that cannot be written. Call it before any work."""
    outputs = list(outputs)
    given = {flag: Path(path) for flag, path in (inputs or {}).items() if path is not None}
    for index, output in enumerate(outputs):
        where = str(output.path)
        for flag, path in given.items():
            if _same_file(output.path, path):
                raise InvalidInput(f"{output.flag} {where!r} is also this command's {flag}: writing there would destroy "
                                 "it; give another path")
        for other in outputs[:index]:
            if _same_file(output.path, other.path):
                raise InvalidInput(f"{output.flag} and {other.flag} both name {where!r}; give two different paths")
        kind = file_kind(output.path)
        if kind is not None and kind != output.kind and output.path.is_file() and output.path.stat().st_size:
            raise InvalidInput(f"{output.flag} {where!r} holds a {KINDS[kind]}, and this command would replace it by "
                             f"a {KINDS[output.kind]}; give another path, or move that file away first")
        _check_writable(output)


def keep_previous(outputs: Iterable[Output], plots: bool = False) -> list[Path]:
    """Rename each existing destination whose kind is worth keeping to ``name.<time>.ext`` beside it (plots are
    drawn again at will, so they are replaced, unless ``plots``: a search's plots come from a training run that
    cannot be repeated, and are kept with its result); return the new paths. Call it just before the destinations
    are written."""
    from .fileio import set_aside  # one renaming rule for the whole package

    return set_aside(o.path for o in outputs if (plots or o.kind not in _REPLACEABLE) and o.path.is_file())


def check_profile_folder(output_dir: str | os.PathLike, names: Mapping[str, str],
                         inputs: Mapping[str, str | os.PathLike | None] | None = None,
                         rows: str = "microbench.jsonl", model: str = "device_model.json") -> None:
    """Check a profiling folder's destinations (``names``: file name -> kind) before measuring; a model there
    without the rows it was fitted on (``rows``) cannot be resumed, so it is kept aside instead of replaced."""
    from .fileio import ensure_writable_dir

    folder = ensure_writable_dir(output_dir)
    check_outputs([Output(folder / name, kind, f"{name} in --output-dir") for name, kind in names.items()], inputs)
    if (folder / model).is_file() and not (folder / rows).exists():
        keep_previous([Output(folder / model, "model", "--output-dir")])

