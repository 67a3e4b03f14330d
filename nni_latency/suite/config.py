"""The profile's YAML config as dataclasses: which blocks and chains the suite samples (``ProfileConfig``,
``TokenConfig``, ``ChainConfig``) and how they are timed (``TimingConfig``, whose defaults are the measurement
protocol's: one set of defaults). Reading YAML into them is ``files.config``'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

from ..runtimes import DEFAULT_RUNTIME
from ..runtimes.protocol import MeasurementProtocol

__all__ = ["ProfileConfig", "TimingConfig", "TokenConfig", "ChainConfig"]

_PROTOCOL = {f.name: f.default for f in dataclasses.fields(MeasurementProtocol)}


@dataclass
class TimingConfig:
    """How each block is timed (the YAML ``timing`` section; see ``MeasurementProtocol``, whose defaults these are)."""

    protocol: str = _PROTOCOL["protocol"]
    allocator: str = _PROTOCOL["allocator"]
    working_set_mb: float = _PROTOCOL["working_set_mb"]
    min_run_time: float = _PROTOCOL["min_run_time"]
    max_run_time: float = _PROTOCOL["max_run_time"]
    max_spread: float = _PROTOCOL["max_spread"]
    # Interleaved passes over all blocks, spreading each block's timing over the whole run; and the statistic of
    # the timed runs (0.5 the median, 0.25 the lower quartile: the quiet speed). None keeps the protocol's: one
    # pass and the median for a profile, the device model's own when a test set is measured, so a model is
    # judged on the statistic it was fitted to.
    rounds: int | None = None
    quantile: float | None = None


@dataclass
class TokenConfig:
    """The transformer block families of the suite (attention, MLP, patch embedding, windows, MobileViT)."""

    enabled: bool = True  # false: a CNN-only profile (the token families' weights are ignored)
    widths: list[int] = field(default_factory=lambda: [32, 768])  # token width, log-uniform
    sides: list[int] = field(default_factory=lambda: [7, 14, 28, 56])  # token grid side: 49 to 3136 tokens
    head_dims: list[int] = field(default_factory=lambda: [32, 64])
    mlp_ratios: list[int] = field(default_factory=lambda: [2, 3, 4])
    patches: list[int] = field(default_factory=lambda: [4, 8, 16])


@dataclass
class ChainConfig:
    """Short sequences of blocks measured as one row, as a stage of a network runs them."""

    count: int = 0
    lengths: list[int] = field(default_factory=lambda: [2, 4])  # [shortest, longest]
    families: list[str] = field(default_factory=lambda: [
        "mbconv", "mbconv", "basic", "bottleneck", "dw_separable", "shuffle", "ghost", "mixconv", "dense",
        "convnext", "mixed"])


@dataclass
class ProfileConfig:
    """The micro-benchmark suite: what blocks to sample and how to measure and fit them."""

    seed: int = 0
    count: int = 100
    batch: int = 1
    dtype: str = "fp32"
    threads: int = 1
    runtime: str = DEFAULT_RUNTIME  # torch (eager PyTorch) or onnxruntime: what runs the blocks on the device
    model_kind: str = "op_linear"
    families: dict[str, float] = field(default_factory=lambda: {
        "mbconv": 0.20, "conv_bn_relu": 0.10, "dw_separable": 0.06, "basic": 0.06, "bottleneck": 0.06,
        "skip": 0.02, "maxpool": 0.02, "avgpool": 0.02, "classifier": 0.03, "ghost": 0.03, "mixconv": 0.03,
        "dense": 0.03, "linear": 0.03, "convnext": 0.03, "attention": 0.06, "attention_explicit": 0.04,
        "mlp": 0.06, "window_attention": 0.03, "patch_embed": 0.02, "mobilevit": 0.03})
    channels: list[int] = field(default_factory=lambda: [8, 512])
    resolutions: list[int] = field(default_factory=lambda: [7, 14, 28, 56, 112])
    kernels: list[int] = field(default_factory=lambda: [3, 5, 7])
    expansions: list[int] = field(default_factory=lambda: [1, 3, 6])
    groups: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    strides: list[int] = field(default_factory=lambda: [1, 2])
    activations: list[str] = field(default_factory=lambda: ["relu", "relu", "relu6", "hswish", "silu"])
    se_share: float = 0.15
    extra_batches: list[int] = field(default_factory=lambda: [2, 4])
    extra_batch_share: float = 0.15
    max_mflops: float = 1500.0
    coupled_share: float = 0.5  # share of blocks whose width follows their resolution as in networks
    tokens: TokenConfig = field(default_factory=TokenConfig)
    chains: ChainConfig = field(default_factory=ChainConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)

    def covering_batches(self, batches: Sequence[int]) -> ProfileConfig:
        """This config with its blocks and chains spread evenly over ``batches`` (the first is the model's)."""
        first, *others = batches
        return dataclasses.replace(self, batch=first, extra_batches=list(others),
                                   extra_batch_share=len(others) / len(batches))
