"""``FBNet``: NNI's GumbelDARTS strategy with a latency loss that actually reaches the architecture logits.

NNI 3.0's ``DartsLightningModule.training_step`` hands its penalty ``self.export_probs()``, i.e.
``softmax(alpha).cpu().tolist()``: Python floats. ``ExpectationProfilerPenalty`` therefore adds a
constant to the architecture loss and contributes no gradient; a "latency-aware" DARTS/GumbelDARTS
search in NNI 3.0 is not latency-aware at all. ``FBNetLightningModule`` recomputes the probabilities from
the architecture logits as tensors and applies ``FBNetLatencyLoss`` to them, keeping the rest of NNI's
training step (phases, warm-up, temperature annealing, logging) unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from nni.nas.oneshot.pytorch.differentiable import GumbelDartsLightningModule
from nni.nas.oneshot.pytorch.profiler import ProfilerPenalty
from nni.nas.strategy import GumbelDARTS

from .loss import FBNetLatencyLoss

_logger = logging.getLogger(__name__)

__all__ = ["FBNet", "FBNetLightningModule", "architecture_logits"]


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


class FBNetLightningModule(GumbelDartsLightningModule):
    """GumbelDARTS whose architecture step adds ``FBNetLatencyLoss`` on ``softmax(alpha)`` as tensors.

    The latency uses the plain softmax of the logits (the architecture distribution the search exports
    the argmax of), not a Gumbel sample, so the expected latency has no sampling noise.
    """

    def __init__(self, training_module, temperature_scheduler, *, latency_loss: FBNetLatencyLoss, **kwargs):
        super().__init__(training_module, temperature_scheduler, penalty=None, **kwargs)
        self.latency_loss = latency_loss
        # NNI's training_step calls ``self.penalty(loss, self.export_probs())``; the floats it passes carry
        # no gradient, so the penalty here ignores them and reads the logits itself.
        self.penalty = self._latency_penalty

    def architecture_probs(self) -> dict[str, torch.Tensor]:
        """label -> softmax of its architecture logits (differentiable)."""
        return {label: torch.softmax(alpha, dim=-1)
                for label, alpha in architecture_logits(self.supernet_modules()).items()}

    def _latency_penalty(self, loss: torch.Tensor, _exported_floats: Any) -> tuple[torch.Tensor, dict]:
        return self.latency_loss(loss, self.architecture_probs())


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
        if isinstance(penalty, ProfilerPenalty) or not isinstance(penalty, FBNetLatencyLoss):
            raise ValueError(f"FBNet needs penalty=FBNetLatencyLoss(profiler, ...), got {type(penalty).__name__}; "
                             "NNI's profiler penalties receive floats from NNI 3.0's training step and give no "
                             "gradient (see docs/NAS.md)")
        super().__init__(**kwargs)
        self.latency_loss = penalty

    def configure_oneshot_module(self, training_module) -> FBNetLightningModule:
        # GumbelDARTS parses the temperature option into a scheduler; reuse it rather than re-parse.
        gumbel = super().configure_oneshot_module(training_module)
        return FBNetLightningModule(
            training_module, gumbel.temperature_scheduler, latency_loss=self.latency_loss,
            arc_learning_rate=self.arc_learning_rate, gradient_clip_val=self.gradient_clip_val,
            log_prob_every_n_step=self.log_prob_every_n_step, warmup_epochs=self.warmup_epochs)
