"""One module per ``nni-latency`` command; each defines add_arguments(parser) and run(args), and imports the
library only inside run, so that building the parser stays cheap (no torch). Checks that several commands
apply to their flags live here."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import InvalidInput

__all__ = ["check_threads", "check_positive", "check_not_a_directory", "INPUT_SHAPE_HELP", "TARGET_HELP"]

# Help shared by the commands that take a network and its input.
TARGET_HELP = ("path/to/file.py:callable or package.module:callable (a class or factory called with no arguments, "
               "or an nn.Module instance), zoo:NAME for a reference network of nni_latency.zoo (e.g. zoo:deit_tiny), "
               "or hf:NAME for an HF transformers model (e.g. hf:ConvNext; needs pip install -e .[hf])")
INPUT_SHAPE_HELP = ("input shape with the batch: N,C,H,W for an image (e.g. 1,3,224,224), B,N,C for tokens; a dtype "
                    "after a colon for other inputs than floats, e.g. 1,128:int64 for the token ids of an nn.Embedding "
                    "(drawn below its num_embeddings); several inputs separated by ';'; required unless the target "
                    "is zoo:NAME or hf:NAME (then its own resolution)")


def check_positive(value: int | None, flag: str) -> None:
    """A count-like flag (``--batch``, ``--stride``, ...) must be at least 1 when given."""
    if value is not None and value < 1:
        raise InvalidInput(f"{flag} must be at least 1, got {value}")


def check_threads(threads: int | None, flag: str = "--threads") -> None:
    """A thread count is between 1 and this machine's CPU count: more only oversubscribes the cores (and
    oneDNN fails outright on absurd counts), which no latency measurement wants."""
    check_positive(threads, flag)
    cpus = os.cpu_count() or 1
    if threads is not None and threads > cpus:
        raise InvalidInput(f"{flag} {threads} is more than the {cpus} CPU(s) of this machine; use 1 to {cpus} "
                         "(1 gives the most stable timings)")


def check_not_a_directory(path: str | os.PathLike | None, what: str, inside: str) -> None:
    """``path``, a file to read or write, is not a directory; a one-line error suggests the ``inside`` file."""
    if path is None or not Path(path).is_dir():
        return
    candidate = Path(path) / inside
    hint = f"did you mean {str(candidate)!r}?" if candidate.exists() else f"give a file such as {str(candidate)!r}"
    raise InvalidInput(f"{what} {str(path)!r} is a directory, not a file; {hint}")
