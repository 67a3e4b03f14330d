"""The quiet-machine guard: the share arithmetic on fake /proc/stat snapshots, and the warning it gives."""

from __future__ import annotations

import warnings

import pytest

from nni_latency.measure import hostload
from nni_latency.measure.hostload import (BUSY_SHARE, BusyHostWarning, HostLoad, SystemTimes, describe_host_load,
                                          read_proc_stat, wait_until_quiet, watch_host)


class FakeHost:
    """Readers for ``HostLoad`` that replay scripted (busy_s, steal_s, own_s, wall_s) readings, one per snapshot."""

    def __init__(self, *readings):
        self.readings = list(readings)
        self.current = None

    def system(self):
        self.current = self.readings.pop(0)
        busy, steal = self.current[0], self.current[1]
        return None if busy is None else SystemTimes(busy, steal)

    def own(self):
        return self.current[2]

    def clock(self):
        return self.current[3]

    def load(self) -> HostLoad:
        return HostLoad(self.system, self.own, self.clock)


# (busy_s, steal_s, own_s, wall_s) at start and at stop -> expected share, steal share
@pytest.mark.parametrize("start, stop, share, steal", [
    ((100.0, 0.0, 10.0, 0.0), (110.0, 0.0, 20.0, 10.0), 0.0, 0.0),      # only we were busy
    ((100.0, 0.0, 10.0, 0.0), (113.4, 0.0, 20.0, 10.0), 0.34, 0.0),     # others took 3.4 s in 10 s
    ((100.0, 1.0, 10.0, 0.0), (130.0, 1.2, 20.0, 10.0), 2.0, 0.02),     # two other cores busy, steal 2%
    ((100.0, 0.0, 10.0, 0.0), (109.9, 0.0, 20.0, 10.0), 0.0, 0.0),      # tick rounding below 0 is 0
    ((None, 0.0, 10.0, 0.0), (110.0, 0.0, 20.0, 10.0), None, None),     # no /proc/stat at start
    ((100.0, 0.0, 10.0, 0.0), (None, 0.0, 20.0, 10.0), None, None),     # nor at the end
    ((100.0, 0.0, 10.0, 0.0), (110.0, 0.0, 10.0, 0.5), None, None),     # a window too short to judge
], ids=["alone", "a_third_of_a_core", "steal", "rounding", "missing_at_start", "missing_at_end", "short"])
def test_share_of_other_processes(start, stop, share, steal):
    load = FakeHost(start, stop).load().start().stop()
    assert load.share == pytest.approx(share) if share is not None else load.share is None
    assert load.steal_share == pytest.approx(steal) if steal is not None else load.steal_share is None
    record = load.record()
    assert set(record) == {"other_cpu_share", "steal_share", "window_s"}
    assert record["window_s"] == pytest.approx(stop[3] - start[3])
    assert load.is_busy() == (share is not None and share > BUSY_SHARE)


def test_read_while_running_covers_the_window_so_far():
    host = FakeHost((100.0, 0.0, 0.0, 0.0), (102.0, 0.0, 0.0, 4.0), (104.0, 0.0, 0.0, 8.0))
    load = host.load().start()
    assert load.share == pytest.approx(0.5)      # first 4 s
    assert load.stop().share == pytest.approx(0.5)
    assert load.window_s == pytest.approx(8.0)  # the stop reading, not a new one


@pytest.mark.parametrize("text, busy, steal", [
    ("cpu  100 20 30 400 5 6 7 8 9 10\ncpu0 1 2 3 4\n", 171, 8),  # user nice system irq softirq steal
    ("cpu  100 20 30 400 5 6 7\n", 163, 0),                       # an old kernel: no steal column
], ids=["steal", "no_steal_column"])
def test_read_proc_stat_sums_the_busy_columns(tmp_path, monkeypatch, text, busy, steal):
    path = tmp_path / "stat"
    path.write_text(text)
    monkeypatch.setattr(hostload.os, "sysconf", lambda name: 100)
    assert read_proc_stat(str(path)) == SystemTimes(busy / 100, steal / 100)


@pytest.mark.parametrize("text", [None, "intr 1 2 3\n", "cpu  a b c\n"], ids=["missing", "no_cpu_line", "garbled"])
def test_unreadable_proc_stat_is_unknown_not_an_error(tmp_path, text):
    path = tmp_path / "stat"
    if text is not None:
        path.write_text(text)
    assert read_proc_stat(str(path)) is None
    load = HostLoad(lambda: read_proc_stat(str(path)), clock=iter([0.0, 5.0]).__next__).start().stop()
    assert load.record()["other_cpu_share"] is None and "unknown" in describe_host_load(load.record())


@pytest.mark.parametrize("stop, warned", [
    ((103.0, 0.0, 10.0, 10.0), True),    # others took 30% of a core
    ((100.5, 0.0, 10.0, 10.0), False),   # 5%
    ((None, 0.0, 10.0, 10.0), False),    # unknown
], ids=["busy", "quiet", "unknown"])
def test_watch_host_warns_once_when_busy(stop, warned):
    host = FakeHost((100.0, 0.0, 10.0, 0.0), stop)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with watch_host("profiling", load=host.load):
            pass
    busy = [w for w in caught if issubclass(w.category, BusyHostWarning)]
    assert len(busy) == int(warned)
    if warned:
        assert "other processes used 30% of a core (steal 0%) over 10 s while profiling" in str(busy[0].message)


