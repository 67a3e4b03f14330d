"""Progress of a long loop on stderr: a tqdm bar on a terminal, plain periodic lines when stderr is a file or
a pipe (a bar there leaves carriage returns, escape codes and blank lines in the log), nothing when off.
"""

from __future__ import annotations

import sys
import time

__all__ = ["progress_bar", "PlainProgress"]


class PlainProgress:
    """The part of tqdm's interface the loops use, printing ``description: done/total unit`` at the start,
    then at most every ``interval`` seconds, and at the end."""

    def __init__(self, total: int, description: str, unit: str = "block", interval: float = 10.0, stream=None):
        self.total, self.description, self.unit, self.interval = total, description, unit, interval
        self.stream = stream
        self.done, self.postfix, self.closed = 0, "", False
        self._started = self._printed = time.monotonic()
        self._print()

    def _print(self) -> None:
        elapsed = time.monotonic() - self._started
        postfix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.description}: {self.done}/{self.total} {self.unit}(s) ({elapsed:.0f} s{postfix})",
              file=self.stream or sys.stderr, flush=True)
        self._printed = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self._printed >= self.interval:
            self._print()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        if not self.closed and self.done:
            self._print()
        self.closed = True

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int, description: str, enabled: bool, unit: str = "block"):
    """Progress over ``total`` steps: a tqdm bar on a terminal, ``PlainProgress`` lines otherwise, a hidden
    bar when ``enabled`` is false."""
    from tqdm.auto import tqdm

    if enabled and not sys.stderr.isatty():
        return PlainProgress(total, description, unit)
    return tqdm(total=total, desc=description, unit=unit, disable=not enabled, dynamic_ncols=True)
