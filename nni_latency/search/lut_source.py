"""FBNet's original latency source, a measured lookup table, in the shape the FBNet loss reads.

``nni-latency lut --measure`` times every candidate of every searched layer (``lut.json``). ``TableLatency``
turns those measurements into the per-label tables ``FBNetLatencyLoss`` contracts with the architecture
probabilities, so a search can use the measured table instead of the device model's prediction and the
two can be compared. The architecture-independent part (stem, head, classifier) is the same for every
architecture and only shifts the total; it is taken from the profiler's prediction.

A table holds for what it was measured for (``table_context``: the space and its arguments, input size, batch,
device, threads, dtype and runtime; ``lut.json``'s ``measured_for``): ``load_lut_rows`` refuses, in one line
naming the first field that differs, a table measured for anything else than the search that reads it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidInput
from ..files.formats import LUT_FORMAT
from ..nas.label_tables import LatencyTerm
from ..nas.lut import MEASURED_FOR
from ..nas.profiler import LatencyProfiler
from ..nas.source import LatencySource
from ..rows.check import first_difference

_logger = logging.getLogger(__name__)

__all__ = ["TableLatency", "load_lut_rows", "check_measured", "table_context", "space_arguments", "lut_command"]

# Constructor arguments that change no latency at inference (dropout is off in eval mode, NNI's DARTS builds its
# auxiliary head for training only): a table serves a search whatever their values.
_NO_LATENCY_ARGUMENTS = ("dropout", "dropout_rate", "drop_path_prob", "auxiliary_loss")


def _json_value(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists), so a table read from its file compares equal."""
    return json.loads(json.dumps(value, default=repr))


