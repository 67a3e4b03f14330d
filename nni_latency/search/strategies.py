"""Which NNI one-shot strategy a search runs (``strategy.name``) and how the predicted latency enters it.

Where NNI takes a penalty on the loss (DARTS, Proxyless, GumbelDARTS), NNI 3.0 hands it Python floats, so it has
no gradient; ``fbnet``, ``darts`` and ``proxyless`` therefore get ``FBNetLatencyLoss`` on the architecture logits
as tensors (``nni_latency.nas.strategy``). ``gumbel_darts`` keeps NNI's own ``ExpectationProfilerPenalty`` to
show that defect. ENAS is reinforcement learning: the penalty goes into its reward, where floats are all it
needs (``SampleProfilerPenalty`` on the profiler).
"""

from __future__ import annotations

import logging
from typing import Any

from .config import SearchConfig

_logger = logging.getLogger(__name__)

__all__ = ["build_strategy"]


def build_strategy(config: SearchConfig, latency_source) -> tuple[Any, str]:
    """The configured one-shot strategy with its latency term, and a name saying which one ran.

    ``alpha == 0`` runs the strategy without any latency term (``fbnet`` then is plain GumbelDARTS, since
    FBNet's ``CE * alpha * ...`` would be 0); the budget ``target_ms`` is checked before anything trains.
    """
    from nni.nas.oneshot.pytorch.profiler import ExpectationProfilerPenalty, SampleProfilerPenalty
    from nni.nas.strategy import DARTS, ENAS, GumbelDARTS, Proxyless

    from ..nas import FBNet, FBNetLatencyLoss, LatencyDARTS, LatencyProxyless
    from ..nas.loss import check_target

    latency, options, name = config.latency, config.strategy, config.strategy.name
    check_target(latency_source, latency.target_ms, "latency.target_ms")
    darts = dict(arc_learning_rate=options.arc_learning_rate, warmup_epochs=options.warmup_epochs,
                 gradient_clip_val=options.gradient_clip_val, log_prob_every_n_step=options.log_prob_every_n_step)
    gumbel = dict(darts, temperature=(options.temperature_init, options.temperature_min))
    if name == "enas":
        penalty = None
        if latency.alpha > 0:  # a reward: being slower than the baseline lowers it
            penalty = SampleProfilerPenalty(latency_source, latency.target_ms or latency_source.uniform_expected_latency(),
                                            scale=-latency.alpha,
                                            nonlinear="positive" if latency.target_ms else "linear")
        return ENAS(warmup_epochs=options.warmup_epochs, log_prob_every_n_step=options.log_prob_every_n_step,
                    penalty=penalty), "enas" + (" (latency in the reward)" if penalty else "")
    if latency.alpha == 0:
        if name == "darts":
            return DARTS(**darts), "darts"
        if name == "proxyless":
            return Proxyless(**darts), "proxyless"
        return GumbelDARTS(**gumbel), "gumbel_darts"
    if name == "gumbel_darts":
        baseline = latency.target_ms or latency_source.uniform_expected_latency()
        penalty = ExpectationProfilerPenalty(latency_source, baseline, scale=latency.alpha,
                                             nonlinear="positive" if latency.target_ms else "linear",
                                             aggregate=latency.mode)
        return GumbelDARTS(penalty=penalty, **gumbel), "gumbel_darts (NNI's penalty)"
    loss = FBNetLatencyLoss(latency_source, latency.alpha, latency.beta, mode=latency.mode, target_ms=latency.target_ms)
    if name == "darts":
        return LatencyDARTS(penalty=loss, **darts), "darts"
    if name == "proxyless":
        return LatencyProxyless(penalty=loss, **darts), "proxyless"
    return FBNet(penalty=loss, **gumbel), "fbnet"
