"""``FBNet``: NNI's GumbelDARTS strategy with a latency loss that actually reaches the architecture logits.

NNI 3.0's ``DartsLightningModule.training_step`` hands its penalty ``self.export_probs()``, i.e.
``softmax(alpha).cpu().tolist()``: Python floats. ``ExpectationProfilerPenalty`` therefore adds a
constant to the architecture loss and contributes no gradient; a "latency-aware" DARTS/GumbelDARTS
search in NNI 3.0 is not latency-aware at all. ``FBNetLightningModule`` recomputes the probabilities from
the architecture logits as tensors (LayerChoices, value choices, Repeat depths, InputChoices and the edges
of DARTS cells) and applies ``FBNetLatencyLoss`` to them, keeping the rest of NNI's training step (phases,
warm-up, temperature annealing, logging) unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from nni.nas.oneshot.pytorch.differentiable import GumbelDartsLightningModule
from nni.nas.oneshot.pytorch.profiler import ProfilerPenalty
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedCell
from nni.nas.strategy import DARTS, GumbelDARTS, Proxyless
from torch import nn

from ..errors import InvalidInput
from .loss import FBNetLatencyLoss

_logger = logging.getLogger(__name__)

__all__ = ["FBNet", "FBNetLightningModule", "LatencyDARTS", "LatencyProxyless", "architecture_logits",
           "architecture_probs", "architecture_joints", "ArchitectureParameters", "cell_slot_probs",
           "attach_latency_loss"]


def architecture_logits(modules) -> dict[str, nn.Parameter]:
    """label -> architecture logits (``alpha``) of NNI's differentiable super-modules."""
    logits: dict[str, nn.Parameter] = {}
    for module in modules:
        alpha = getattr(module, "_arch_alpha", None)
        if isinstance(alpha, nn.Parameter) and getattr(module, "label", None):
            logits.setdefault(module.label, alpha)  # DifferentiableMixedLayer / MixedInput
        elif isinstance(alpha, (nn.ParameterDict, dict)):
            for label, parameter in alpha.items():  # mixed operations and Repeat: one entry per label
                logits.setdefault(label, parameter)
    return logits


def cell_slot_probs(cell: DifferentiableMixedCell) -> dict[tuple[str, str], torch.Tensor]:
    """(op label, input label) -> joint (ops x inputs) probability of each op slot of a DARTS cell, as tensors.

    NNI's ``DifferentiableMixedCell`` keeps one logit vector per edge ``j -> i`` over the ops plus "not
    chosen", and exports node ``i``'s slots as its largest (op, input) weights. A slot's pair therefore takes
    op ``o`` on input ``j`` with probability proportional to ``softmax(alpha_ij)[o]`` (the "not chosen" weight
    only makes edge ``j`` less likely), normalised over the node's edges; every slot of the node shares it.
    All edges of the cell go through one softmax and one normalisation (a few ops per cell, not per edge).
    """
    count = len(cell.op_names)
    nodes = range(cell.num_predecessors, cell.num_predecessors + cell.num_nodes)
    edges = torch.softmax(torch.stack([cell._arch_alpha[f"{cell.label}/{i}_{j}"] for i in nodes for j in range(i)]),
                          dim=-1)[:, :count]
    owner = torch.tensor([n for n, i in enumerate(nodes) for _ in range(i)], device=edges.device)
    totals = torch.zeros(len(nodes), dtype=edges.dtype, device=edges.device).index_add(0, owner, edges.sum(dim=1))
    joint_rows = edges / totals.index_select(0, owner).unsqueeze(1)
    probs, start = {}, 0
    for i in nodes:
        joint = joint_rows[start:start + i].t()
        start += i
        for k in range(cell.num_ops_per_node):
            probs[(f"{cell.label}/op_{i}_{k}", f"{cell.label}/input_{i}_{k}")] = joint
    return probs


def architecture_joints(modules) -> dict[tuple[str, str], torch.Tensor]:
    """(op, input) -> joint of every DARTS cell's op slots (``cell_slot_probs``), differentiable; cells sharing a
    label (NDS: every normal cell) share their logits, so each label is computed once."""
    joints: dict = {}
    seen = set()
    for module in modules:
        if isinstance(module, DifferentiableMixedCell) and module.label not in seen:
            seen.add(module.label)
            joints.update(cell_slot_probs(module))
    return joints


class ArchitectureParameters:
    """The architecture logits and DARTS cells of a supernet, found once: a supernet of 8 NDS cells has thousands of
    modules, and walking them costs 50x the latency term itself (the parameters stay the same objects in training)."""

    def __init__(self, modules):
        modules = list(modules)
        self.logits = architecture_logits(modules)
        labels = set()
        self.cells = [m for m in modules if isinstance(m, DifferentiableMixedCell)
                      and not (m.label in labels or labels.add(m.label))]

    def joints(self) -> dict[tuple[str, str], torch.Tensor]:
        return architecture_joints(self.cells)


