"""``nni-latency search``: a YAML-configured FBNet search in NNI that uses the predicted latency.

``config`` is the YAML schema, ``data`` the datasets and splits, ``run`` the experiment, ``report``
the files it writes. ``run_search(load_search_config(path))`` is the whole thing from Python.
"""

from ..errors import require

require(("nni", "pytorch_lightning"), "nas", "nni-latency search")

from .config import SearchConfig, load_search_config
from .run import SearchResult, run_search

__all__ = ["SearchConfig", "load_search_config", "SearchResult", "run_search"]
