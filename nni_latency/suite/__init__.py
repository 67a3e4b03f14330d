"""What a profile measures: the block families (``blocks``, ``tokens``, ``cell_ops``), the sampled suite of blocks and
chains (``sampling``) and its YAML config (``config``)."""

from .sampling import (STREAM_FAMILIES, TOKEN_BLOCK_FAMILIES, last_level_cache_bytes, round_channels, sample_chains,
                       sample_specs, suite_specs)

__all__ = ["sample_specs", "sample_chains", "suite_specs", "round_channels", "TOKEN_BLOCK_FAMILIES",
           "last_level_cache_bytes", "STREAM_FAMILIES"]
