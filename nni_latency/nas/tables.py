"""The label-table algebra the profiler is built on: a table has one axis per label of the space (in the
order of its ``Categorical.values``); tables are multiplied, reduced to the labels they depend on, summed
into ``LatencyTerm``s and turned into NNI ``switch_case`` expressions.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from nni.mutable import Categorical, MutableExpression

_logger = logging.getLogger(__name__)

__all__ = ["LatencyTerm", "LabelSpace", "hashable", "align", "reduce_table", "product", "table_expression",
           "merge_terms"]


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
    """The categorical choices of the space, in the space's order."""

    def __init__(self, mutables: Mapping[str, Categorical]):
        self.mutables = dict(mutables)
        self.order = {label: i for i, label in enumerate(self.mutables)}
        self.values = {label: list(m.values) for label, m in self.mutables.items()}
        self.index = {label: {hashable(v): i for i, v in enumerate(vals)} for label, vals in self.values.items()}

    def sizes(self, labels: Sequence[str]) -> tuple[int, ...]:
        return tuple(len(self.values[label]) for label in labels)

    def sort(self, labels) -> tuple[str, ...]:
        return tuple(sorted(set(labels), key=self.order.__getitem__))

    def grid(self, labels: Sequence[str]) -> Iterator[tuple[tuple[int, ...], dict[str, Any]]]:
        for index in itertools.product(*(range(n) for n in self.sizes(labels))):
            yield index, {label: self.values[label][i] for label, i in zip(labels, index)}

    def default_sample(self) -> dict[str, Any]:
        return {label: m.default() for label, m in self.mutables.items()}

    def random_sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {label: vals[int(rng.integers(len(vals)))] for label, vals in self.values.items()}


def hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


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


def table_expression(space: LabelSpace, labels: Sequence[str], table: np.ndarray, cast=float):
    """A nested ``switch_case`` over ``labels`` that evaluates to ``table``'s entries (or a constant)."""
    if not labels:
        return cast(table.item() if isinstance(table, np.ndarray) else table)
    label, rest = labels[0], labels[1:]
    branches = {v: table_expression(space, rest, table[i], cast) for i, v in enumerate(space.values[label])}
    return MutableExpression.switch_case(space.mutables[label], branches)


def merge_terms(space: LabelSpace, terms: Sequence[LatencyTerm]) -> list[LatencyTerm]:
    """Sum the terms that share a label set, so the expression has one table per set."""
    merged: dict[tuple[str, ...], tuple[np.ndarray, list[str]]] = {}
    for term in terms:
        table, sources = merged.get(term.labels, (0.0, []))
        merged[term.labels] = (table + term.table, sources + list(term.sources))
    ordered = sorted(merged.items(), key=lambda item: (len(item[0]), [space.order[l] for l in item[0]]))
    return [LatencyTerm(labels, np.asarray(table, float), tuple(sources)) for labels, (table, sources) in ordered]
