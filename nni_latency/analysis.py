"""Bottleneck report of a whole network: split it into blocks, predict each with a device model, rank them.

One forward pass of the whole network counts its features and, through forward pre-hooks, records the
input shapes every block is called with; each block is then counted alone on those shapes. Features are
additive, so the network minus its blocks is the ``(rest)`` row: functional code in parent forwards
(``torch.flatten``, a residual add) and modules outside the chosen blocks.

The rows partition the whole-network prediction exactly. Each row costs its features times the
coefficients of the model's affine piece at the whole network; the intercept, a fixed cost paid once per
prediction, goes to ``(rest)``. ``standalone_ms`` is the block predicted on its own (intercept included),
which is what a standalone measurement of the block is compared with.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from .features import FEATURE_NAMES, BlockFeatures, extract_features
from .features import FEATURE_ROLES as _FEATURE_ROLES
from .model import LatencyModel

_logger = logging.getLogger(__name__)

__all__ = [
    "analyze", "Report", "BlockRow", "CostTerms", "FEATURE_ROLES", "ROLES", "REST", "cost_terms",
    "classify_bound", "select_blocks", "plot_report",
]

REST = "(rest)"
ROLES: tuple[str, ...] = ("compute", "memory", "overhead")

# Which part of the cost each model term stands for: FLOPs terms are arithmetic, element counts are
# memory traffic, op counts are per-call overhead (the table lives beside the features it describes).
# The intercept is a fixed cost per prediction: overhead too.
FEATURE_ROLES: dict[str, str] = {**_FEATURE_ROLES, "intercept": "overhead"}


@dataclass(frozen=True)
class CostTerms:
    """One affine piece of a latency model: ms = sum_k coefficients[k] * feature_k + intercept."""

    coefficients: Mapping[str, float]
    intercept: float

    def __post_init__(self):
        unknown = [name for name in self.coefficients if name not in FEATURE_ROLES]
        if unknown:
            raise ValueError(f"model term(s) {', '.join(unknown)} have no role in features.FEATURE_ROLES; "
                             "add them there")

    def terms(self, features: Mapping[str, float]) -> dict[str, float]:
        """Milliseconds contributed by each feature term."""
        return {name: c * float(features.get(name, 0.0)) for name, c in self.coefficients.items()}

    def split(self, features: Mapping[str, float], include_intercept: bool = False) -> dict[str, float]:
        """Milliseconds per role (compute, memory, overhead)."""
        parts = dict.fromkeys(ROLES, 0.0)
        for name, ms in self.terms(features).items():
            parts[FEATURE_ROLES[name]] += ms
        if include_intercept:
            parts[FEATURE_ROLES["intercept"]] += self.intercept
        return parts

    def predict(self, features: Mapping[str, float], include_intercept: bool = True) -> float:
        return sum(self.terms(features).values()) + (self.intercept if include_intercept else 0.0)


def _relative_linear_terms(p: Mapping[str, Any], at: Mapping[str, float] | None) -> CostTerms:
    return CostTerms({k: float(v) for k, v in p["weights"].items()}, float(p["intercept"]))


def _flops_terms(p: Mapping[str, Any], at: Mapping[str, float] | None) -> CostTerms:
    return CostTerms({"flops": float(p["c"])}, float(p["d"]))


def _two_regime_terms(p: Mapping[str, Any], at: Mapping[str, float] | None) -> CostTerms:
    # initial = a*ACTS + b*INP + c*FLOPs + d; below the breakpoint slope*initial + offset, still affine.
    high = CostTerms({"acts": float(p["a"]), "inp": float(p["b"]), "flops": float(p["c"])}, float(p["d"]))
    if at is None or high.predict(at) >= float(p["breakpoint"]):
        return high
    slope = float(p["slope"])
    return CostTerms({k: slope * v for k, v in high.coefficients.items()},
                     slope * high.intercept + float(p["offset"]))


_TERMS_BY_KIND: dict[str, Callable[[Mapping[str, Any], Mapping[str, float] | None], CostTerms]] = {
    "relative_linear": _relative_linear_terms,
    "two_regime": _two_regime_terms,
    "flops": _flops_terms,
}


def cost_terms(kind: str, parameters: Mapping[str, Any], at: Mapping[str, float] | None = None) -> CostTerms:
    """The affine piece of a model of ``kind`` with ``parameters`` that applies at features ``at``.

    Piecewise kinds (``two_regime``) choose their regime from ``at``; linear kinds ignore it.
    """
    if kind not in _TERMS_BY_KIND:
        raise ValueError(f"cannot split a {kind!r} model into cost terms: analysis knows "
                         f"{', '.join(_TERMS_BY_KIND)}")
    try:
        return _TERMS_BY_KIND[kind](parameters, at)
    except (KeyError, TypeError) as error:
        raise ValueError(f"parameters of the {kind!r} model are incomplete ({error!s}); refit the model") from None


def classify_bound(split: Mapping[str, float]) -> str:
    """The role (compute, memory or overhead) with the largest share of a cost split; ``-`` for no cost."""
    if sum(max(v, 0.0) for v in split.values()) <= 0:
        return "-"
    return max(ROLES, key=lambda role: split.get(role, 0.0))


def _valid_names_hint(names: Sequence[str], limit: int = 16) -> str:
    # Shallow names first: those are what a user most likely meant.
    ordered = sorted(names, key=lambda n: n.count("."))
    shown = ", ".join(ordered[:limit])
    return shown + (f", ... ({len(ordered) - limit} more)" if len(ordered) > limit else "")


def select_blocks(network: nn.Module, depth: int = 1,
                  names: Sequence[str] | None = None) -> list[tuple[str, nn.Module]]:
    """The blocks to report: the children ``depth`` levels down (a leaf above that stays), or ``names``."""
    if names:
        available = {name: module for name, module in network.named_modules() if name}
        chosen = []
        for name in names:
            if name not in available:
                close = difflib.get_close_matches(name, list(available), n=1)
                guess = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"no block named {name!r} in {type(network).__name__}{guess}; "
                                 f"valid names: {_valid_names_hint(list(available)) or 'none'}")
            if name in (n for n, _ in chosen):
                raise ValueError(f"block {name!r} is named twice in --blocks; name each block once")
            chosen.append((name, available[name]))
        _check_disjoint(chosen)
        return chosen
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    level: list[tuple[str, nn.Module]] = [("", network)]
    for _ in range(depth):
        expanded: list[tuple[str, nn.Module]] = []
        for prefix, module in level:
            children = [(f"{prefix}.{n}" if prefix else n, m) for n, m in module.named_children()]
            expanded.extend(children or [(prefix, module)])
        level = expanded
    return level


def _check_disjoint(blocks: Sequence[tuple[str, nn.Module]]) -> None:
    # A block inside another would be counted twice and the (rest) row would go negative.
    owner: dict[int, str] = {}
    for name, module in blocks:
        for sub in module.modules():
            if id(sub) in owner:
                raise ValueError(f"blocks {owner[id(sub)]!r} and {name!r} overlap (one contains the other); "
                                 "name blocks that do not contain each other")
            owner[id(sub)] = name


Shapes = tuple[tuple[int, ...], ...]  # one shape per positional tensor argument of one call


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

    @property
    def input_shape(self) -> tuple[int, ...] | list[tuple[int, ...]] | None:
        """The first call's input shape (a list of shapes for a block with several tensor arguments)."""
        if not self.calls:
            return None
        first = self.calls[0]
        return first[0] if len(first) == 1 else list(first)

    @property
    def bound(self) -> str:
        return classify_bound(self.split)

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
            "bottleneck": self.bottleneck, "standalone_ms": self.standalone_ms,
            "measured_ms": self.measured_ms, "measured_iqr_ms": self.measured_iqr_ms, "error": self.error,
            "features": dict(self.features),
        }
        if self.name == REST:
            data["op_counts"] = dict(self.op_counts)
        return data


