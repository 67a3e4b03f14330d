"""One writer per output folder: ``profile``, ``evaluate`` and ``search`` hold an advisory lock on theirs.

Two runs appending to one ``microbench.jsonl`` would each time its blocks while the other runs, and write
duplicate rows. The lock is ``fcntl.flock`` on ``.nni-latency-lock`` in the folder: the kernel releases it when
its holder exits, crashes or is killed, so a stale lock file never blocks anyone (a run that ends normally
also removes it). The file also says who holds
it (pid, command, start time), which is what a refused second run prints. Where ``fcntl`` does not exist
(Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Iterator

from ..errors import InvalidInput

try:
    import fcntl
except ImportError:  # pragma: no cover -- Windows
    fcntl = None

_logger = logging.getLogger(__name__)

__all__ = ["folder_lock", "LOCK_NAME"]

LOCK_NAME = ".nni-latency-lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if needed) while the block runs; a folder another process holds is
    refused with a one-line ``ValueError`` naming that process. ``command`` is what the lock file records."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidInput(f"--output-dir {str(folder)!r} is a file, not a directory; give a directory") from None
    if fcntl is None:
        yield folder
        return
    path = folder / LOCK_NAME
    handle = open(path, "a+", encoding="utf-8")
    held = False
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = " ".join(handle.read().split()) or "another process"
            raise InvalidInput(f"{str(folder)!r} is being written by {holder}; wait for it to finish, or give "
                             "another --output-dir") from None
        held = True
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} (`{command}`, started {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        yield folder
    finally:
        if held:  # leave no file behind; a run that opened it in this very instant locks a file no one else sees
            path.unlink(missing_ok=True)
        handle.close()  # closing releases the flock