def space_arguments(space: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Every constructor argument space ``space`` is built with from ``arguments``: given ones over the space's
    defaults (``spaces.hub``'s, then its constructor's), without the input size and number of classes (the
    table's own fields, or none of a layer's latency) nor the arguments no latency depends on."""
    from ..spaces.hub import space_entry, space_parameters

    entry = space_entry(space)
    skip = {entry.input_argument, entry.classes_argument, *_NO_LATENCY_ARGUMENTS}
    defaults = {name: parameter.default for name, parameter in space_parameters(space).items()
                if parameter.default is not parameter.empty}
    effective = {**defaults, **entry.defaults, **arguments}
    return {name: _json_value(value) for name, value in sorted(effective.items()) if name not in skip}


def table_context(space: str, arguments: Mapping[str, Any], input_size: int, protocol,
                  device: str | None = None) -> dict[str, Any]:
    """What a table's latencies hold for (``nas.lut.MEASURED_FOR``): the space built with ``arguments`` at
    ``input_size``, measured under ``protocol`` (its batch, threads, dtype and runtime) on ``device`` (the machine's
    name, as rows record it; by default the one ``protocol`` measures on here)."""
    if device is None:
        from ..runtimes.torch.device import device_description

        device = device_description(protocol.device)
    return {"space": space, "space_args": space_arguments(space, arguments), "input_size": int(input_size),
            "batch": int(protocol.batch), "device": device, "threads": int(protocol.threads),
            "dtype": protocol.dtype, "runtime": protocol.runtime}


def lut_command(context: Mapping[str, Any], arguments: Mapping[str, Any]) -> str:
    """The ``nni-latency lut --measure`` command that measures a table for ``context`` (``arguments``: the space
    arguments the search gave), for the fix of a refused table."""
    import shlex

    options = "".join(f" --space-arg {shlex.quote(f'{key}={value!r}')}" for key, value in arguments.items())
    return (f"nni-latency lut --model MODEL --space {context['space']}{options} --input-size {context['input_size']} "
            f"--batch {context['batch']} --threads {context['threads']} --measure --output-dir DIR")


def _comparable(context: Mapping[str, Any]) -> dict[str, Any]:
    """``context`` where a None argument is a value like any other (``first_difference`` skips None)."""
    arguments = context.get("space_args")
    if isinstance(arguments, Mapping):
        arguments = {key: "None" if value is None else value for key, value in arguments.items()}
    return {**context, "space_args": arguments}


def _check_context(data: Mapping[str, Any], path: str | Path, expected: Mapping[str, Any],
                   arguments: Mapping[str, Any]) -> None:
    """Refuse a table measured for another search than ``expected``, naming the first field that differs."""
    recorded = data.get("measured_for")
    fix = f"measure a table for this search with `{lut_command(expected, arguments)}`"
    missing = [name for name in MEASURED_FOR if not isinstance(recorded, Mapping) or recorded.get(name) is None]
    if missing:
        raise InvalidInput(f"latency.lut {str(path)!r} does not record the {missing[0]} it was measured for (written "
                           f"by an older nni-latency), so it cannot be checked against this search; {fix}")
    found = first_difference(_comparable(recorded), _comparable(expected), MEASURED_FOR)
    if found is not None:
        field, was, wanted = found
        raise InvalidInput(f"latency.lut {str(path)!r} was measured for {field} {was!r}, and this search has {field} "
                           f"{wanted!r}: its latencies are not this search's; {fix}")


def load_lut_rows(path: str | Path, expected: Mapping[str, Any] | None = None,
                  arguments: Mapping[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and metadata of a ``lut.json`` written by ``nni-latency lut``; one-line errors otherwise. With
    ``expected`` (``table_context`` of the search; ``arguments``: the space arguments the search gave), a table
    measured for anything else is refused, naming the first field that differs."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"latency.lut {str(path)!r} does not exist; write it with "
                         "`nni-latency lut --measure`") from None
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidInput(f"latency.lut {str(path)!r} cannot be read as JSON ({error})") from None
    is_table = isinstance(data, Mapping) and data.get("format") == LUT_FORMAT
    if not (is_table and isinstance(data.get("rows"), list)):
        raise InvalidInput(f"latency.lut {str(path)!r} is not an nni-latency lookup table "
                         "(lut.json from `nni-latency lut`)")
    if expected is not None:
        _check_context(data, path, expected, arguments or {})
    metadata = {k: v for k, v in data.items() if k != "rows"}
    return data["rows"], metadata


def check_measured(rows: list[Mapping[str, Any]], column: str = "measured_ms") -> None:
    """Refuse a table whose rows were not measured (``nni-latency lut`` without ``--measure``)."""
    row = next((row for row in rows if row.get(column) is None), None)
    if row is not None:
        raise InvalidInput(f"lookup-table row {row.get('layer')}/{row.get('candidate')} has no {column}; write the "
                           "table with `nni-latency lut --measure`")


class TableLatency(LatencySource):
    """Latency (ms) of an architecture from a lookup table: per-layer candidate times plus a fixed part.

    A ``LatencySource``, as a ``LatencyProfiler`` is, so ``FBNetLatencyLoss`` and the search report take either.
    """

    def __init__(self, profiler: LatencyProfiler, rows: list[Mapping[str, Any]], column: str = "measured_ms"):
        self.label_values = profiler.label_values
        check_measured(rows, column)
        times: dict[str, dict[str, float]] = {}
        for row in rows:
            times.setdefault(str(row["layer"]), {})[str(row["candidate"])] = float(row[column])
        constant = float(sum(float(term.table) for term in profiler.terms if not term.labels))
        terms = [LatencyTerm((), np.asarray(constant), ("fixed part (predicted)",))]
        for label, values in self.label_values.items():
            layer = times.get(label)
            missing = [v for v in values if layer is None or str(v) not in layer]
            if missing:
                raise InvalidInput(f"the lookup table lacks layer {label!r} candidate(s) {missing}; it was written for "
                                 "another space: rerun `nni-latency lut` with the search's space arguments")
            terms.append(LatencyTerm((label,), np.array([layer[str(v)] for v in values], float), (column,)))
        self.terms = terms
        self.constant_ms = constant

    def profile(self, sample: Mapping[str, Any]) -> float:
        total = self.constant_ms
        for term in self.terms[1:]:
            label = term.labels[0]
            total += float(term.table[self.label_values[label].index(sample[label])])
        return total

    def uniform_expected_latency(self) -> float:
        return self.constant_ms + sum(float(term.table.mean()) for term in self.terms[1:])