@dataclass
class Report:
    """Blocks of one network ranked by predicted latency; rows sum to ``total_predicted_ms``."""

    network: str
    input_shape: tuple[int, ...]
    model_kind: str
    model_device: dict[str, Any]
    split: str
    blocks: list[BlockRow]
    total_predicted_ms: float
    measurement: dict[str, Any] | None = None

    @property
    def bottlenecks(self) -> list[BlockRow]:
        return [row for row in self.blocks if row.bottleneck]

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network, "input_shape": list(self.input_shape), "split": self.split,
            "model": {"kind": self.model_kind, "device": self.model_device.get("name"),
                      "threads": self.model_device.get("threads"), "dtype": self.model_device.get("dtype")},
            "total_predicted_ms": self.total_predicted_ms,
            "bottlenecks": [row.name for row in self.bottlenecks],
            "bottleneck_share": sum(row.share for row in self.bottlenecks),
            "measurement": self.measurement,
            "blocks": [row.to_dict() for row in self.blocks],
        }

    def format_table(self) -> str:
        """A plain-text table, heaviest block first; ``*`` marks the bottlenecks."""
        measured = self.measurement is not None
        header = ["", "block", "type", "input", "FLOPs", "acts", "pred ms", "share", "cum", "bound"]
        if measured:
            header += ["alone ms", "meas ms", "error"]
        lines = []
        for rank, row in enumerate(self.blocks, start=1):
            cells = [f"{'*' if row.bottleneck else ' '}{rank}", row.name, _row_type(row), _format_calls(row.calls),
                     _si(row.features.get("flops", 0.0)), _si(row.features.get("acts", 0.0)),
                     f"{row.predicted_ms:.3f}", f"{100 * row.share:.1f}%", f"{100 * row.cumulative_share:.1f}%",
                     row.bound]
            if measured:
                cells += [f"{row.standalone_ms:.3f}" if row.calls else "-",
                          "-" if row.measured_ms is None else f"{row.measured_ms:.3f}",
                          "-" if row.error is None else f"{100 * row.error:+.1f}%"]
            lines.append(cells)
        right = {"FLOPs", "acts", "pred ms", "share", "cum", "alone ms", "meas ms", "error"}
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]

        def fmt(cells):
            return "  ".join(c.rjust(w) if h in right else c.ljust(w)
                             for c, w, h in zip(cells, widths, header)).rstrip()

        device = self.model_device.get("name") or self.model_device.get("type") or "unknown device"
        threads = self.model_device.get("threads")
        title = (f"{self.network} on {_format_shape(self.input_shape)}, blocks: {self.split}; "
                 f"{self.model_kind} model of {device}" + (f", {threads} thread(s)" if threads else ""))
        out = [title, fmt(header), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines]
        names = ", ".join(row.name for row in self.bottlenecks) or "none"
        share = sum(row.share for row in self.bottlenecks)
        out.append(f"total predicted {self.total_predicted_ms:.3f} ms; bottlenecks (*): {names} "
                   f"= {100 * share:.1f}% of the time")
        if measured:
            m = self.measurement
            out.append(f"measured whole network {m['total_ms']:.3f} ms on {m['device']} ({m['threads']} thread(s)); "
                       f"predicted {self.total_predicted_ms:.3f} ms ({100 * m['error']:+.1f}%); "
                       f"measured blocks sum to {m['blocks_sum_ms']:.3f} ms")
        return "\n".join(out)


