"""Per-layer, per-candidate latency lookup tables of a search space, predicted or measured.

Two formats: a JSON table (ms, every LayerChoice candidate with its input and output shapes), and NNI
2.x FBNet's ``lut.txt``: one Python-literal record per line,
``{'op_name': ..., 'op_data_shape': (input_w, input_h, C_in, C_out, stride), 'op_dtype': 'float',
'op_latency': ...}``, with ``op_latency`` in microseconds as NNI 2.x's ``LookUpTable`` measured it, so
the file drops into an NNI 2.x FBNet search (``lut_load=True``).
"""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from nni.mutable import Mutable

from ..errors import InvalidInput
from ..files.fileio import atomic_write_json, atomic_write_text
from ..files.formats import LUT_FORMAT

_logger = logging.getLogger(__name__)

__all__ = ["LutRow", "ChoiceRecord", "predicted_rows", "measure_rows", "op_data_shape", "write_lut_json",
           "write_lut_txt", "read_lut_txt", "LUT_DTYPES", "MEASURED_FOR"]

# nni-latency dtype -> the ``op_dtype`` NNI 2.x writes ("float" for fp32).
LUT_DTYPES = {"fp32": "float", "fp16": "half", "bf16": "bfloat16", "fp64": "double"}
# What a table's latencies hold for (``lut.json``'s ``measured_for``): a table is only used where every one agrees
# (``nni_latency.search.lut_source`` builds and compares them).
MEASURED_FOR = ("space", "space_args", "input_size", "batch", "device", "threads", "dtype", "runtime")


@dataclass(frozen=True)
class LutRow:
    """One candidate of one searched layer (a LayerChoice) at one input shape: a row of the lookup table.

    ``LatencyProfiler.choices`` lists one per candidate and distinct input shape, with the features the
    prediction came from; ``measure_rows`` fills ``measured_ms``.
    """

    layer: str  # the LayerChoice's label
    candidate: str
    module: str  # qualified name of the candidate module in the space
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    predicted_ms: float
    measured_ms: float | None = None
    when: Mapping[str, Any] = field(default_factory=dict)  # other labels' values this input shape needs
    features: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        """The LayerChoice's label (``layer``; the name ``ChoiceRecord`` used)."""
        return self.layer

    @property
    def latency_ms(self) -> float:
        """The predicted latency (``predicted_ms``; the name ``ChoiceRecord`` used)."""
        return self.predicted_ms

    @property
    def op_data_shape(self) -> tuple[int, int, int, int, int] | None:
        return op_data_shape(self.input_shape, self.output_shape)

    def to_dict(self) -> dict[str, Any]:
        data = {"layer": self.layer, "candidate": self.candidate, "module": self.module,
                "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "op_data_shape": list(self.op_data_shape) if self.op_data_shape else None,
                "predicted_ms": self.predicted_ms}
        if self.measured_ms is not None:
            data["measured_ms"] = self.measured_ms
        if self.when:
            data["when"] = dict(sorted(self.when.items()))
        return data


ChoiceRecord = LutRow  # the profiler's former name for the same row


def op_data_shape(input_shape: Sequence[int], output_shape: Sequence[int]) -> tuple[int, int, int, int, int] | None:
    """NNI 2.x's ``(input_w, input_h, C_in, C_out, stride)`` of an NCHW block, or None if not 4-D."""
    if len(input_shape) != 4 or len(output_shape) != 4 or output_shape[2] <= 0:
        return None
    _, c_in, h_in, w_in = input_shape
    stride = max(1, round(h_in / output_shape[2]))
    return int(w_in), int(h_in), int(c_in), int(output_shape[1]), int(stride)


def predicted_rows(profiler) -> list[LutRow]:
    """The profiler's prediction for every LayerChoice candidate, one row per distinct input shape."""
    rows = list(profiler.choices)
    if not rows:
        raise InvalidInput("the space has no LayerChoice whose candidates are plain modules, so it has no lookup "
                         "table; use the profiler's terms instead")
    return rows


