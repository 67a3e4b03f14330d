"""One module per ``nni-latency`` command; each defines add_arguments(parser) and run(args), and imports the
library only inside run, so that building the parser stays cheap (no torch)."""
