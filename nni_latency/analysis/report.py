"""Bottleneck report of a whole network: its blocks ranked by the latency a device model predicts for them.

``network`` cuts the network into blocks and records their calls; features are additive, so the network
minus its blocks is the ``(rest)`` row: functional code in parent forwards (``torch.flatten``, a residual
add) and modules outside the chosen blocks.

The rows partition the whole-network prediction exactly. Each row costs its features times the
coefficients of the model's affine piece at the whole network (``LatencyModel.cost_terms``); the
intercept, a fixed cost paid once per prediction, goes to ``(rest)``. ``standalone_ms`` is the block
predicted on its own (intercept included), which is what a standalone measurement of the block is
compared with. ``analyze_network`` is the entry point; ``plots.plot_report`` draws a report.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from torch import nn

from ..count.features import ROLES, BlockFeatures
from ..count.inputs import check_countable, format_inputs, input_specs, with_bounds
from ..deprecation import deprecated_names
from ..errors import InvalidInput
from ..measure.drift import check_drift
from ..measure.rounds import measure_modules
from ..model.coverage import check_threads
from ..model.model import LatencyModel
from ..model.terms import CostTerms, dominant_role
from ..runtimes import get_table
from ..runtimes.protocol import MeasurementProtocol
from .network import (Shapes, attribute_features, block_features, record_calls, runnable_blocks, select_blocks,
                      sum_features)
from .op_errors import OpClassRow, format_op_classes, op_class_rows
from .parts import PARTS, auto_blocks, classified_modules, owner

_logger = logging.getLogger(__name__)

__all__ = ["analyze_network", "LatencyReport", "BlockRow", "REST", "format_shape"]

REST = "(rest)"


@dataclass
class BlockRow:
    """One row of the report: a block (or the ``(rest)`` of the network) and its predicted cost."""

    name: str
    type: str
    calls: list[Shapes]
    features: dict[str, float]
    predicted_ms: float
    standalone_ms: float
    split: dict[str, float]
    share: float = 0.0
    cumulative_share: float = 0.0
    bottleneck: bool = False
    measured_ms: float | None = None
    measured_iqr_ms: float | None = None
    op_counts: dict[str, int] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)  # ms in attention, mlp and other (``nni_latency.analysis.parts``)

    @property
    def input_shape(self) -> tuple[int, ...] | list[tuple[int, ...]] | None:
        """The first call's input shape (a list of shapes for a block with several tensor arguments)."""
        if not self.calls:
            return None
        first = self.calls[0]
        return first[0] if len(first) == 1 else list(first)

    @property
    def bound(self) -> str:
        return dominant_role(self.split)

    @property
    def error(self) -> float | None:
        """Relative error of the standalone prediction against the standalone measurement."""
        if self.measured_ms is None or self.measured_ms <= 0:
            return None
        return (self.standalone_ms - self.measured_ms) / self.measured_ms

    def to_dict(self) -> dict[str, Any]:
        def shape_json(shapes: Shapes):
            return list(shapes[0]) if len(shapes) == 1 else [list(s) for s in shapes]

        data = {
            "name": self.name, "type": self.type,
            "input_shape": shape_json(self.calls[0]) if self.calls else None,
            "input_shapes": [shape_json(c) for c in self.calls], "calls": len(self.calls),
            "flops": self.features.get("flops", 0.0), "acts": self.features.get("acts", 0.0),
            "predicted_ms": self.predicted_ms, "share": self.share, "cumulative_share": self.cumulative_share,
            "bound": self.bound, **{f"{role}_ms": self.split[role] for role in ROLES},
            **{f"{part}_ms": self.parts.get(part, 0.0) for part in PARTS},
            "bottleneck": self.bottleneck, "standalone_ms": self.standalone_ms,
            "measured_ms": self.measured_ms, "measured_iqr_ms": self.measured_iqr_ms, "error": self.error,
            "features": dict(self.features),
        }
        if self.name == REST:
            data["op_counts"] = dict(self.op_counts)
        return data


