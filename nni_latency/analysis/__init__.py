"""Where a network's time goes: cut into blocks (``network``), into attention / MLP / other parts (``parts``), ranked
by predicted latency (``report``: ``analyze_network``), and measured against predicted per operator class
(``op_errors``)."""

from .report import REST, BlockRow, LatencyReport, analyze_network, format_shape

__all__ = ["analyze_network", "LatencyReport", "BlockRow", "REST", "format_shape"]