def architecture_probs(modules) -> dict:
    """label -> softmax of its architecture logits, and (op, input) -> joint for DARTS cells; all differentiable."""
    modules = list(modules)
    probs: dict = {label: torch.softmax(alpha, dim=-1) for label, alpha in architecture_logits(modules).items()}
    probs.update(architecture_joints(modules))
    return probs


def attach_latency_loss(oneshot_module, latency_loss: FBNetLatencyLoss):
    """Make a DARTS-family one-shot module's architecture step add ``latency_loss`` on its logits, as tensors.

    NNI's ``DartsLightningModule.training_step`` calls ``self.penalty(loss, self.export_probs())``; the floats
    it passes carry no gradient, so the penalty set here ignores them and reads the logits itself. The plain
    softmax is used (the distribution whose argmax is exported), never a Gumbel sample.
    """
    oneshot_module.latency_loss = latency_loss  # a submodule: its tables move with the module's device
    found: list[ArchitectureParameters] = []

    def penalty(loss: torch.Tensor, _exported_floats: Any) -> tuple[torch.Tensor, dict]:
        if not found:  # the supernet exists by the first architecture step
            found.append(ArchitectureParameters(oneshot_module.supernet_modules()))
        return oneshot_module.latency_loss.forward_logits(loss, found[0].logits, found[0].joints())

    oneshot_module.penalty = penalty
    return oneshot_module


def _check_penalty(strategy: str, penalty) -> None:
    if isinstance(penalty, ProfilerPenalty) or not isinstance(penalty, FBNetLatencyLoss):
        raise InvalidInput(f"{strategy} needs penalty=FBNetLatencyLoss(profiler, ...), got {type(penalty).__name__}; "
                         "NNI's profiler penalties receive floats from NNI 3.0's training step and give no "
                         "gradient (see docs/NAS.md)")


class FBNetLightningModule(GumbelDartsLightningModule):
    """GumbelDARTS whose architecture step adds ``FBNetLatencyLoss`` on ``softmax(alpha)`` as tensors
    (``attach_latency_loss``)."""

    def __init__(self, training_module, temperature_scheduler, *, latency_loss: FBNetLatencyLoss, **kwargs):
        super().__init__(training_module, temperature_scheduler, penalty=None, **kwargs)
        attach_latency_loss(self, latency_loss)

    def architecture_probs(self) -> dict:
        """label -> softmax of its architecture logits, (op, input) -> joint for DARTS cells (differentiable)."""
        return architecture_probs(self.supernet_modules())


class _LatencyLossStrategy:
    """A DARTS-family NNI strategy whose architecture step adds an ``FBNetLatencyLoss`` with a gradient."""

    def __init__(self, penalty: FBNetLatencyLoss, **kwargs):
        _check_penalty(type(self).__name__, penalty)
        super().__init__(**kwargs)
        self.latency_loss = penalty

    def configure_oneshot_module(self, training_module):
        return attach_latency_loss(super().configure_oneshot_module(training_module), self.latency_loss)


class LatencyDARTS(_LatencyLossStrategy, DARTS):
    """NNI's DARTS (first order, plain softmax) with the differentiable latency term ``penalty=FBNetLatencyLoss``."""


class LatencyProxyless(_LatencyLossStrategy, Proxyless):
    """NNI's Proxyless with the differentiable latency term: ProxylessNAS's ``E[LAT] = sum_i p_i LAT_i`` of
    ``softmax(alpha)`` (``penalty=FBNetLatencyLoss``), next to NNI's binary-gate gradient of the loss."""


class FBNet(GumbelDARTS):
    """FBNet (Wu et al., 2019) in NNI 3.0: GumbelDARTS plus a differentiable latency loss.

    Parameters
    ----------
    penalty
        An ``FBNetLatencyLoss`` built on a ``LatencyProfiler`` of the same model space.
    **kwargs
        GumbelDARTS / DARTS options: ``temperature``, ``arc_learning_rate``, ``warmup_epochs``,
        ``gradient_clip_val``, ``log_prob_every_n_step``.

    Use it like any NNI strategy: ``NasExperiment(space, evaluator, FBNet(penalty=loss, ...)).run()``.
    """

    def __init__(self, penalty: FBNetLatencyLoss, **kwargs):
        _check_penalty("FBNet", penalty)
        super().__init__(**kwargs)
        self.latency_loss = penalty

    def configure_oneshot_module(self, training_module) -> FBNetLightningModule:
        # GumbelDARTS parses the temperature option into a scheduler; reuse it rather than re-parse.
        gumbel = super().configure_oneshot_module(training_module)
        return FBNetLightningModule(
            training_module, gumbel.temperature_scheduler, latency_loss=self.latency_loss,
            arc_learning_rate=self.arc_learning_rate, gradient_clip_val=self.gradient_clip_val,
            log_prob_every_n_step=self.log_prob_every_n_step, warmup_epochs=self.warmup_epochs)
