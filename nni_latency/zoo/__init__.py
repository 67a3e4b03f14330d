"""Reference networks written from their papers in plain PyTorch (no torchvision, no timm).

The zoo is the whole-network *test set*: nothing here is ever sampled into the profiling suite, so
accuracy on it says how the device model does on architectures it never saw.

    from nni_latency import zoo
    zoo.names("cnn")                      # ['densenet121', 'efficientnet_b0', ...]
    net = zoo.build("resnet50")           # a fresh nn.Module
    zoo.get("resnet50").input_shape()     # (1, 3, 224, 224)
"""

from .registry import KINDS, ZooEntry, build, get, names, register

__all__ = ["KINDS", "ZooEntry", "build", "get", "names", "register"]
