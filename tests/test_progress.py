"""Progress on stderr: plain periodic lines (no carriage returns, escape codes or blank lines) when stderr is
a file or a pipe."""

from __future__ import annotations

import io

from nni_latency.measure import progress
from nni_latency.measure.progress import PlainProgress, progress_bar


def test_plain_progress_prints_whole_lines_at_once_and_at_the_end():
    stream = io.StringIO()
    with PlainProgress(3, "profiling", stream=stream, interval=3600) as bar:
        assert stream.getvalue().startswith("profiling: 0/3 block(s)")  # at once, before the first block
        for _ in range(3):
            bar.set_postfix_str("round 1/1")
            bar.update()
    lines = stream.getvalue().split("\n")
    assert lines[-1] == "" and all(lines[:-1]) and len(lines) == 3
    assert lines[1].startswith("profiling: 3/3 block(s)") and "round 1/1" in lines[1]
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_a_pipe_gets_plain_lines_and_a_terminal_a_bar(monkeypatch):
    class Stream(io.StringIO):
        def __init__(self, tty):
            super().__init__()
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(progress.sys, "stderr", Stream(False))
    assert isinstance(progress_bar(5, "measuring", True), PlainProgress)
    monkeypatch.setattr(progress.sys, "stderr", Stream(True))
    assert not isinstance(progress_bar(5, "measuring", True), PlainProgress)
    assert progress_bar(5, "measuring", False).disable
