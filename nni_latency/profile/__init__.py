"""Profiling a device: the suite measured through its runtime, every operator timed in place, rows appended as they
are taken, the device model fitted and written (``run``), and the summary printed after it (``summary``)."""
