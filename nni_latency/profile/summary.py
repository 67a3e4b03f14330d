"""The short text summary printed after profiling or fitting: parameters, what bounds the device, fit quality."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..measure.hostload import BUSY_SHARE
from ..model.terms import dominant_role
from ..runtimes import get_table
from ..runtimes.protocol import protocol_of

__all__ = ["format_profile_summary"]


def _percent(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.1f}%"


def _op_lines(model) -> list[str]:
    """How the operators' in-place times add up to their blocks, and where each class's costs come from."""
    check = model.device.get("op_sums") or {}
    lines = []
    if check.get("blocks"):
        low, high = check.get("range", (0.8, 1.25))
        what = "with the fitted per-call overheads, " if check.get("with_overheads") else ""
        lines.append(f"operators timed in place, {what}sum to a median {check['median_ratio']:.2f} of their block "
                     f"over {check['blocks']} blocks ({_percent(check['outside_share'])} outside {low:g}-{high:g})"
                     f"{_verdict(check, model.device.get('host_load'), get_table(model.runtime).op_clock)}")
    sources = model.parameters.get("sources") or {}
    if sources:
        lines.append("operator classes fitted on their own calls: " + ", ".join(
            f"{name} ({source})" for name, source in sources.items() if source not in ("none",)))
    return lines


def _verdict(check: dict, host_load: dict | None, clock: str) -> str:
    """What to make of blocks whose op-level times do not add up: on a busy host, the load; on a quiet one (or an
    unknown), which blocks and operator classes, so the profile can be taken apart rather than retaken."""
    if check.get("consistent", True):
        return ""
    busy = host_load is not None and (host_load.get("other_cpu_share") or 0.0) > BUSY_SHARE
    if busy:
        return (f"; other processes took {100 * host_load['other_cpu_share']:.0f}% of a core meanwhile, which moves "
                "single calls more than whole blocks: profile again when the machine is quiet")
    families = ", ".join(f"{name} ({v['blocks']} blocks, {v['median_ratio']:.2f})"
                         for name, v in (check.get("families") or {}).items())
    classes = ", ".join(check.get("classes") or []) or "none in particular"
    return (f"; on a quiet host this is the op-level clock ({clock}), not the load: the blocks that do not add up "
            f"are mostly {families or 'spread over every family'}, and hold more calls of {classes} than the others")


def format_profile_summary(model, records: Sequence[dict], reference=None, seconds: float | None = None,
                           measured: int | None = None, reused: int | None = None) -> str:
    """The summary; ``measured``/``reused`` (a profiling run) say how many blocks this run measured and how
    many it found already measured in the dataset, so a resumed run never passes for a fresh one."""
    rows = [r["features"] for r in records]
    roles = {role: float(values.sum()) for role, values in model.breakdown(rows).items()}
    total = sum(roles.values()) or 1.0
    shares = {role: value / total for role, value in roles.items()}
    protocol = protocol_of(model)
    lines = [f"device model: {model.kind} on {model.device.get('name', 'an unknown device')} "
             f"({protocol.threads} thread(s), {protocol.dtype}, batch {protocol.batch}, protocol {protocol.protocol})"]
    if seconds is not None:
        run = "" if measured is None else (f" (this run took {measured} measurements and reused {reused or 0} from "
                                           f"the dataset; {protocol.rounds} round(s) per block)")
        lines.append(f"profiled {len(records)} blocks in {seconds:.1f} s{run}")
    lines.extend(_op_lines(model))
    lines.append("parameters:")
    entries = []  # (label, value); the feature list itself is left out: the weights name every feature
    parameters = model.parameters
    if "sources" in parameters:  # per operator class: only the weights that are not zero
        parameters = {"weights": {k: v for k, v in parameters["weights"].items() if v}, "intercept":
                      parameters["intercept"]}
    for name, value in parameters.items():
        if isinstance(value, dict):
            entries.extend((f"{name}.{k}", v) for k, v in value.items())
        elif not isinstance(value, (list, tuple)):
            entries.append((name, value))
    width = max((len(label) for label, _ in entries), default=0)
    lines.extend(f"  {label:<{width}}  {value:.4g}" for label, value in entries)
    lines.append("time on the training blocks: " + ", ".join(f"{role} {_percent(share)}"
                                                        for role, share in shares.items())
                 + f" -> the device looks {dominant_role(shares)}-bound on this suite")
    cv = model.metrics.get("cv", {})
    if cv:
        lines.append("cross-validated fit (5 folds, held-out rows):")
        for kind, metrics in cv.items():
            marker = "*" if kind == model.kind else " "
            lines.append(f" {marker}{kind:<16} MdAPE {_percent(metrics['mdape'])}  within 10% "
                         f"{_percent(metrics['within_10pct'])}  Kendall tau {metrics['kendall_tau']:.3f}  "
                         f"r {metrics['pearson_r']:.3f}")
    return "\n".join(lines)
