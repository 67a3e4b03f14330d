"""The quiet-machine guard of the benchmark scripts: ``--require-quiet`` (wait for a quiet host before measuring,
or refuse in one line), and the line every generated document carries with the CPU share other processes took
while it was measured (``nni_latency.measure.hostload``). A figure taken beside another benchmark is 10% or more off, so
a document says how quiet its host was."""

from __future__ import annotations

import argparse
import logging

from nni_latency.measure.hostload import BUSY_SHARE, QUIET_WAIT_S, HostLoad, describe_host_load, wait_until_quiet

_logger = logging.getLogger("benchmarks")

__all__ = ["add_argument", "start", "header_line"]


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--require-quiet", action="store_true",
                        help=f"before measuring, wait until other processes use at most {100 * BUSY_SHARE:.0f}%% of "
                             f"a core (up to {QUIET_WAIT_S:.0f} s, saying what it waits for), else refuse")


def start(args: argparse.Namespace, script: str) -> HostLoad:
    """With ``--require-quiet``, wait for a quiet host (``SystemExit`` with one line if it stays busy); then start
    watching it for the document's header."""
    if getattr(args, "require_quiet", False):
        logging.basicConfig(level=logging.INFO, format="%(message)s")  # say what it waits for (a no-op if set up)
        try:
            record = wait_until_quiet()
        except TimeoutError as error:
            raise SystemExit(f"{script}: error: {error}") from None
        _logger.info("host quiet enough to measure: %s", describe_host_load(record))
    return HostLoad().start()


def header_line(host: HostLoad) -> str:
    """"Host load while measuring: other processes used 3% of a core (steal 0%) over 2712 s." for a header."""
    record = host.record()
    busy = record["other_cpu_share"] is not None and record["other_cpu_share"] > BUSY_SHARE
    return (f"Host load while measuring: {describe_host_load(record)}"
            f"{f' (above {100 * BUSY_SHARE:.0f}%: these timings are likely slow)' if busy else ''}.")
