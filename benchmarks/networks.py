"""Whole networks for the benchmark: how they are built, cut into blocks, and measured block by block.

A network is described by a small JSON-able dict (``{"kind": "fbnet", "sample": {...}}``), so a child
process can rebuild exactly the same network: measurements under glibc's default allocator must run in a
process that never switched to the steady policy (mallopt is process-wide and one-way).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from nni_latency.files.fileio import append_jsonl, atomic_write_json, read_jsonl
from nni_latency.measure.allocator import apply_allocator_policy
from nni_latency.measure.latency import measure_latency
from nni_latency.runtimes.protocol import MeasurementProtocol
from nni_latency.spaces.hub import build_space
from nni_latency.suite.blocks import BasicBlock, ConvBNAct, MBConv

_logger = logging.getLogger(__name__)

NETWORK_INPUT = (1, 3, 224, 224)
SPACES = ("fbnet", "proxylessnas")


class _Classifier(nn.Module):
    """features -> global pool -> linear, the tail every ImageNet CNN here shares."""

    def __init__(self, features: nn.Sequential, width: int, classes: int = 1000):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def mobilenet_v2() -> nn.Module:
    """MobileNetV2 1.0 (Sandler et al., Table 2) from ``blocks.MBConv`` with ReLU6."""
    layers: list[nn.Module] = [ConvBNAct(3, 32, 3, 2, act="relu6")]
    c_in = 32
    for expansion, width, repeats, stride in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                              (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for index in range(repeats):
            layers.append(MBConv(c_in, width, 3, stride if index == 0 else 1, expansion, act="relu6"))
            c_in = width
    layers.append(ConvBNAct(c_in, 1280, 1, act="relu6"))
    return _Classifier(nn.Sequential(*layers), 1280)


def resnet18() -> nn.Module:
    """ResNet-18 from ``blocks.BasicBlock``."""
    layers: list[nn.Module] = [ConvBNAct(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [BasicBlock(c_in, width, stride=stride), BasicBlock(width, width)]
        c_in = width
    return _Classifier(nn.Sequential(*layers), 512)


FIXED_NETWORKS: dict[str, Callable[[], nn.Module]] = {"mobilenetv2": mobilenet_v2, "resnet18": resnet18}


def random_samples(space: nn.Module, count: int, seed: int) -> list[dict]:
    """``count`` random architectures (label -> value) of an NNI space, reproducible from ``seed``."""
    samples = []
    for index in range(count):
        memo: dict = {}
        space.random(memo=memo, random_state=np.random.RandomState(seed + index))
        samples.append({label: (int(v) if isinstance(v, (int, np.integer)) else v) for label, v in memo.items()})
    return samples


def build_network(description: dict, space: nn.Module | None = None) -> nn.Module:
    """The network a description names: a fixed network, or a sample frozen from a space."""
    torch.manual_seed(0)
    kind = description["kind"]
    if kind in FIXED_NETWORKS:
        return FIXED_NETWORKS[kind]().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        space = space if space is not None else build_space(kind)
        return space.freeze(description["sample"]).eval()


def plain_module(candidate: nn.Module) -> nn.Module:
    """A space's candidate as it runs in a frozen network (``Mutable*`` layers replaced by torch ones)."""
    from nni.nas.nn.pytorch.base import recursive_freeze

    return recursive_freeze(candidate, {}, include_root=True)[0]


@dataclass
class Block:
    """One block of a network: its path, the module, and the input shape(s) it was called with."""

    path: str
    module: nn.Module
    input_shapes: tuple[tuple[int, ...], ...]

    @property
    def shape_argument(self):
        return self.input_shapes[0] if len(self.input_shapes) == 1 else list(self.input_shapes)

    @property
    def signature(self) -> str:
        """Identifies what runs: the module's structure and the input shapes (names and weights aside)."""
        text = f"{type(self.module).__qualname__}|{self.module!r}|{self.input_shapes}"
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def _is_container(module: nn.Module, root: nn.Module) -> bool:
    """Descend into the network itself and into plain containers of blocks; anything else is a block.

    A plain ``nn.Sequential`` of leaf layers (conv, BN, ReLU) is itself a block (a stem or a head).
    """
    if module is root:
        return True
    if type(module) not in (nn.Sequential, nn.ModuleList):
        return False
    return any(len(list(child.children())) > 0 for child in module.children())


