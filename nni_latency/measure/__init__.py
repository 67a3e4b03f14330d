"""Measuring, above the runtimes: one module timed by its protocol's runtime (``latency``), many items in
interleaved rounds appended to a row store (``rounds``), networks each in a fresh process (``isolated``), the
allocator policy of a measuring process, the host's load while measuring, and the drift probe."""
