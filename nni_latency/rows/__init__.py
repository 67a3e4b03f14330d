"""The measured rows (JSONL): one store that reads, appends, groups the rounds of an item, checks that rows come from
one machine and one protocol and sets old files aside (``store``, ``check``), resume (``resume``), and the
operators' in-place times grouped by class for the fit (``ops``)."""