@dataclass
class LatencyReport:
    """Blocks of one network ranked by predicted latency; rows sum to ``total_predicted_ms``."""

    network: str
    input_shape: tuple[int, ...]
    model_kind: str
    model_device: dict[str, Any]
    split: str
    blocks: list[BlockRow]
    total_predicted_ms: float
    measurement: dict[str, Any] | None = None
    model_protocol: MeasurementProtocol | None = None  # how the model's blocks were measured, if it says
    op_classes: list[OpClassRow] | None = None  # measured and predicted time per operator class (``op_classes``)

    @property
    def bottlenecks(self) -> list[BlockRow]:
        return [row for row in self.blocks if row.bottleneck]

    @property
    def parts(self) -> dict[str, float]:
        """Predicted ms of the whole network in attention, MLP and other modules (``nni_latency.analysis.parts``)."""
        return {part: sum(row.parts.get(part, 0.0) for row in self.blocks) for part in PARTS}

    @property
    def has_parts(self) -> bool:
        """Whether the network has attention or MLP modules at all (else every row is all "other")."""
        return any(row.parts.get("attention") or row.parts.get("mlp") for row in self.blocks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network, "input_shape": list(self.input_shape), "input": format_inputs(self.input_shape),
            "split": self.split,
            "model": {"kind": self.model_kind, "device": self.model_device.get("name"),
                      "threads": getattr(self.model_protocol, "threads", None),
                      "dtype": getattr(self.model_protocol, "dtype", None)},
            "total_predicted_ms": self.total_predicted_ms,
            "bottlenecks": [row.name for row in self.bottlenecks],
            "bottleneck_share": sum(row.share for row in self.bottlenecks),
            "parts": {**{f"{part}_ms": ms for part, ms in self.parts.items()},
                      **{f"{part}_share": ms / self.total_predicted_ms if self.total_predicted_ms > 0 else 0.0
                         for part, ms in self.parts.items()}},
            "measurement": self.measurement,
            "blocks": [row.to_dict() for row in self.blocks],
            **({"op_classes": [row.to_dict() for row in self.op_classes]} if self.op_classes is not None else {}),
        }

    def format_table(self) -> str:
        """A plain-text table, heaviest block first; ``*`` marks the bottlenecks."""
        measured = self.measurement is not None
        header = ["", "block", "type", "input", "FLOPs", "acts", "pred ms", "share", "cum", "bound"]
        if self.has_parts:
            header += ["attn", "mlp"]
        if measured:
            header += ["alone ms", "meas ms", "error"]
        lines = []
        for rank, row in enumerate(self.blocks, start=1):
            cells = [f"{'*' if row.bottleneck else ' '}{rank}", row.name, _row_type(row), _format_calls(row.calls),
                     _si(row.features.get("flops", 0.0)), _si(row.features.get("acts", 0.0)),
                     f"{row.predicted_ms:.3f}", f"{100 * row.share:.1f}%", f"{100 * row.cumulative_share:.1f}%",
                     row.bound]
            if self.has_parts:
                cells += [_part_share(row, "attention"), _part_share(row, "mlp")]
            if measured:
                cells += [f"{row.standalone_ms:.3f}" if row.calls else "-",
                          "-" if row.measured_ms is None else f"{row.measured_ms:.3f}",
                          "-" if row.error is None else f"{100 * row.error:+.1f}%"]
            lines.append(cells)
        right = {"FLOPs", "acts", "pred ms", "share", "cum", "attn", "mlp", "alone ms", "meas ms", "error"}
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]

        def fmt(cells):
            return "  ".join(c.rjust(w) if h in right else c.ljust(w)
                             for c, w, h in zip(cells, widths, header)).rstrip()

        device = self.model_device.get("name") or self.model_device.get("type") or "unknown device"
        threads = getattr(self.model_protocol, "threads", None)
        title = (f"{self.network} on {format_shape(self.input_shape)}, blocks: {self.split}; "
                 f"{self.model_kind} model of {device}" + (f", {threads} thread(s)" if threads else ""))
        out = [title, fmt(header), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines]
        names = ", ".join(row.name for row in self.bottlenecks) or "none"
        share = sum(row.share for row in self.bottlenecks)
        out.append(f"total predicted {self.total_predicted_ms:.3f} ms; bottlenecks (*): {names} "
                   f"= {100 * share:.1f}% of the time")
        if self.has_parts:
            total = self.total_predicted_ms or 1.0
            out.append("by module: " + ", ".join(f"{_PART_LABELS[part]} {100 * ms / total:.1f}%"
                                                 for part, ms in self.parts.items())
                       + " of the time (columns attn, mlp: their share of each row's time)")
        if measured:
            m = self.measurement
            out.append(f"measured whole network {m['total_ms']:.3f} ms on {m['device']} ({m['threads']} thread(s), "
                       "in this process); "
                       f"predicted {self.total_predicted_ms:.3f} ms ({100 * m['error']:+.1f}%); "
                       f"measured blocks sum to {m['blocks_sum_ms']:.3f} ms")
            if m.get("drift"):
                out.append(f"drift: {m['drift']['message']}")
        if self.op_classes is not None:
            clock = get_table(getattr(self.model_protocol, "runtime", "torch")).op_clock
            out += ["", f"by operator class ({clock}; largest error first):",
                    format_op_classes(self.op_classes)]
        return "\n".join(out)


