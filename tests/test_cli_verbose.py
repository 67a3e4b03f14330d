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
def test_verbose_shows_the_traceback_above_the_one_line_and_keeps_exit_status_2(argv, capsys):
    """docs/TROUBLESHOOTING.md: every bad input ends in one line and exit status 2; -v adds the traceback above it,
    so a script's check of the exit status does not depend on -v."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("nni-latency predict: error: ") and "no such file" in err
    assert main(_MISSING) == 2
    quiet = capsys.readouterr().err
    assert "Traceback" not in quiet and len(quiet.strip().splitlines()) == 1


def test_verbose_exit_status_from_the_shell_is_2(tmp_path):
    """The installed command, not only main(): an uncaught exception would exit 1."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "nni_latency.cli.dispatch", "-v", *_MISSING], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" in result.stderr
