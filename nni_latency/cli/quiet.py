"""Keeping NNI's and Lightning's console chatter (import-time warnings, INFO logs, tips) off a script's or the
command line's output, so that what is printed is our own progress and results.

``quiet_nni()`` is for scripts that drive NNI (the README's search snippet): call it before the search. The
command line calls ``quiet_third_party()``, which imports nothing (so ``--help`` stays fast).
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["THIRD_PARTY", "quiet_third_party", "quiet_nni"]

# Packages whose warnings and INFO logs are kept off the console.
THIRD_PARTY = ("nni", "pytorch_lightning", "lightning_fabric", "lightning")


def quiet_third_party() -> None:
    """Ignore the warnings raised inside ``THIRD_PARTY`` packages and raise their loggers to ERROR.

    A warnings filter's ``module`` is a regular expression matched at the start of the module name, so each
    is anchored: a bare "nni" would also match ``nni_latency`` and hide our own warnings (dropped rows,
    extrapolation). NNI and Lightning reset their loggers when imported: call this after importing them.
    """
    for package in THIRD_PARTY:
        warnings.filterwarnings("ignore", module=rf"{package}(\.|$)")
        logging.getLogger(package).setLevel(logging.ERROR)


def quiet_nni() -> None:
    """Import NNI's NAS package and Lightning with their import-time warnings hidden, then quiet them
    (``quiet_third_party``): a script that runs an NNI search then prints only its own lines."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nni.nas.nn.pytorch  # noqa: F401 -- warns at import about torch classes it does not know
        import pytorch_lightning  # noqa: F401
    quiet_third_party()