def test_watch_host_does_not_judge_a_body_that_raised():
    host = FakeHost((100.0, 0.0, 10.0, 0.0), (150.0, 0.0, 10.0, 10.0))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(KeyError):
        warnings.simplefilter("always")
        with watch_host(load=host.load):
            raise KeyError("x")
    assert not caught


def _scripted_looks(*shares):
    """A load factory whose successive looks (10 s each) see the given shares of other processes."""
    looks = iter(shares)

    def load():
        share = next(looks)
        return FakeHost((0.0, 0.0, 0.0, 0.0), (None if share is None else 10 * share, 0.0, 0.0, 10.0)).load()
    return load


@pytest.mark.parametrize("shares, max_wait, looks, error", [
    ((0.05,), 60, 1, None),                  # quiet at once
    ((0.5, 0.4, 0.02), 60, 3, None),         # waits two looks, then measures
    ((0.5, 0.5, 0.5), 25, 3, "stayed busy for 30 s"),
    ((None,), 60, 1, None),                  # unknown: no wait
], ids=["quiet", "waits", "refuses", "unknown"])
def test_wait_until_quiet(shares, max_wait, looks, error):
    slept = []
    if error:
        with pytest.raises(TimeoutError, match=error) as raised:
            wait_until_quiet(10, max_wait, load=_scripted_looks(*shares), sleep=slept.append)
        assert "\n" not in str(raised.value) and "--require-quiet" in str(raised.value)
    else:
        record = wait_until_quiet(10, max_wait, load=_scripted_looks(*shares), sleep=slept.append)
        assert record["other_cpu_share"] == (None if shares[-1] is None else pytest.approx(shares[-1]))
    assert slept == [10] * looks


def test_profile_on_a_busy_host_says_so_once_and_records_the_share(tiny_profile_config, tmp_path):
    """A tiny profile while a child process spins on a core: one warning line, and the share in the model."""
    import contextlib
    import io
    import subprocess
    import sys

    from nni_latency.cli.dispatch import main
    from nni_latency.model.model import LatencyModel

    if read_proc_stat() is None:
        pytest.skip("no /proc/stat: the host load is unknown here")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["profile", "--config", str(tiny_profile_config), "--output-dir", str(tmp_path / "run"),
                         "--no-progress"])
    finally:
        spinner.kill()
        spinner.wait()
    assert code == 0, err.getvalue()
    lines = [line for line in err.getvalue().splitlines() if "other processes used" in line]
    assert len(lines) == 1 and lines[0].startswith("nni-latency profile: warning: "), err.getvalue()
    assert "while profiling" in lines[0]
    load = LatencyModel.load(tmp_path / "run" / "device_model.json").device["host_load"]
    assert load["other_cpu_share"] > BUSY_SHARE and load["window_s"] >= 1.0 and load["steal_share"] >= 0


def _benchmark_hostcheck():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import hostcheck

    return hostcheck


@pytest.mark.parametrize("stop, fragment", [
    ((103.0, 0.0, 10.0, 10.0), "other processes used 30% of a core (steal 0%) over 10 s (above 10%"),
    ((100.2, 0.0, 10.0, 10.0), "other processes used 2% of a core (steal 0%) over 10 s."),
    ((None, 0.0, 10.0, 10.0), "unknown"),
], ids=["busy", "quiet", "unknown"])
def test_benchmark_header_records_the_share(stop, fragment):
    hostcheck = _benchmark_hostcheck()
    line = hostcheck.header_line(FakeHost((100.0, 0.0, 10.0, 0.0), stop).load().start().stop())
    assert line.startswith("Host load while measuring: ") and fragment in line and "\n" not in line


def test_require_quiet_refuses_in_one_line_when_the_host_stays_busy(monkeypatch):
    import argparse

    hostcheck = _benchmark_hostcheck()
    parser = argparse.ArgumentParser()
    hostcheck.add_argument(parser)
    assert parser.parse_args([]).require_quiet is False

    def stays_busy():
        raise TimeoutError("the host stayed busy for 300 s (...); stop the other work, or run without --require-quiet")

    monkeypatch.setattr(hostcheck, "wait_until_quiet", stays_busy)
    with pytest.raises(SystemExit) as refused:
        hostcheck.start(parser.parse_args(["--require-quiet"]), "benchmarks/run.py")
    assert str(refused.value).startswith("benchmarks/run.py: error: the host stayed busy") and "\n" not in str(
        refused.value)
    monkeypatch.setattr(hostcheck, "wait_until_quiet", lambda: pytest.fail("waited without --require-quiet"))
    assert isinstance(hostcheck.start(parser.parse_args([]), "benchmarks/run.py"), HostLoad)
