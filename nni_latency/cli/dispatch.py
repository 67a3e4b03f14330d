"""The ``nni-latency`` command line: a thin dispatcher over ``nni_latency.cli.commands.<name>`` modules.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``; its one-line help is in
``COMMANDS``. Command modules import only argparse-level things at top level and the library inside
``run``, so importing this module does not import torch, ``--help`` answers at once, and NNI is loaded
only by the commands that need it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import re
import signal
import sys
import threading
import traceback
import warnings
from typing import Iterator

from .. import __version__
from ..errors import describe_error
from .quiet import quiet_third_party

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "profile": ("nni_latency.cli.commands.profile", "benchmark a device, fit its latency model, write device_model.json"),
    "fit": ("nni_latency.cli.commands.fit", "refit a device model from a microbench.jsonl without measuring again"),
    "predict": ("nni_latency.cli.commands.predict", "predict the latency of one block or a module from a Python file"),
    "evaluate": ("nni_latency.cli.commands.evaluate", "measure a held-out test set and score a device model on it"),
    "analyze": ("nni_latency.cli.commands.analyze", "find the bottleneck blocks of a whole network"),
    "lut": ("nni_latency.cli.commands.lut", "write the predicted (or measured) per-layer lookup table of a search space"),
    "search": ("nni_latency.cli.commands.search", "run a YAML-configured FBNet search in NNI with the predicted latency"),
}


_VERBOSE_HELP = ("show debug logging, and the traceback of an error above its one line (before or after the command; "
                 "the exit status is 2 either way)")


def _show_warnings_as_lines(command: str) -> None:
    """Print each warning as one ``nni-latency COMMAND: warning: ...`` line (no file name, no source line)."""
    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        print(f"nni-latency {command}: warning: {text}", file=sys.stderr if file is None else file)

    warnings.showwarning = show


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` only where it informs: not on required options, flags, unset (None) values, or
    options whose help already says what happens by default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.required or action.default in (None, False, [], argparse.SUPPRESS)
                or "default" in text or "unset" in text):
            return text
        return super()._get_help_string(action)


# A value that starts with a minus and a digit (``--input-shape -1,3,8,8``): argparse would take it for an option.
_NEGATIVE_VALUE = re.compile(r"-\d[\d.,x]*")


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--opt -1,3`` -> ``--opt=-1,3``, so the option's own check says what is wrong with the value."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1].startswith("--") and "=" not in joined[-1] and _NEGATIVE_VALUE.fullmatch(arg):
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return joined


class _Parser(argparse.ArgumentParser):
    """A usage error is one line (``nni-latency CMD: error: ...``) and exit status 2, like every other error."""

    def parse_known_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(_attach_negative_values(argv), namespace)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Third-party loggers that report a Ctrl-C as their own failure ("Model 1 fails to be executed").
_SILENCED_ON_INTERRUPT = ("nni", "pytorch_lightning", "lightning.pytorch", "lightning_fabric")


class _Interrupted(list):
    """Truthy once Ctrl-C was pressed."""


@contextlib.contextmanager
def _interruptible() -> Iterator[_Interrupted]:
    """Ctrl-C raises ``KeyboardInterrupt`` as usual, and also silences the libraries that would log it as an error
    of theirs; the handler and the loggers are restored afterwards."""
    state = _Interrupted()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    loggers = {name: logging.getLogger(name) for name in _SILENCED_ON_INTERRUPT}
    disabled = {name: logger.disabled for name, logger in loggers.items()}

    def on_interrupt(signum, frame):
        state.append(signum)
        for logger in loggers.values():
            logger.disabled = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
        for name, logger in loggers.items():
            logger.disabled = disabled[name]


def interrupted_message(args: argparse.Namespace) -> str:
    """The one line after Ctrl-C: what was kept, and how to go on."""
    folder = getattr(args, "output_dir", None)
    if args.command in ("profile", "evaluate") and folder:
        return (f"interrupted; every measurement taken so far is kept in {folder}: rerun the same command to "
                "resume where it stopped")
    if args.command == "search":
        return (f"interrupted; the search is not resumable, and {folder or 'its output folder'} keeps only what it "
                "wrote before: rerun the same command to search again")
    return "interrupted; nothing was written: rerun the same command"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nni-latency",
        description="Learn a small latency model of a device from ~100 micro-benchmarks, predict any conv "
                    "block with it, and use it as the latency term of NNI's FBNet-style search.",
        epilog="Run `nni-latency COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:  # a real missing dependency: let it surface
                raise
            continue
        sub = subparsers.add_parser(name, help=help_text, description=help_text,
                                    formatter_class=_HelpFormatter)
        sub.set_defaults(_module=module_name)
        # -v after the command too (`nni-latency predict ... -v`); SUPPRESS keeps a -v given before it
        sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP)
        module.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not args.command:
        parser.print_help()
        return 2
    with warnings.catch_warnings():  # the filters and the warning format are this command's, not the caller's
        quiet_third_party()
        _show_warnings_as_lines(args.command)
        try:
            with _interruptible() as interrupted:
                return int(importlib.import_module(args._module).run(args) or 0)
        except KeyboardInterrupt:
            print(f"nni-latency {args.command}: {interrupted_message(args)}", file=sys.stderr)
            return 130
        except SystemExit:
            if not interrupted:  # Lightning turns Ctrl-C into exit(1): still an interruption
                raise
            print(f"nni-latency {args.command}: {interrupted_message(args)}", file=sys.stderr)
            return 130
        except Exception as error:  # noqa: BLE001 -- every error becomes one line; -v shows the traceback
            if args.verbose:  # the traceback first, then the same line and the same exit status as without -v
                traceback.print_exc(file=sys.stderr)
            print(f"nni-latency {args.command}: error: {describe_error(error)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
