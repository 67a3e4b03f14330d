"""The ``nni-latency`` command line: the dispatcher (``dispatch``), one module per command (``commands``), and what a
command is pointed at (``targets``)."""

from .dispatch import main

__all__ = ["main"]