_PART_LABELS = {"attention": "attention", "mlp": "MLP", "other": "other"}


def _part_share(row: BlockRow, part: str) -> str:
    return f"{100 * row.parts.get(part, 0.0) / row.predicted_ms:.0f}%" if row.predicted_ms > 0 else "-"


def _row_type(row: BlockRow) -> str:
    if row.name != REST:
        return row.type
    ops = Counter(row.op_counts).most_common(3)
    return "ops: " + ", ".join(f"{op}x{n}" if n > 1 else op for op, n in ops) if ops else "-"


def format_shape(shape: Sequence[int]) -> str:
    """``1x3x224x224``; an input of another dtype than floats says it (``1x64:int64``), several are joined by +."""
    return "+".join("x".join(str(int(d)) for d in spec) + (f":{str(spec.dtype).removeprefix('torch.')}"
                                                           if spec.dtype is not None else "")
                    for spec in input_specs(shape))


def _format_calls(calls: Sequence[Shapes]) -> str:
    if not calls:
        return "-"
    first = "+".join(format_shape(s) for s in calls[0])
    return first if len(calls) == 1 else f"{first} (x{len(calls)} calls)"


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def _rank(rows: list[BlockRow], total_ms: float, top: int | None, bottleneck_share: float) -> list[BlockRow]:
    order = sorted(rows, key=lambda r: -r.predicted_ms)  # stable: ties keep the network's order
    running = 0.0
    for index, row in enumerate(order):
        row.share = row.predicted_ms / total_ms if total_ms > 0 else 0.0
        before = running
        running += row.share
        row.cumulative_share = running
        if top is not None:
            row.bottleneck = index < top and row.predicted_ms > 0
        else:
            row.bottleneck = before < bottleneck_share and row.predicted_ms > 0
    return order


def _measure(network: nn.Module, modules: Mapping[str, nn.Module], rows: Sequence[BlockRow],
             input_shape: Sequence[int], protocol: MeasurementProtocol, options: Mapping[str, Any],
             progress: bool) -> dict[str, Any]:
    """Time every distinct call of every block, and the whole network, under ``protocol``."""
    calls = [(row.name, shapes) for row in rows if row.name in modules for shapes in dict.fromkeys(row.calls)]
    jobs = [(name, modules[name], shapes[0] if len(shapes) == 1 else list(shapes)) for name, shapes in calls]
    jobs.append(("whole network", network, input_shape))
    *measured, whole = measure_modules(jobs, protocol, progress=progress, **options)
    timed = dict(zip(calls, measured))
    for row in rows:
        if row.name in modules and row.calls:
            row.measured_ms = sum(timed[(row.name, s)].latency_ms for s in row.calls)
            row.measured_iqr_ms = sum(timed[(row.name, s)].iqr_ms for s in row.calls)
    blocks_sum = sum(row.measured_ms or 0.0 for row in rows)
    return {"device": protocol.device, "threads": protocol.threads, "dtype": protocol.dtype,
            "protocol": protocol.protocol, "allocator": protocol.allocator, "total_ms": whole.latency_ms,
            "iqr_ms": whole.iqr_ms, "noisy": whole.noisy, "blocks_sum_ms": blocks_sum,
            "noisy_blocks": [name for (name, _), m in timed.items() if m.noisy]}


