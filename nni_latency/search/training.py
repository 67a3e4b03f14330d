"""Training and scoring one network outside Lightning: the short training of a multi-trial search's trials, and
top-1 accuracy on a loader (used for every accuracy a search reports)."""

from __future__ import annotations

import logging

import torch
from torch import nn

_logger = logging.getLogger(__name__)

__all__ = ["top1_accuracy", "train_briefly"]


@torch.no_grad()
def top1_accuracy(model: nn.Module, loader, device: torch.device | str = "cpu") -> float:
    was_training = model.training
    model.eval()
    correct = total = 0
    for images, labels in loader:
        predicted = model(images.to(device)).argmax(-1).cpu()
        correct += int((predicted == labels).sum())
        total += len(labels)
    model.train(was_training)
    return correct / max(total, 1)


def train_briefly(model: nn.Module, loader, epochs: int, learning_rate: float, weight_decay: float,
                  optimizer: str = "adam") -> nn.Module:
    """Train ``model`` in place for ``epochs`` with cross-entropy (Adam or SGD with momentum); returns it."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        step = torch.optim.SGD(parameters, lr=learning_rate, momentum=0.9, weight_decay=weight_decay)
    else:
        step = torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for images, labels in loader:
            step.zero_grad()
            output = model(images)
            loss = loss_fn(output[0] if isinstance(output, tuple) else output, labels)
            loss.backward()
            step.step()
    model.eval()
    return model
