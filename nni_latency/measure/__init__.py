"""Measuring: the protocol every block is timed under (``protocol``), a measurement and its statistics
(``measurement``), one module timed by its runtime (``latency``), many items in interleaved rounds (``rounds``),
networks each in a fresh process (``isolated``), the allocator policy, the host's load and the drift probe."""