def _choose_blocks(module: nn.Module, depth: int | None, blocks: Sequence[str] | None, input_shape: tuple[int, ...],
                   model: LatencyModel) -> tuple[list[tuple[str, nn.Module]], str]:
    """The blocks to report and how they were chosen: named, ``depth`` levels down, or (depth None) the
    encoder blocks of a transformer and the modules around them (``parts.auto_blocks``), else depth 1."""
    if blocks or depth is not None:
        chosen = select_blocks(module, 1 if depth is None else depth, blocks)
        return chosen, f"named ({len(chosen)})" if blocks else f"depth {depth} ({len(chosen)})"
    rows, encoders = auto_blocks(module)
    if not rows:
        chosen = select_blocks(module, 1)
        return chosen, f"depth 1 ({len(chosen)})"
    everything = [(name, sub) for name, sub in module.named_modules() if name]
    _, calls = record_calls(module, everything, input_shape, model.count, strict=False)
    chosen = runnable_blocks(module, rows, calls)
    kept = sum(1 for name, _ in chosen if name in encoders)
    return chosen, f"{kept} encoder blocks and {len(chosen) - kept} others"


def _split_parts(module: nn.Module, input_shape: tuple[int, ...], model: LatencyModel, terms: CostTerms,
                 rows: list[BlockRow]) -> None:
    """Fill each row's ``parts``: the ms its attention and MLP modules cost inside the network (counted in one
    pass, priced with the same cost terms as the rows), and the rest of the row as other."""
    classified = classified_modules(module)
    counted = (attribute_features(module, input_shape, [(n, m) for n, m, _ in classified], model)
               if classified else {})
    named = {row.name: row for row in rows if row.name != REST}
    for row in rows:
        row.parts = dict.fromkeys(PARTS, 0.0)
    for name, _, part in classified:
        if name not in counted:  # never called
            continue
        ms = terms.predict(counted[name].as_dict(), include_intercept=False)
        block = owner(name, list(named))
        if block is not None:
            named[block].parts[part] += ms
            continue
        inner = [row for row in named.values() if owner(row.name, [name])]  # rows cut out of this module
        for row in inner:
            row.parts[part] += row.predicted_ms
        rows[-1].parts[part] += ms - sum(row.predicted_ms for row in inner)  # (rest) is the last row
    for row in rows:
        row.parts["other"] = row.predicted_ms - row.parts["attention"] - row.parts["mlp"]


