"""A latency-only DARTS search, shared by the cell-space tests: NNI's DARTS parametrisation of ``space``
(edge logits, export of the best (op, input) pairs), trained on the latency term alone."""

from __future__ import annotations

import copy

import torch

from nni_latency.nas import FBNetLatencyLoss, LatencyDARTS
from nni_latency.nas.strategy import architecture_logits, architecture_probs


def latency_only_search(space, profiler, steps: int) -> dict:
    """The architecture a DARTS supernet of ``space`` exports after ``steps`` Adam steps on latency alone."""
    loss = FBNetLatencyLoss(profiler, alpha=1.0, mode="add")
    supernet = LatencyDARTS(penalty=loss).mutate_model(copy.deepcopy(space))
    optimizer = torch.optim.Adam(list(architecture_logits(supernet.modules()).values()), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        loss(torch.tensor(0.0), architecture_probs(supernet.modules()))[0].backward()
        optimizer.step()
    memo: dict = {}
    for module in supernet.modules():
        if hasattr(module, "export") and hasattr(module, "_arch_alpha"):
            memo.update(module.export(memo))
    return memo