def _row_type(row: BlockRow) -> str:
    if row.name != REST:
        return row.type
    ops = Counter(row.op_counts).most_common(3)
    return "ops: " + ", ".join(f"{op}x{n}" if n > 1 else op for op, n in ops) if ops else "-"


def _format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def _format_calls(calls: Sequence[Shapes]) -> str:
    if not calls:
        return "-"
    first = "+".join(_format_shape(s) for s in calls[0])
    return first if len(calls) == 1 else f"{first} (x{len(calls)} calls)"


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def _record_calls(network: nn.Module, blocks: Sequence[tuple[str, nn.Module]],
                  input_shape: Sequence[int]) -> tuple[BlockFeatures, dict[str, list[Shapes]]]:
    """Count the whole network in one forward pass, recording the input shapes of every block call."""
    calls: dict[str, list[Shapes]] = {name: [] for name, _ in blocks}
    untraceable: dict[str, str] = {}

    def recorder(name: str):
        def hook(_module, args, kwargs):
            tensors = [a for a in args if hasattr(a, "shape") and hasattr(a, "dtype")]
            if kwargs or len(tensors) != len(args) or not args:
                untraceable.setdefault(name, "keyword or non-tensor arguments" if args or kwargs else "no arguments")
                return
            calls[name].append(tuple(tuple(int(d) for d in a.shape) for a in args))
        return hook

    handles = [module.register_forward_pre_hook(recorder(name), with_kwargs=True) for name, module in blocks]
    try:
        whole = extract_features(network, input_shape)
    finally:
        for handle in handles:
            handle.remove()
    if untraceable:
        name, why = next(iter(untraceable.items()))
        raise ValueError(f"block {name!r} is called with {why}, so it cannot be predicted alone; "
                         "choose other blocks with --depth or --blocks")
    return whole, calls


