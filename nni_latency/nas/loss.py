"""FBNet's latency-aware loss, computed from architecture probabilities *as tensors*, so it has a gradient.

``LAT`` is the expected latency (ms) of the architecture distribution: every latency table of a
``LatencyProfiler`` contracted with the probabilities of its labels. For a layer that is a LayerChoice
this is FBNet's ``sum_i p_i * LAT_i``; a table over two labels (a Repeat depth and a layer's choice, or a
width choice and the block whose input it changes) is contracted with both, which is the exact
expectation when the labels are independent, as they are in DARTS-style searches.
"""

from __future__ import annotations

import logging
import string
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

_logger = logging.getLogger(__name__)

__all__ = ["ExpectedLatency", "FBNetLatencyLoss", "LOSS_MODES"]

LOSS_MODES = ("mul", "add")


class ExpectedLatency(nn.Module):
    """Expected latency (ms) of label probabilities, from a profiler's tables, vectorised.

    The single-label tables (one per searched layer) are concatenated into one vector, so a 22-layer,
    9-candidate space costs one concatenation and one dot product per step; tables over several labels
    are contracted with ``einsum``.
    """

    def __init__(self, profiler):
        super().__init__()
        self.label_values = profiler.label_values
        constant = 0.0
        single: dict[str, np.ndarray] = {}
        multi: list[tuple[tuple[str, ...], np.ndarray]] = []
        for term in profiler.terms:
            if not term.labels:
                constant += float(term.table)
            elif len(term.labels) == 1:
                single[term.labels[0]] = single.get(term.labels[0], 0.0) + term.table
            else:
                multi.append((term.labels, term.table))
        self.register_buffer("constant_ms", torch.tensor(constant, dtype=torch.float32))
        self._single_labels = list(single)
        flat = np.concatenate([single[label] for label in self._single_labels]) if single else np.zeros(0)
        self.register_buffer("single_tables", torch.tensor(flat, dtype=torch.float32))
        self._multi: list[tuple[tuple[str, ...], str, str]] = []
        for i, (labels, table) in enumerate(multi):
            letters = string.ascii_letters[:len(labels)]
            name = f"joint_{i}"
            self.register_buffer(name, torch.tensor(table, dtype=torch.float32))
            self._multi.append((labels, name, ",".join(letters) + f",{letters}->"))
        self.labels = sorted(set(self._single_labels) | {label for labels, _, _ in self._multi for label in labels})

    def probabilities(self, probs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Probability vectors of the labels the latency depends on, as tensors in ``label_values`` order.

        Accepts per label a tensor or list (one entry per candidate) or NNI's ``export_probs`` form
        (a dict from candidate value to probability).
        """
        missing = [label for label in self.labels if label not in probs]
        if missing:
            raise ValueError(f"probabilities lack label(s) {', '.join(missing)}; the latency depends on them "
                             "(build the profiler and the search on the same model space)")
        result = {}
        for label in self.labels:
            values, given = self.label_values[label], probs[label]
            if isinstance(given, Mapping):
                unknown = [v for v in given if v not in values]
                if unknown:
                    raise ValueError(f"probabilities for {label!r} name unknown candidate(s) {unknown}; "
                                     f"candidates are {values}")
                given = [given.get(v, 0.0) for v in values]
            if not isinstance(given, torch.Tensor):
                given = torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in given])
            if given.shape != (len(values),):
                raise ValueError(f"probabilities for {label!r} have shape {tuple(given.shape)}, expected "
                                 f"({len(values)},) for candidates {values}")
            result[label] = given
        return result

    def forward(self, probs: Mapping[str, Any]) -> torch.Tensor:
        tensors = self.probabilities(probs)
        total = self.constant_ms
        if self._single_labels:
            stacked = torch.cat([tensors[label] for label in self._single_labels])
            total = total + stacked.to(self.single_tables.dtype) @ self.single_tables.to(stacked.device)
        for labels, name, equation in self._multi:
            table = getattr(self, name)
            operands = [tensors[label].to(table.device, table.dtype) for label in labels]
            total = total + torch.einsum(equation, *operands, table)
        return total


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
    each label to its candidate probabilities as tensors (keep them tensors to get a gradient).
    """

    def __init__(self, profiler, alpha: float = 0.2, beta: float = 0.6, mode: str = "mul",
                 target_ms: float | None = None, reference_ms: float | None = None):
        super().__init__()
        if mode not in LOSS_MODES:
            raise ValueError(f"unknown mode {mode!r}: use 'mul' (FBNet's CE * alpha * log(...)^beta) or 'add'")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if target_ms is not None and not target_ms > 0:
            raise ValueError(f"target_ms must be a positive latency in ms, got {target_ms}")
        self.expected_latency = ExpectedLatency(profiler)
        if reference_ms is None:
            reference_ms = profiler.uniform_expected_latency()
        if not reference_ms > 0:
            raise ValueError(f"reference latency {reference_ms} ms is not positive; the device model predicts no "
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
        latency_ms = self.expected_latency(probs)
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