def analyze_network(module: nn.Module, input_shape: Sequence[int], model: LatencyModel, depth: int | None = None,
                    blocks: Sequence[str] | None = None, measure: bool = False, *, top: int | None = None,
                    bottleneck_share: float = 0.5, device: str | None = None, threads: int | None = None,
                    measure_options: Mapping[str, Any] | None = None, progress: bool = False,
                    ops: bool = False) -> LatencyReport:
    """Rank the blocks of ``module`` on ``input_shape`` by the latency ``model`` predicts for them.

    Blocks are the children ``depth`` levels down, or the qualified ``blocks`` names; by default, a
    transformer's encoder blocks and the modules around them, any other network's children. Each row
    also splits its time into attention, MLP and other (``nni_latency.analysis.parts``). Bottlenecks are the
    ``top`` heaviest rows, or else the heaviest rows that make up ``bottleneck_share`` of the time.
    With ``measure``, every block and the whole network are also timed with ``measure_latency`` under the
    model's protocol (``device``/``threads`` replace the model's; ``measure_options`` go to
    ``measure_latency``, e.g. ``min_run_time``). With ``measure`` and ``ops``, every call is also timed in
    place and compared with what the model charges it, per operator class (``op_classes``). The allocator
    policy is the caller's to set (``timing.apply_allocator_policy``).
    """
    if ops and not measure:
        raise InvalidInput("the per-operator view compares measured with predicted time: ask for measure=True too "
                         "(--measure on the command line)")
    if top is not None and top < 1:
        raise InvalidInput(f"top must be at least 1, got {top}")
    if not 0 < bottleneck_share <= 1:
        raise InvalidInput(f"bottleneck_share must be in (0, 1], got {bottleneck_share}")
    check_countable(module)
    specs = with_bounds(input_specs(input_shape), module)  # token ids drawn below the module's embeddings' sizes
    input_shape = specs[0] if len(specs) == 1 else specs
    chosen, split = _choose_blocks(module, depth, blocks, input_shape, model)
    whole, calls = record_calls(module, chosen, input_shape, model.count)  # counted as the model's runtime runs it
    whole_features = whole.as_dict()
    terms = model.cost_terms(whole_features)
    names = model.feature_names
    # A runtime that fuses across modules (ORT) runs no block inside the network as it runs it alone: each row
    # holds the nodes the network ran in that block's scope instead of the block counted alone.
    inside = attribute_features(module, input_shape, chosen, model) if get_table(model.runtime).fuses_modules else None

    cache: dict[tuple[int, Shapes], BlockFeatures] = {}
    rows, counted = [], []
    for name, block in chosen:
        per_call = block_features(name, block, calls[name], cache, model.count)
        if inside is not None:
            counted.extend([inside[name]] if name in inside else [])
            features = sum_features([inside[name]] if name in inside else [], names)
        else:
            counted.extend(per_call)
            features = sum_features(per_call, names)
        standalone = float(model.predict(per_call).sum()) if per_call else 0.0
        rows.append(BlockRow(name=name or type(block).__name__, type=type(block).__name__, calls=calls[name],
                             features=features, predicted_ms=terms.predict(features, include_intercept=False),
                             standalone_ms=standalone, split=terms.split(features)))

    blocks_total = sum_features(counted, names)
    rest = {k: whole_features.get(k, 0.0) - blocks_total[k] for k in names}
    negative = [k for k, v in rest.items() if v < -1e-6 * max(1.0, abs(whole_features[k]))]
    if negative:
        warnings.warn(f"the blocks alone count more {', '.join(negative)} than the whole network; the (rest) row "
                      "is negative there (a block behaves differently alone than inside the network)", stacklevel=2)
    rest_ops = Counter(whole.op_counts)
    for features in counted:
        rest_ops.subtract(features.op_counts)
    rows.append(BlockRow(name=REST, type="outside blocks", calls=[], features=rest,
                         predicted_ms=terms.predict(rest, include_intercept=True),
                         standalone_ms=terms.predict(rest, include_intercept=True),
                         split=terms.split(rest, include_intercept=True),
                         op_counts={op: n for op, n in rest_ops.items() if n > 0}))

    total = sum(row.predicted_ms for row in rows)
    whole_ms = max(terms.predict(whole_features), 0.0)  # what model.predict gives for the whole network
    if not math.isclose(total, whole_ms, rel_tol=1e-6, abs_tol=1e-9):
        warnings.warn(f"rows sum to {total:.4g} ms but the model predicts {whole_ms:.4g} ms for the whole network "
                      "(the model clips negative predictions to 0)", stacklevel=2)
    _split_parts(module, input_shape, model, terms, rows)
    ranked = _rank(rows, total, top, bottleneck_share)
    report = LatencyReport(network=type(module).__name__, input_shape=input_shape, model_kind=model.kind,
                           model_device=dict(model.device), split=split, blocks=ranked, total_predicted_ms=total,
                           model_protocol=model.protocol)
    if measure:
        protocol = model.measuring_protocol(threads=threads, device=device)
        modules = {row.name: block for row, (_, block) in zip(rows, chosen)}
        check_threads(model, threads, stacklevel=3)
        drift = check_drift(model, protocol, stacklevel=3)  # did the machine move since profiling?
        report.measurement = _measure(module, modules, rows, input_shape, protocol, measure_options or {}, progress)
        report.measurement["error"] = (total - report.measurement["total_ms"]) / report.measurement["total_ms"]
        report.measurement["drift"] = drift.to_dict() if drift is not None else None
        if ops:
            report.op_classes = op_class_rows(module, input_shape, model, protocol,
                                              whole_ms=report.measurement["total_ms"])
    _logger.debug("analyzed %s: %d blocks, %.3f ms predicted", report.network, len(chosen), total)
    return report


__getattr__ = deprecated_names(__name__, {
    "analyze": "nni_latency.analysis.report:analyze_network", "Report": "nni_latency.analysis.report:LatencyReport",
    "plot_report": "nni_latency.plots:plot_report", "classify_bound": "nni_latency.model.terms:dominant_role",
    "CostTerms": "nni_latency.model.terms:CostTerms", "FEATURE_ROLES": "nni_latency.model.terms:TERM_ROLES",
})