def measure_rows(profiler, rows: Sequence[LutRow], protocol=None, /, measure: Callable[..., Any] | None = None,
                 progress: Callable[[int, int, LutRow], None] | None = None, **measure_kwargs) -> list[LutRow]:
    """``rows`` with ``measured_ms`` filled by ``measure_latency`` under ``protocol`` (a ``MeasurementProtocol``;
    ``measure_kwargs`` override its fields), or by ``measure(module, input_shape, **measure_kwargs)``; each
    distinct config is measured once.

    Candidates with the same name and the same ``op_data_shape`` are the same layer to NNI 2.x's table,
    so one measurement serves them all.
    """
    if measure is None:
        from ..measure.latency import measure_latency

        def measure(module, input_shape, **kwargs):
            return measure_latency(module, input_shape, protocol, **kwargs)
    space = profiler.model_space
    measured: dict[tuple, float] = {}
    result = []
    for i, row in enumerate(rows):
        key = (row.candidate, row.input_shape, row.output_shape)
        if key not in measured:
            module = space.get_submodule(row.module)
            if isinstance(module, Mutable) and module.simplify():
                module = module.freeze(dict(row.when))
            measured[key] = float(measure(module, row.input_shape, **measure_kwargs).latency_ms)
            if progress is not None:
                progress(len(measured), len(rows), row)
        result.append(replace(row, measured_ms=measured[key]))
    return result


def write_lut_json(path: str | Path, rows: Sequence[LutRow], *, metadata: dict[str, Any] | None = None,
                   measured_for: Mapping[str, Any] | None = None) -> None:
    """The table as JSON (latencies in ms), with ``metadata`` (timings, model) at the top and ``measured_for``
    (every field of ``MEASURED_FOR``: the space and its arguments, input size, batch, device, threads, dtype,
    runtime), which a search checks before it uses the table."""
    if measured_for is not None:
        missing = [name for name in MEASURED_FOR if measured_for.get(name) is None]
        if missing:
            raise InvalidInput(f"a lookup table must record what it was measured for; {', '.join(missing)} missing")
        measured_for = {name: measured_for[name] for name in MEASURED_FOR}
    atomic_write_json(path, {"format": LUT_FORMAT, "version": 1, "unit": "ms", **(metadata or {}),
                             **({"measured_for": measured_for} if measured_for is not None else {}),
                             "rows": [row.to_dict() for row in rows]})


def write_lut_txt(path: str | Path, rows: Iterable[LutRow], *, measured: bool = False, dtype: str = "fp32") -> int:
    """NNI 2.x FBNet ``lut.txt`` (latency in microseconds); returns the number of records written.

    Rows that are not 4-D NCHW blocks have no ``op_data_shape`` and are left out (with a warning).
    """
    op_dtype = LUT_DTYPES.get(dtype, dtype)
    lines, seen, skipped = [], set(), []
    for row in rows:
        shape = row.op_data_shape
        latency_ms = row.measured_ms if measured else row.predicted_ms
        if shape is None or latency_ms is None:
            skipped.append(row.module)
            continue
        key = (row.candidate, shape)
        if key in seen:
            continue
        seen.add(key)
        record = {"op_name": row.candidate, "op_data_shape": shape, "op_dtype": op_dtype,
                  "op_latency": round(latency_ms * 1e3, 6)}
        lines.append(repr(record))
    if skipped:
        _logger.warning("%d lookup-table row(s) are not NCHW blocks and were left out of %s (first: %s)",
                        len(skipped), path, skipped[0])
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_lut_txt(path: str | Path) -> dict[str, dict[tuple[int, ...], dict[str, float]]]:
    """Read an NNI 2.x ``lut.txt`` into ``{op_name: {op_data_shape: {op_dtype: latency_us}}}`` (NNI 2.x's layout)."""
    table: dict[str, dict[tuple[int, ...], dict[str, float]]] = {}
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = ast.literal_eval(line)
            name, shape = str(record["op_name"]), tuple(int(v) for v in record["op_data_shape"])
            dtype, latency = str(record["op_dtype"]), float(record["op_latency"])
        except (ValueError, SyntaxError, KeyError, TypeError):
            raise InvalidInput(f"{path}: line {number} is not an NNI 2.x lut record "
                             "({'op_name': ..., 'op_data_shape': (...), 'op_dtype': ..., 'op_latency': ...})") from None
        table.setdefault(name, {}).setdefault(shape, {})[dtype] = latency
    return table
