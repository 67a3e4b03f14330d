"""The ``nni-latency`` command line: a thin dispatcher over ``nni_latency.commands.<name>`` modules.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``; its one-line help is in
``COMMANDS``. Command modules import only argparse-level things at top level and the library inside
``run``, so importing this module does not import torch, ``--help`` answers at once, and NNI is loaded
only by the commands that need it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from . import __version__
from .errors import describe_error
from .quiet import quiet_third_party

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "profile": ("nni_latency.commands.profile", "benchmark a device, fit its latency model, write device_model.json"),
    "fit": ("nni_latency.commands.fit", "refit a device model from a microbench.jsonl without measuring again"),
    "predict": ("nni_latency.commands.predict", "predict the latency of one block or a module from a Python file"),
    "evaluate": ("nni_latency.commands.evaluate", "measure a held-out test set and score a device model on it"),
    "analyze": ("nni_latency.commands.analyze", "find the bottleneck blocks of a whole network"),
    "lut": ("nni_latency.commands.lut", "write the predicted (or measured) per-layer lookup table of a search space"),
    "search": ("nni_latency.commands.search", "run a YAML-configured FBNet search in NNI with the predicted latency"),
}


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


class _Parser(argparse.ArgumentParser):
    """A usage error is one line (``nni-latency CMD: error: ...``) and exit status 2, like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nni-latency",
        description="Learn a small latency model of a device from ~100 micro-benchmarks, predict any conv "
                    "block with it, and use it as the latency term of NNI's FBNet-style search.",
        epilog="Run `nni-latency COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
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
            return int(importlib.import_module(args._module).run(args) or 0)
        except KeyboardInterrupt:
            print("interrupted; measured points are kept, rerun the same command to resume", file=sys.stderr)
            return 130
        except Exception as error:  # noqa: BLE001 -- every error becomes one line; -v shows the traceback
            if args.verbose:
                raise
            print(f"nni-latency {args.command}: error: {describe_error(error)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
