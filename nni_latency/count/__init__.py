"""What a latency model prices, whatever runtime counted it: ``BlockFeatures`` and ``OpRecord`` (``features``), the
inputs a module is counted and timed on (``inputs``), and what one counted pass cannot tell (``forward_checks``).
Counting itself is a runtime's (``runtimes``)."""