def network_blocks(network: nn.Module, input_shape: Sequence[int] = NETWORK_INPUT) -> list[Block]:
    """The blocks of ``network`` in call order, with the shapes a real forward pass gives them."""
    blocks: list[Block] = []
    handles = []

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if _is_container(child, network):
                visit(child, path)
            else:
                def hook(mod, args, path=path):
                    shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
                    blocks.append(Block(path, mod, shapes))
                handles.append(child.register_forward_pre_hook(hook))

    visit(network, "")
    try:
        with torch.no_grad():
            network.eval()(torch.randn(*input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return blocks


class BlockTable:
    """Isolated latencies of blocks keyed by signature, kept in a JSONL file: a measured lookup table.

    Each entry also records the seconds its measuring took, so the cost of building a table is known.
    """

    def __init__(self, path: Path, timing: dict[str, Any], protocol: str = "rotate"):
        self.path = Path(path)
        self.timing = dict(timing)
        self.protocol = protocol
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            self.entries = {r["signature"]: r for r in read_jsonl(self.path) if r.get("protocol") == protocol}

    def latency(self, module: nn.Module, input_shapes: tuple, signature: str, **meta) -> float:
        """The block's isolated median latency (ms), measured now if the table lacks it."""
        if signature not in self.entries:
            shape = input_shapes[0] if len(input_shapes) == 1 else list(input_shapes)
            started = time.perf_counter()
            measurement = measure_latency(module, shape, protocol=self.protocol, **self.timing)
            record = {"signature": signature, "protocol": self.protocol,
                      "input_shapes": [list(s) for s in input_shapes],
                      "latency_ms": measurement.median_ms, "iqr_ms": measurement.iqr_ms, "noisy": measurement.noisy,
                      "seconds": round(time.perf_counter() - started, 4), **meta}
            append_jsonl(self.path, record)
            self.entries[signature] = record
        return float(self.entries[signature]["latency_ms"])

    def block_latency(self, block: Block, **meta) -> float:
        return self.latency(block.module, block.input_shapes, block.signature, path=block.path, **meta)

    def seconds(self, where: Callable[[dict], bool] = lambda r: True) -> float:
        return float(sum(r["seconds"] for r in self.entries.values() if where(r)))


def in_fresh_process(target: Callable[..., None], args: tuple, what: str) -> None:
    """Run ``target(*args)`` in a freshly spawned process and wait for it: the allocator policy is process-wide
    and one-way, so a measurement under another policy needs a process that never enabled this one's."""
    child = multiprocessing.get_context("spawn").Process(target=target, args=args)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the {what} process failed (exit code {child.exitcode})")


def allocator_breakdown(descriptions: list[dict], allocator: str, timing: dict[str, Any], output: str) -> None:
    """Measure each network whole and as a sum of isolated blocks (hot and rotate) under one allocator policy.

    Meant to run in a fresh (spawned) process: under ``allocator="default"`` the process must never have
    enabled the steady policy. Writes ``output`` (JSON) atomically.
    """
    timing = {**timing, "allocator": allocator}
    apply_allocator_policy(MeasurementProtocol(allocator=allocator))  # "default" leaves this fresh process alone
    results = []
    for description in descriptions:
        network = build_network(description)
        whole = measure_latency(network, NETWORK_INPUT, protocol="rotate", **timing)
        blocks = network_blocks(network)
        sums = {}
        for protocol in ("hot", "rotate"):
            table = BlockTable(Path(output).with_suffix(f".{protocol}.jsonl"), timing, protocol)
            sums[protocol] = sum(table.block_latency(block) for block in blocks)
        results.append({"name": description["name"], "allocator": allocator, "whole_ms": whole.median_ms,
                        "whole_iqr_ms": whole.iqr_ms, "hot_sum_ms": sums["hot"], "rotate_sum_ms": sums["rotate"],
                        "blocks": len(blocks)})
        _logger.info("%s (%s allocator): whole %.2f ms, hot sum %.2f, rotate sum %.2f", description["name"],
                     allocator, whole.median_ms, sums["hot"], sums["rotate"])
    atomic_write_json(output, results)
