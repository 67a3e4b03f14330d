"""The label-table algebra the profiler is built on: a table has one axis per label of the space (in the
order of its ``Categorical.values``); tables are multiplied, reduced to the labels they depend on, summed
into ``LatencyTerm``s and turned into NNI ``switch_case`` expressions. An ``InputChoice``'s label
(``CategoricalMultiple``) takes the chosen subsets as its values: one axis entry per subset it can choose.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from nni.mutable import Categorical, CategoricalMultiple, Mutable, MutableExpression

_logger = logging.getLogger(__name__)

__all__ = ["LatencyTerm", "LabelSpace", "hashable", "align", "reduce_table", "product", "table_expression",
           "merge_terms", "fastest_latency", "subsets", "chosen_key"]


@dataclass(frozen=True)
class LatencyTerm:
    """Latency (ms) contributed by parts of the space, tabulated over the labels it depends on.

    ``table[i, j, ...]`` is the contribution when ``labels[0]`` takes its ``i``-th value, and so on, in the
    order of the space's ``Categorical.values``. A term without labels is a constant.
    """

    labels: tuple[str, ...]
    table: np.ndarray
    sources: tuple[str, ...] = ()


class LabelSpace:
    """The categorical choices of the space, in the space's order.

    ``values[label]`` are the values a sample can give the label, in the order of the tables' axes: a
    ``Categorical``'s candidates, or the subsets (sorted tuples) an ``InputChoice``'s ``CategoricalMultiple``
    can choose (``n_chosen`` of them, any number when ``n_chosen`` is None). ``multiple[label]`` keeps such a
    label's candidates and ``n_chosen``. ``derived[label]`` is a label computed from others, never sampled (a
    loose-end cell's count, ``loose.LooseEnds``): tables use it as an axis, samples get it from ``complete``.
    """

    def __init__(self, mutables: Mapping[str, Categorical | CategoricalMultiple], derived: Mapping[str, Any] | None = None):
        self.derived = dict(derived or {})
        self.mutables = {**dict(mutables), **{label: d.mutable() for label, d in self.derived.items()}}
        self.order = {label: i for i, label in enumerate(self.mutables)}
        self.multiple = {label: (list(m.values), m.n_chosen) for label, m in self.mutables.items()
                         if isinstance(m, CategoricalMultiple)}
        self.values = {label: (subsets(*self.multiple[label]) if label in self.multiple else list(m.values))
                       for label, m in self.mutables.items()}
        self.index = {label: {hashable(v): i for i, v in enumerate(vals)} for label, vals in self.values.items()}

    def key(self, label: str, value: Any) -> Any:
        """The hashable form of a sample's value for ``label`` (a chosen subset as a sorted tuple)."""
        if label in self.multiple:
            return chosen_key(self.multiple[label][0], value)
        return hashable(value)

    def position(self, label: str, value: Any) -> int:
        """The axis index of ``value`` for ``label``; KeyError/TypeError if it is not one of its values."""
        return self.index[label][self.key(label, value)]

    def sizes(self, labels: Sequence[str]) -> tuple[int, ...]:
        return tuple(len(self.values[label]) for label in labels)

    def sort(self, labels) -> tuple[str, ...]:
        return tuple(sorted(set(labels), key=self.order.__getitem__))

    def grid(self, labels: Sequence[str]) -> Iterator[tuple[tuple[int, ...], dict[str, Any]]]:
        for index in itertools.product(*(range(n) for n in self.sizes(labels))):
            yield index, {label: self.sample_at(label, self.values[label][i]) for label, i in zip(labels, index)}

    def default_sample(self) -> dict[str, Any]:
        return {label: m.default() for label, m in self.mutables.items()}

    def sample_at(self, label: str, value: Any) -> Any:
        """``value`` as NNI samples give it (a chosen subset as a list)."""
        return list(value) if label in self.multiple else value

    def random_sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return self.complete({label: self.sample_at(label, vals[int(rng.integers(len(vals)))])
                              for label, vals in self.values.items() if label not in self.derived})

    def complete(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        """``sample`` with every derived label computed from it (overriding any value given for one)."""
        if not self.derived:
            return dict(sample)
        return {**sample, **{label: d.count(sample) for label, d in self.derived.items()}}

    def reference(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        """``sample`` with every derived label at its default: the shapes the space's own modules were built for."""
        return {**sample, **{label: self.mutables[label].default() for label in self.derived}}


def hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def subsets(candidates: Sequence[Any], n_chosen: int | None) -> list[tuple]:
    """The subsets an InputChoice can choose, as tuples in candidate order: ``n_chosen`` of them, or any number."""
    sizes = [n_chosen] if n_chosen is not None else range(len(candidates) + 1)
    return [combination for size in sizes for combination in itertools.combinations(candidates, size)]


def chosen_key(candidates: Sequence[Any], value: Any) -> tuple:
    """A chosen subset (a list, or one candidate) as a tuple in candidate order."""
    chosen = value if isinstance(value, (list, tuple)) else [value]
    return tuple(sorted(chosen, key=candidates.index))


def align(labels: Sequence[str], table: np.ndarray, target: Sequence[str]) -> np.ndarray:
    """View ``table`` (one axis per label) with axes in ``target`` order, size 1 for labels it lacks."""
    moved = np.transpose(table, [labels.index(label) for label in target if label in labels])
    return moved.reshape([table.shape[labels.index(label)] if label in labels else 1 for label in target])


def reduce_table(labels: Sequence[str], table: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Drop the label axes along which ``table`` does not change."""
    labels = list(labels)
    for axis in reversed(range(len(labels))):
        first = np.take(table, [0], axis=axis)
        if np.array_equal(np.broadcast_to(first, table.shape), table):
            table = np.take(table, 0, axis=axis)
            del labels[axis]
    return tuple(labels), table


def product(space: LabelSpace, factors: Sequence[tuple[Sequence[str], np.ndarray]]) -> tuple[tuple[str, ...], np.ndarray]:
    """Elementwise product of tables over the union of their labels."""
    union = space.sort(label for labels, _ in factors for label in labels)
    result = np.ones(space.sizes(union))
    for labels, table in factors:
        result = result * align(list(labels), np.asarray(table, float), union)
    return union, result


def table_expression(space: LabelSpace, labels: Sequence[str], table: np.ndarray, cast=float, derived=None):
    """A nested ``switch_case`` over ``labels`` that evaluates to ``table``'s entries (or a constant); ``derived``
    maps a derived label to the expression to switch on instead (what NNI's samples hold are its inputs)."""
    if not labels:
        return cast(table.item() if isinstance(table, np.ndarray) else table)
    label, rest = labels[0], labels[1:]
    branches = {v: table_expression(space, rest, table[i], cast, derived) for i, v in enumerate(space.values[label])}
    if derived and label in derived:
        return MutableExpression.switch_case(derived[label], branches)
    if label in space.multiple:
        return _subset_switch(space.mutables[label], space.multiple[label][0], branches)
    return MutableExpression.switch_case(space.mutables[label], branches)


def _subset_switch(mutable: Mutable, candidates: Sequence[Any], branches: Mapping[tuple, Any]):
    """``switch_case`` on an InputChoice's chosen subset: NNI's compares a list with the keys, which are tuples."""
    keys = list(branches)

    def switch(chosen, *values):
        return values[keys.index(chosen_key(candidates, chosen))]

    template = "switch_case({}, {{" + ", ".join(f"{list(key)!r}: {{}}" for key in keys) + "}})"
    return MutableExpression(switch, template, [mutable, *branches.values()])


def merge_terms(space: LabelSpace, terms: Sequence[LatencyTerm]) -> list[LatencyTerm]:
    """Sum the terms that share a label set, so the expression has one table per set."""
    merged: dict[tuple[str, ...], tuple[np.ndarray, list[str]]] = {}
    for term in terms:
        table, sources = merged.get(term.labels, (0.0, []))
        merged[term.labels] = (table + term.table, sources + list(term.sources))
    ordered = sorted(merged.items(), key=lambda item: (len(item[0]), [space.order[l] for l in item[0]]))
    return [LatencyTerm(labels, np.asarray(table, float), tuple(sources)) for labels, (table, sources) in ordered]


def fastest_latency(terms: Sequence[tuple[Sequence[str], np.ndarray]], constant: float = 0.0) -> tuple[float, bool]:
    """The smallest total of ``constant`` plus one entry of every table: (ms, exact).

    Each table's minimum, summed: exact when no label is shared by two tables (independent layers), else a
    lower bound (the minima may need different values of a shared label).
    """
    seen: set[str] = set()
    exact = True
    total = float(constant)
    for labels, table in terms:
        exact = exact and not seen.intersection(labels)
        seen.update(labels)
        total += float(np.min(table))
    return total, exact
