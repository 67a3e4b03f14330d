"""``-v`` works before or after the command: the error then surfaces with its traceback instead of one line."""

from __future__ import annotations

import pytest

from nni_latency.cli.dispatch import build_parser, main

_MISSING = ["predict", "--model", "no/such/device_model.json", "--family", "mbconv", "--c-in", "8", "--c-out", "8"]


@pytest.mark.parametrize("argv, verbose", [
    (["-v", *_MISSING], True),
    ([*_MISSING, "-v"], True),
    ([*_MISSING, "--verbose"], True),
    (_MISSING, False),
], ids=["before", "after", "after_long", "absent"])
def test_verbose_flag_position(argv, verbose):
    assert build_parser().parse_args(argv).verbose is verbose


@pytest.mark.parametrize("argv", [["-v", *_MISSING], [*_MISSING, "-v"]], ids=["before", "after"])
def test_verbose_raises_instead_of_one_line(argv, capsys):
    with pytest.raises(ValueError, match="no such file"):
        main(argv)
    assert main(_MISSING) == 2 and "error: " in capsys.readouterr().err
