"""One module per ``nni-latency`` command; each defines HELP, add_arguments(parser) and run(args)."""
