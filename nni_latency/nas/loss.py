"""FBNet's latency-aware loss, computed from architecture probabilities *as tensors*, so it has a gradient.

``LAT`` is the expected latency (ms) of the architecture distribution: every latency table of a
``LatencyProfiler`` contracted with the probabilities of its labels. For a layer that is a LayerChoice
this is FBNet's ``sum_i p_i * LAT_i``; a table over two labels (a Repeat depth and a layer's choice, or a
width choice and the block whose input it changes) is contracted with both, which is the exact
expectation when the labels are independent, as they are in DARTS-style searches.

InputChoices, under the distribution NNI's DARTS uses for them (``DifferentiableMixedInput``: a softmax
weight ``p_j`` per input, the ``n_chosen`` largest exported): a chosen subset ``S`` has probability
``prod_{j in S} p_j``, normalised over the subsets of ``n_chosen`` inputs (one input when ``n_chosen`` is
None, as NNI's DARTS assumes), so with one input chosen it is ``p_j`` itself. In a DARTS cell (NNI's
``DifferentiableMixedCell``) an op slot's (op, input) pair has a joint distribution, given as
``probs[(op_label, input_label)]``, a (ops x inputs) tensor (``strategy.cell_slot_probs`` builds it).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInput
from .label_tables import fastest_latency

_logger = logging.getLogger(__name__)

__all__ = ["ExpectedLatency", "FBNetLatencyLoss", "LOSS_MODES", "subset_probabilities", "check_target"]

LOSS_MODES = ("mul", "add")


def check_target(source, target_ms: float | None, key: str = "target_ms") -> None:
    """Refuse a latency budget below the fastest architecture of the space, before anything trains.

    The fastest is the sum of every table's minimum: exact for independent layers, else a lower bound, so a
    budget under it is unreachable either way. A source without tables (``FrozenLatencyProfiler``) cannot tell.
    """
    if target_ms is None or getattr(source, "terms", None) is None:
        return
    fastest, exact = fastest_latency([(term.labels, term.table) for term in source.terms])  # any LatencySource
    if target_ms < fastest:
        raise InvalidInput(f"{key}={target_ms:g} ms is unreachable: the fastest architecture of the space is predicted "
                         f"at {'' if exact else 'no less than '}{fastest:.4g} ms; raise {key} or search a smaller space")


def subset_probabilities(weights: torch.Tensor, membership: torch.Tensor, sizes: torch.Tensor,
                         n_chosen: int | None) -> torch.Tensor:
    """P(subset) ~ prod of its inputs' weights, over the subsets of ``n_chosen`` inputs (1 when None).

    ``membership`` is (subsets x inputs), 1 where the subset holds the input; ``sizes`` its row sums.
    """
    size = 1 if n_chosen is None else n_chosen
    log_weight = membership @ torch.log(weights.clamp_min(1e-30))
    log_weight = torch.where(sizes == size, log_weight, torch.full_like(log_weight, -torch.inf))
    return torch.softmax(log_weight, dim=0)


class ExpectedLatency(nn.Module):
    """Expected latency (ms) of label probabilities, from a latency source's tables, in one gather.

    Every table entry is a row of ``(value, index of each of its labels' probability)``: the expectation is
    ``sum(values * prod(p[index]))`` over all rows at once, with ``p`` every label's probability vector
    concatenated. That keeps one architecture step's latency term to a few tensor ops whatever the number of
    tables (75 on MobileNetV3Space), forward and backward.
    """

    def __init__(self, source):
        super().__init__()
        if getattr(source, "terms", None) is None:
            raise InvalidInput(f"{type(source).__name__} predicts frozen architectures one at a time and has no latency "
                             "tables, so the differentiable FBNet term does not apply; search with a multi-trial "
                             "strategy and the profiler as a budget filter (RangeProfilerFilter(profiler, max=...))")
        self.label_values = source.label_values
        space_labels = getattr(source, "space_labels", None)
        self.multiple = dict(space_labels.multiple) if space_labels is not None else {}
        self.constant = float(sum(float(t.table) for t in source.terms if not t.labels))
        self.terms = [(tuple(t.labels), np.asarray(t.table, float)) for t in source.terms if t.labels]
        self.labels = sorted({label for labels, _ in self.terms for label in labels})
        derived = dict(getattr(space_labels, "derived", None) or {})
        self.derived = {label: d for label, d in derived.items() if label in self.labels}
        self._laws = {label: d.plan(self.label_values) for label, d in self.derived.items()}
        self.required = sorted((set(self.labels) - set(self.derived)) |
                               {inp for d in self.derived.values() for inp in d.inputs})
        self.register_buffer("constant_ms", torch.tensor(self.constant, dtype=torch.float32))
        self._membership = {label: self._subsets(label) for label in self.multiple if label in self.labels}
        self._plans: dict[frozenset, tuple[list, torch.Tensor, torch.Tensor]] = {}
        self._packed: dict[tuple, tuple] = {}
        self._cast: dict[tuple, torch.Tensor] = {}

    def _subsets(self, label: str) -> tuple[torch.Tensor, torch.Tensor]:
        candidates, _ = self.multiple[label]
        membership = torch.tensor([[float(c in subset) for c in candidates] for subset in self.label_values[label]])
        return membership, membership.sum(dim=1)

    # -- probabilities ------------------------------------------------------------------------------

    def probabilities(self, probs: Mapping[Any, Any], check: bool = True, needed: set | None = None
                      ) -> tuple[dict[str, torch.Tensor], dict[tuple, torch.Tensor]]:
        """(per label: its distribution over the table axis, per (op, input) pair: the joint), as tensors.

        Accepts per label a tensor or list (one entry per candidate; an InputChoice's per input) or NNI's
        ``export_probs`` form (a dict from candidate to probability); per (op label, input label) pair of a
        DARTS cell a (ops x inputs) tensor.
        """
        joints = {key: value for key, value in probs.items() if isinstance(key, tuple)}
        covered = {label for key in joints for label in key}
        missing = [label for label in self.required if label not in probs and label not in covered] if check else []
        if missing:
            raise InvalidInput(f"probabilities lack label(s) {', '.join(missing)}; the latency depends on them "
                             "(build the profiler and the search on the same model space)")
        vectors = {label: self._vector(label, probs[label]) if check else self._to_axis(label, probs[label])
                   for label in self.required if label in probs}
        checked = {}
        for (op_label, input_label), joint in joints.items():
            shape = (len(self.label_values[op_label]), len(self._candidates(input_label)))
            joint = torch.as_tensor(joint, dtype=torch.float32) if not isinstance(joint, torch.Tensor) else joint
            if tuple(joint.shape) != shape:
                raise InvalidInput(f"joint probabilities for ({op_label!r}, {input_label!r}) have shape "
                                 f"{tuple(joint.shape)}, expected {shape} (ops x inputs)")
            checked[(op_label, input_label)] = joint
            if needed is None or op_label in needed:  # marginals only where a table or a derived label reads them
                vectors.setdefault(op_label, joint.sum(dim=1))
            if needed is None or input_label in needed:
                vectors.setdefault(input_label, self._to_axis(input_label, joint.sum(dim=0)))
        for label, derived in self.derived.items():  # a loose-end count: its exact law from its inputs' (``loose``)
            if needed is None or label in needed:
                vectors[label] = derived.distribution(vectors, self._laws[label])
        return vectors, checked

    def uniform(self) -> torch.Tensor:
        """The expected latency when every sampled label is uniform over its candidates."""
        return self({label: torch.full((len(self._candidates(label)),), 1.0 / len(self._candidates(label)),
                                       dtype=torch.float64) for label in self.required})

    def _candidates(self, label: str) -> list:
        return self.multiple[label][0] if label in self.multiple else self.label_values[label]

    def _vector(self, label: str, given: Any) -> torch.Tensor:
        candidates = self._candidates(label)
        if isinstance(given, Mapping):
            unknown = [v for v in given if v not in candidates]
            if unknown:
                raise InvalidInput(f"probabilities for {label!r} name unknown candidate(s) {unknown}; "
                                 f"candidates are {candidates}")
            given = [given.get(v, 0.0) for v in candidates]
        if not isinstance(given, torch.Tensor):
            given = torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in given])
        if given.shape != (len(candidates),):
            raise InvalidInput(f"probabilities for {label!r} have shape {tuple(given.shape)}, expected "
                             f"({len(candidates)},) for candidates {candidates}")
        return self._to_axis(label, given)

    def _to_axis(self, label: str, per_candidate: torch.Tensor) -> torch.Tensor:
        if label not in self._membership or self.multiple[label][1] == 1:
            return per_candidate  # one input chosen: its subsets are the candidates, in order
        membership, sizes = self._membership[label]
        return subset_probabilities(per_candidate, membership.to(per_candidate.device), sizes.to(per_candidate.device),
                                    self.multiple[label][1])

    # -- the contraction ----------------------------------------------------------------------------

    def _plan(self, joint_keys: frozenset) -> tuple[list, torch.Tensor, torch.Tensor]:
        """(the order of the concatenated probability vectors, entry indices (E, K), entry values (E,))."""
        if joint_keys in self._plans:
            return self._plans[joint_keys]
        order: list = list(self.labels) + sorted(joint_keys)
        offsets = dict(zip(order, itertools.accumulate([0] + [self._size(key) for key in order])))
        one = offsets[order[-1]] + self._size(order[-1]) if order else 0  # index of the trailing 1.0
        plan = (order, *self._entries(offsets, joint_keys, one))
        self._plans[joint_keys] = plan
        return plan

    def _entries(self, offsets: Mapping[Any, int], joint_keys, one: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every table entry as a row of indices into the probabilities laid out at ``offsets`` (``one``: a 1.0)."""
        rows, values = [], []
        for labels, table in self.terms:
            pairs = [key for key in joint_keys if key[0] in labels and key[1] in labels]
            singles = [label for label in labels if not any(label in key for key in pairs)]
            for index in itertools.product(*(range(n) for n in table.shape)):
                at = dict(zip(labels, index))
                row = [offsets[label] + at[label] for label in singles]
                row += [offsets[key] + at[key[0]] * len(self.label_values[key[1]]) + at[key[1]] for key in pairs]
                rows.append(row)
                values.append(table[index])
        width = max((len(row) for row in rows), default=1)
        index = torch.tensor([row + [one] * (width - len(row)) for row in rows], dtype=torch.long).reshape(-1, width)
        return index, torch.tensor(values, dtype=torch.float64)

    def _size(self, key) -> int:
        if isinstance(key, tuple):
            return len(self.label_values[key[0]]) * len(self.label_values[key[1]])
        return len(self.label_values[key])

    def forward(self, probs: Mapping[Any, Any]) -> torch.Tensor:
        vectors, joints = self.probabilities(probs)
        order, index, values = self._plan(frozenset(joints))
        parts = [vectors[key] if not isinstance(key, tuple) else joints[key].reshape(-1) for key in order]
        device = parts[0].device if parts else self.constant_ms.device
        if index.device != device:  # the plan follows the probabilities to their device, once
            order, index, values = self._plans[frozenset(joints)] = (order, index.to(device), values.to(device))
        flat = torch.cat(parts + [torch.ones(1, device=device, dtype=parts[0].dtype if parts else torch.float32)])
        return self._contract(flat, index, values)

    def _contract(self, flat: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        # one gather for every entry of every table; index_select and column products are faster, forward and
        # backward, than advanced indexing and prod() (which checks its inputs for zeros)
        gathered = flat.index_select(0, index.reshape(-1)).view(index.shape)
        weight = gathered[:, 0]
        for column in range(1, gathered.shape[1]):
            weight = weight * gathered[:, column]
        if values.dtype != flat.dtype:  # the tables are kept in float64; a float32 search gets a cached copy
            key = (values.data_ptr(), flat.dtype)
            if key not in self._cast:
                self._cast[key] = values.to(flat.dtype)
            values = self._cast[key]
        return self.constant_ms.to(flat) + torch.dot(values, weight)

    # -- the packed path: logits in, one softmax ------------------------------------------------------

    def from_logits(self, logits: Mapping[str, torch.Tensor],
                    joints: Mapping[tuple, torch.Tensor] | None = None) -> torch.Tensor:
        """Expected latency of ``softmax(logits[label])`` per label (and of the ``joints`` of DARTS cells), with every
        plain label's logits packed into one padded matrix: one softmax, one gather, one product, one dot.

        Labels whose distribution is not a plain softmax (an InputChoice of several inputs, a cell's input given by
        a joint, a loose-end count) are computed as in ``forward`` and appended; logits of labels the tables do not
        know (a DARTS cell's edges) are ignored.
        """
        joints = dict(joints or {})
        covered = {label for key in joints for label in key}
        plain = tuple(label for label in self.required if label in logits and label not in covered
                      and (label not in self.multiple or self.multiple[label][1] == 1))
        extra = {label: torch.softmax(logits[label], -1) for label in self.required
                 if label in logits and label not in covered and label not in plain}
        layout = (plain, frozenset(joints))
        if layout not in self._packed:
            missing = [label for label in self.required if label not in plain and label not in extra
                       and label not in covered]
            if missing:
                raise InvalidInput(f"logits lack label(s) {', '.join(missing)}; the latency depends on them "
                                 "(build the profiler and the search on the same model space)")
            for label in plain + tuple(extra):
                if logits[label].shape != (len(self._candidates(label)),):
                    raise InvalidInput(f"logits for {label!r} have shape {tuple(logits[label].shape)}, expected "
                                     f"({len(self._candidates(label))},) for candidates {self._candidates(label)}")
            self._packed[layout] = self._packed_plan(plain, joints, extra)
        pad, width, order, index, values = self._packed[layout]
        first = logits[plain[0]] if plain else next(iter(joints.values()))
        if index.device != first.device:
            pad, index, values = pad.to(first.device), index.to(first.device), values.to(first.device)
            self._packed[layout] = (pad, width, order, index, values)
        parts = []
        if plain:
            flat = torch.cat([logits[label] for label in plain] + [first.new_full((1,), -torch.inf)])
            packed = torch.softmax(flat.index_select(0, pad).view(len(plain), width), dim=1)
            parts.append(packed.reshape(-1))
        if order:
            rows = {label: packed[i] for i, label in enumerate(plain)} if plain else {}
            needed = {key for key in order if not isinstance(key, tuple)}
            needed |= {label for d in self.derived.values() if d.label in needed for label in d.inputs}
            vectors, checked = self.probabilities({**rows, **extra, **joints}, check=False, needed=needed)
            parts += [vectors[key] if not isinstance(key, tuple) else checked[key].reshape(-1) for key in order]
        return self._contract(torch.cat(parts + [first.new_ones(1)]), index, values)

    def _packed_plan(self, plain: tuple, joints: Mapping, extra: Mapping) -> tuple:
        width = max((len(self.label_values[label]) for label in plain), default=1)
        sizes = [len(self.label_values[label]) for label in plain]
        total = sum(sizes)
        pad = torch.tensor([sum(sizes[:i]) + v if v < n else total for i, n in enumerate(sizes) for v in range(width)],
                           dtype=torch.long)
        offsets: dict[Any, int] = {label: i * width for i, label in enumerate(plain)}
        pairs = {key for key in joints for labels, _ in self.terms if key[0] in labels and key[1] in labels}
        used = {label for labels, _ in self.terms for label in labels if not any(label in key for key in pairs)}
        order = [label for label in self.labels if label not in offsets and label in used] + sorted(pairs)
        position = len(plain) * width
        for key in order:
            offsets[key] = position
            position += self._size(key)
        return (pad, width, order, *self._entries(offsets, frozenset(joints), position))


class FBNetLatencyLoss(nn.Module):
    r"""FBNet's hardware-aware loss with a differentiable expected latency.

    With ``r = LAT / reference_ms`` (LAT = expected latency, ms):

    * ``mode="mul"`` (FBNet's): ``loss = CE * alpha * log(1 + r) ** beta``
    * ``mode="add"``: ``loss = CE + alpha * r ** beta``

    Why ``log(1 + r)``: FBNet's ``log(LAT) ** beta`` needs LAT > 1 in whatever unit LAT has; in ms a
    sub-millisecond GPU network gives a negative log (the loss would reward *slower* networks) and a
    fractional power of a negative number is NaN. Dividing by a reference makes the term unit-free and
    ``log(1 + r)`` keeps it positive and increasing for every latency, with the same shape as the paper's
    ``log`` for large ``r``. The default reference is the expected latency of the uniform distribution
    over candidates (where a search starts, ``r = 1``), so ``alpha`` and ``beta`` transfer across devices.

    With ``target_ms`` the term becomes a constraint: ``e = relu(LAT / target_ms - 1)`` (zero within the
    budget) and ``loss = CE * (1 + alpha * e ** beta)`` (mul) or ``CE + alpha * e ** beta`` (add).

    ``forward(loss, probs)`` returns ``(new_loss, details)`` like NNI's ``ProfilerPenalty``; ``probs`` maps
    each label to its candidate probabilities as tensors (keep them tensors to get a gradient); see the module
    docstring for InputChoices and DARTS cells. A ``target_ms`` below the fastest architecture of the space is
    refused here, before any training.
    """

    def __init__(self, profiler, alpha: float = 0.2, beta: float = 0.6, mode: str = "mul",
                 target_ms: float | None = None, reference_ms: float | None = None):
        super().__init__()
        if mode not in LOSS_MODES:
            raise InvalidInput(f"unknown mode {mode!r}: use 'mul' (FBNet's CE * alpha * log(...)^beta) or 'add'")
        if not alpha >= 0:
            raise InvalidInput(f"alpha must be >= 0, got {alpha}")
        if not beta > 0:
            raise InvalidInput(f"beta must be > 0, got {beta}")
        if target_ms is not None and not target_ms > 0:
            raise InvalidInput(f"target_ms must be a positive latency in ms, got {target_ms}")
        self.expected_latency = ExpectedLatency(profiler)
        check_target(profiler, target_ms)
        if reference_ms is None:
            reference_ms = profiler.uniform_expected_latency()
        if not reference_ms > 0:
            raise InvalidInput(f"reference latency {reference_ms} ms is not positive; the device model predicts no "
                             "latency for this space, or give reference_ms explicitly")
        self.alpha, self.beta, self.mode = float(alpha), float(beta), mode
        self.target_ms = None if target_ms is None else float(target_ms)
        self.reference_ms = float(reference_ms)

    def latency_term(self, latency_ms: torch.Tensor) -> torch.Tensor:
        """The unit-free latency quantity the loss uses (``log(1 + r)``, ``r``, or the budget excess)."""
        if self.target_ms is not None:
            excess = torch.relu(latency_ms / self.target_ms - 1.0)
            # pow's gradient at 0 is infinite for beta < 1; where the budget holds the term is exactly 0.
            return torch.where(excess > 0, excess.clamp_min(1e-12) ** self.beta, torch.zeros_like(excess))
        ratio = latency_ms / self.reference_ms
        return torch.log1p(ratio) ** self.beta if self.mode == "mul" else ratio ** self.beta

    def forward(self, loss: torch.Tensor, probs: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._penalised(loss, self.expected_latency(probs))

    def forward_logits(self, loss: torch.Tensor, logits: Mapping[str, torch.Tensor],
                       joints: Mapping[tuple, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``forward`` on ``softmax(logits)`` per label, packed into one softmax (``ExpectedLatency.from_logits``):
        what an architecture step should call."""
        return self._penalised(loss, self.expected_latency.from_logits(logits, joints))

    def _penalised(self, loss: torch.Tensor, latency_ms: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        term = self.latency_term(latency_ms)
        if self.mode == "mul":
            factor = 1.0 + self.alpha * term if self.target_ms is not None else self.alpha * term
            new_loss = loss * factor
        else:
            new_loss = loss + self.alpha * term
        details = {"loss_original": loss.detach(), "latency_ms": latency_ms.detach(),
                   "latency_term": term.detach(), "loss_final": new_loss.detach()}
        return new_loss, details

    def extra_repr(self) -> str:
        target = f", target_ms={self.target_ms}" if self.target_ms is not None else ""
        return (f"mode={self.mode!r}, alpha={self.alpha}, beta={self.beta}, "
                f"reference_ms={self.reference_ms:.4g}{target}")