def _block_features(name: str, module: nn.Module, calls: Sequence[Shapes],
                    cache: dict[tuple[int, Shapes], BlockFeatures]) -> list[BlockFeatures]:
    features = []
    for shapes in calls:
        key = (id(module), shapes)
        if key not in cache:
            try:
                cache[key] = extract_features(module, shapes[0] if len(shapes) == 1 else list(shapes))
            except ValueError as error:
                raise ValueError(f"block {name!r} cannot be run alone on its recorded input ({error})") from None
        features.append(cache[key])
    return features


def _sum_features(rows: Sequence[BlockFeatures]) -> dict[str, float]:
    total = dict.fromkeys(FEATURE_NAMES, 0.0)
    for row in rows:
        for name, value in row.as_dict().items():
            total[name] += value
    return total


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


def _measure_settings(model: LatencyModel, device: str | None, threads: int | None) -> dict[str, Any]:
    """measure_latency arguments that reproduce the conditions the model was profiled under."""
    from .timing import ALLOCATORS, PROTOCOLS

    info = model.device
    timing = (info.get("config") or {}).get("timing") or {}
    settings = {
        "device": device or info.get("device") or info.get("type") or "cpu",
        "threads": int(threads if threads is not None else info.get("threads") or 1),
        "dtype": info.get("dtype") or "fp32",
        "protocol": info.get("protocol") if info.get("protocol") in PROTOCOLS else "rotate",
        "allocator": info.get("allocator") if info.get("allocator") in ALLOCATORS else "steady",
    }
    if isinstance(timing.get("working_set_mb"), (int, float)):
        settings["working_set_mb"] = float(timing["working_set_mb"])
    if settings["threads"] < 1:
        raise ValueError(f"threads must be at least 1, got {settings['threads']}")
    return settings


def _measure(network: nn.Module, modules: Mapping[str, nn.Module], rows: Sequence[BlockRow],
             input_shape: Sequence[int], settings: Mapping[str, Any], options: Mapping[str, Any],
             progress: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from .timing import measure_latency

    jobs = [(row, shapes) for row in rows if row.name in modules for shapes in dict.fromkeys(row.calls)]
    timed: dict[tuple[str, Shapes], Any] = {}
    kwargs = {k: v for k, v in settings.items() if k != "device"}
    kwargs.update(options)
    with tqdm(total=len(jobs) + 1, desc="measuring", unit="block", disable=not progress, dynamic_ncols=True) as bar:
        for row, shapes in jobs:
            bar.set_postfix_str(row.name, refresh=False)
            shape = shapes[0] if len(shapes) == 1 else list(shapes)
            timed[(row.name, shapes)] = measure_latency(modules[row.name], shape, settings["device"], **kwargs)
            bar.update()
        bar.set_postfix_str("whole network", refresh=False)
        whole = measure_latency(network, input_shape, settings["device"], **kwargs)
        bar.update()
    for row in rows:
        if row.name in modules and row.calls:
            row.measured_ms = sum(timed[(row.name, s)].median_ms for s in row.calls)
            row.measured_iqr_ms = sum(timed[(row.name, s)].iqr_ms for s in row.calls)
    blocks_sum = sum(row.measured_ms or 0.0 for row in rows)
    return {**settings, "total_ms": whole.median_ms, "iqr_ms": whole.iqr_ms, "noisy": whole.noisy,
            "blocks_sum_ms": blocks_sum, "noisy_blocks": [name for (name, _), m in timed.items() if m.noisy]}


def analyze(module: nn.Module, input_shape: Sequence[int], model: LatencyModel, depth: int = 1,
            blocks: Sequence[str] | None = None, measure: bool = False, *, top: int | None = None,
            bottleneck_share: float = 0.5, device: str | None = None, threads: int | None = None,
            measure_options: Mapping[str, Any] | None = None, progress: bool = False) -> Report:
    """Rank the blocks of ``module`` on ``input_shape`` by the latency ``model`` predicts for them.

    Blocks are the children ``depth`` levels down, or the qualified ``blocks`` names. Bottlenecks are the
    ``top`` heaviest rows, or else the heaviest rows that make up ``bottleneck_share`` of the time.
    With ``measure``, every block and the whole network are also timed with ``measure_latency`` under the
    model's protocol (``device``/``threads`` default to the model's; ``measure_options`` go to
    ``measure_latency``, e.g. ``min_run_time``).
    """
    if top is not None and top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    if not 0 < bottleneck_share <= 1:
        raise ValueError(f"bottleneck_share must be in (0, 1], got {bottleneck_share}")
    input_shape = tuple(int(d) for d in input_shape)
    chosen = select_blocks(module, depth, blocks)
    whole, calls = _record_calls(module, chosen, input_shape)
    whole_features = whole.as_dict()
    terms = cost_terms(model.kind, model.parameters, whole_features)

    cache: dict[tuple[int, Shapes], BlockFeatures] = {}
    rows, counted = [], []
    for name, block in chosen:
        per_call = _block_features(name, block, calls[name], cache)
        counted.extend(per_call)
        features = _sum_features(per_call)
        standalone = float(model.predict_many(per_call).sum()) if per_call else 0.0
        rows.append(BlockRow(name=name or type(block).__name__, type=type(block).__name__, calls=calls[name],
                             features=features, predicted_ms=terms.predict(features, include_intercept=False),
                             standalone_ms=standalone, split=terms.split(features)))

    blocks_total = _sum_features(counted)
    rest = {k: whole_features[k] - blocks_total[k] for k in FEATURE_NAMES}
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
    ranked = _rank(rows, total, top, bottleneck_share)
    split = f"named ({len(chosen)})" if blocks else f"depth {depth} ({len(chosen)})"
    report = Report(network=type(module).__name__, input_shape=input_shape, model_kind=model.kind,
                    model_device=dict(model.device), split=split, blocks=ranked, total_predicted_ms=total)
    if measure:
        settings = _measure_settings(model, device, threads)
        modules = {row.name: block for row, (_, block) in zip(rows, chosen)}
        report.measurement = _measure(module, modules, rows, input_shape, settings, measure_options or {}, progress)
        report.measurement["error"] = (total - report.measurement["total_ms"]) / report.measurement["total_ms"]
    _logger.debug("analyzed %s: %d blocks, %.3f ms predicted", report.network, len(chosen), total)
    return report


def plot_report(report: Report, path: str | os.PathLike) -> Path:
    """A horizontal bar chart of the rows, heaviest on top, bottlenecks highlighted; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = report.blocks
    figure = Figure(figsize=(8, 1.2 + 0.28 * len(rows)))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = range(len(rows))[::-1]
    colors = ["tab:red" if r.bottleneck else ("tab:gray" if r.name == REST else "tab:blue") for r in rows]
    axes.barh(list(positions), [r.predicted_ms for r in rows], color=colors)
    measured = [(p, r.measured_ms) for p, r in zip(positions, rows) if r.measured_ms is not None]
    if measured:
        axes.scatter([m for _, m in measured], [p for p, _ in measured], marker="|", s=120, color="black",
                     label="measured alone", zorder=3)
        axes.legend(loc="lower right", fontsize=8)
    axes.set_yticks(list(positions), [f"{r.name} ({r.type})" if r.name != REST else r.name for r in rows],
                    fontsize=8)
    for position, row in zip(positions, rows):
        axes.annotate(f" {100 * row.share:.1f}% {row.bound}", (max(row.predicted_ms, 0.0), position),
                      va="center", fontsize=7)
    axes.set_xlabel("predicted latency (ms)")
    axes.set_title(f"{report.network} {_format_shape(report.input_shape)}: {report.total_predicted_ms:.2f} ms "
                   f"predicted ({report.model_kind}); red = bottlenecks", fontsize=9)
    axes.margins(x=0.2)
    figure.tight_layout()
    from .plots import save_figure

    target = Path(path)
    return save_figure(figure, target, (target.suffix or ".png",))[0]
