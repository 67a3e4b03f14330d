"""The profiling suite: which blocks and chains of blocks a profile measures, and why.

Blocks are allocated to families by weight and log-stratified on a work proxy per family, so the suite
spans the FLOPs and bytes networks use instead of crowding around one size. Half the blocks (``coupled_share``)
take their width from their resolution as networks do (few channels on large maps, many on small ones); the
rest are drawn independently, so odd shapes that search spaces explore are covered too. Chains are short
sequences of blocks as a stage of a network runs them: features add up, so a chain is one more row of the
regression, and it brings into the fit what blocks pay only inside a network.
"""

from __future__ import annotations

import glob
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidInput
from .blocks import FAMILIES, TOKEN_INPUT_FAMILIES, VARIANTS, BlockSpec, ChainSpec
from .cell_ops import CELL_OPS
from .config import ProfileConfig
from .tokens import TOKEN_FAMILIES

_logger = logging.getLogger(__name__)

__all__ = ["sample_specs", "sample_chains", "suite_specs", "round_channels", "TOKEN_BLOCK_FAMILIES",
           "last_level_cache_bytes", "STREAM_FAMILIES"]

TOKEN_BLOCK_FAMILIES = frozenset(TOKEN_FAMILIES) - {"convnext"}  # families the ``tokens`` section governs
# Families sized by their weight bytes against the last-level cache (``_stream_spec``), not by the FLOPs cap.
STREAM_FAMILIES = frozenset({"stream_head", "stream_linear"})
_STREAM_RANGE = (0.25, 4.0)  # weight bytes of the stream families, as multiples of the last-level cache
_STREAM_MAX_BYTES = 512 * 2**20  # and never more than this, so that building and timing one stays short
_DEFAULT_CACHE_BYTES = 32 * 2**20
_SIZE_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}
_SE_FAMILIES = ("mbconv", "basic", "bottleneck", "ghost")
# Widths networks use at each resolution (channels grow as the map shrinks), as (low, high) at 224 px input.
_NETWORK_WIDTHS = {112: (16, 64), 56: (24, 128), 28: (32, 256), 14: (64, 512), 7: (128, 1024)}


def round_channels(value: float, multiple: int = 8) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def last_level_cache_bytes() -> int:
    """The largest cache CPU 0 sees (``/sys/devices/system/cpu/cpu0/cache/index*/size``), beyond which weights
    stream from memory; 32 MiB where the sizes cannot be read (a CUDA profile does not use it)."""
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = Path(path).read_text(encoding="ascii").strip().upper()
        except OSError:
            continue
        unit = _SIZE_UNITS.get(text[-1:], 1)
        digits = text.rstrip("KMGB")
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    if not sizes:
        _logger.debug("no cache sizes under /sys; sizing the stream blocks for a %d MiB cache",
                      _DEFAULT_CACHE_BYTES >> 20)
    return max(sizes, default=_DEFAULT_CACHE_BYTES)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(max(high, low))))


def _channels(resolution: int, rng: np.random.Generator, config: ProfileConfig) -> int:
    low, high = config.channels
    if rng.random() < config.coupled_share:
        side = min(_NETWORK_WIDTHS, key=lambda r: abs(math.log(r / max(resolution, 1))))
        net_low, net_high = _NETWORK_WIDTHS[side]
        low, high = max(low, net_low), min(high, net_high)
        if low > high:
            low, high = config.channels
    return round_channels(_log_uniform(rng, low, high))


def _token_spec(family: str, rng: np.random.Generator, config: ProfileConfig, batch: int) -> BlockSpec:
    tokens = config.tokens
    side = int(rng.choice(tokens.sides))
    head_dim = int(rng.choice(tokens.head_dims))
    # Wide tokens on small grids and narrow ones on large grids, as ViTs and hierarchical transformers have.
    scale = (max(tokens.sides) / side) ** 0.5 if rng.random() < config.coupled_share else 1.0
    low, high = tokens.widths
    width = max(head_dim, round_channels(_log_uniform(rng, max(low, low * scale), min(high, high * scale / 2 + low)),
                                         head_dim))
    heads = max(1, width // head_dim)
    ratio = int(rng.choice(tokens.mlp_ratios))
    if family == "window_attention":
        window = int(rng.choice([w for w in (7, 4) if side % w == 0] or [side]))
        return BlockSpec(family, width, width, side, kernel=window, heads=heads, batch=batch)
    if family == "patch_embed":
        patch = int(rng.choice(tokens.patches))
        return BlockSpec(family, 3, width, side * patch, stride=patch, kernel=patch, batch=batch)
    if family == "mobilevit":
        channels = round_channels(_log_uniform(rng, 32, 160))
        side = max(2, side // 2 * 2)
        return BlockSpec(family, channels, width, side, expansion=2, heads=max(1, width // 32), batch=batch)
    expansion = ratio if family == "mlp" else 1
    return BlockSpec(family, width, width, side, expansion=expansion, heads=heads, batch=batch)


def _attention_heads_spec(rng: np.random.Generator, batch: int) -> BlockSpec:
    # Attention written out with 1-12 heads of 16-64 dims over 196-3136 tokens (long softmax rows, many bmm).
    heads, head_dim, side = (int(rng.choice(v)) for v in ((1, 2, 3, 4, 6, 8, 12), (16, 32, 64), (14, 28, 56, 56)))
    return BlockSpec("attention_heads", heads * head_dim, heads * head_dim, side, heads=heads, batch=batch)


def _stream_spec(family: str, rng: np.random.Generator, batch: int) -> BlockSpec:
    """Weights of 1/4 to 4 times the last-level cache: VGG's head (a linear layer on the flattened 7x7 map), a 1x1
    conv head on a pooled map, or a batch-1 linear layer with or without a bias (addmm or mm)."""
    low, high = (ratio * last_level_cache_bytes() for ratio in _STREAM_RANGE)
    elements = _log_uniform(rng, low, min(high, _STREAM_MAX_BYTES)) / 4  # fp32 weights
    if family == "stream_head":
        kernel = int(rng.choice([7, 1]))
        c_in = int(rng.choice([256, 512])) if kernel == 7 else round_channels(_log_uniform(rng, 1024, 4096))
        c_out = round_channels(elements / (c_in * kernel * kernel))
        return BlockSpec(family, c_in, c_out, kernel, kernel=kernel, batch=batch)
    c_in = round_channels(_log_uniform(rng, 1024, 8192))
    return BlockSpec(family, c_in, round_channels(elements / c_in), 1, kernel=1, batch=batch,
                     variant=str(rng.choice(VARIANTS[family])))


def _cell_op_spec(rng: np.random.Generator, batch: int) -> BlockSpec:
    # DARTS-like cell ops on CIFAR-sized maps (32 and 16 px, 16-64 channels); a reduction cell's ops stride by 2.
    op = str(rng.choice(CELL_OPS))
    resolution, channels = int(rng.choice([32, 16])), round_channels(_log_uniform(rng, 16, 64))
    stride = 2 if op == "factorized_reduce" or rng.random() < 0.3 else 1
    kernel = int(rng.choice([3, 5])) if op in ("sep_conv", "dil_conv") else 1 if op in (
        "factorized_reduce", "relu_conv_bn") else 3
    c_out = channels if op in ("max_pool", "avg_pool") else channels * stride
    return BlockSpec("cell_op", channels, c_out, resolution, stride, kernel, batch=batch, variant=op)


def _beyond_spec(family: str, rng: np.random.Generator, batch: int) -> BlockSpec | None:
    """Blocks of the families beyond classification (issue 28), shaped as the networks that run them."""
    def pick(options: Sequence[int]) -> int:
        return int(rng.choice(options))

    if family in ("unet_up", "aspp", "conv_pos"):
        # a decoder from a 7-28 px map halving its width; ASPP at output stride 16; CoaT's stages (64-512 wide)
        side = pick({"unet_up": [7, 14, 28], "aspp": [14, 14, 28], "conv_pos": [7, 14, 28, 56]}[family])
        width = round_channels(_log_uniform(rng, 64, min(512, 2 * 3584 / side)))
        c_out = {"unet_up": max(16, width // 2), "aspp": pick([128, 256]), "conv_pos": width}[family]
        return BlockSpec(family, width, c_out, side, kernel=pick([2, 3, 4]) if family == "unet_up" else 3,
                         batch=batch)
    if family == "sr_up":  # EDSR's x4 upsampler on 8-24 px patches of 32-64 features
        width = pick([32, 48, 64])
        return BlockSpec(family, width, width, pick([8, 12, 16, 24]), batch=batch)
    if family == "video":  # X3D / CSN stages: 24-192 channels, 2-3x wider inside, 2-16 frames
        channels = round_channels(_log_uniform(rng, 24, 192))
        return BlockSpec(family, channels, round_channels(channels * pick([2, 3])), pick([14, 28, 56]), batch=batch)
    if family == "sequence":  # a bidirectional LSTM encoder (a GRU on top for some), 16-128 steps, 64-512 wide
        variant = str(rng.choice(VARIANTS[family]))
        return BlockSpec(family, round_channels(_log_uniform(rng, 64, 512)), round_channels(_log_uniform(rng, 64, 512)),
                         pick([16, 32, 64] if variant else [16, 32, 64, 128]), batch=batch, variant=variant)
    if family == "tcn":  # Conv-TasNet: 64-256 channels, 256-512 inside, 250-2000 frames, dilations 1-128
        return BlockSpec(family, pick([64, 128, 256]), pick([256, 512]), pick([250, 500, 1000, 2000]), batch=batch,
                         variant=str(rng.choice(VARIANTS[family])))
    if family == "swin":  # Swin's stages: 96 channels at 56 tokens a side, doubling as the side halves; 7x7 windows
        side = pick([14, 28, 56])
        width = round_channels(96 * 56 / side * float(rng.choice([0.5, 1.0])), 32)
        return BlockSpec(family, width, width, side, kernel=7, expansion=4, heads=width // 32, batch=batch)
    if family == "levit":  # LeViT's stages: 128-384 wide at 14 and 7 tokens a side, 4-8 heads
        width = pick([128, 256, 384])
        return BlockSpec(family, width, width, pick([14, 7]), heads=pick([4, 6, 8]), batch=batch)
    return None


def _special_spec(family: str, rng: np.random.Generator, config: ProfileConfig, batch: int) -> BlockSpec | None:
    """Blocks of the families whose shapes follow the networks that run them rather than the config's ranges."""
    beyond = _beyond_spec(family, rng, batch)
    if beyond is not None:
        return beyond
    if family in STREAM_FAMILIES:
        return _stream_spec(family, rng, config.batch)  # at a larger batch the weights would stream once for all
    if family == "attention_heads":
        return _attention_heads_spec(rng, batch)
    if family == "cell_op":
        return _cell_op_spec(rng, batch)
    if family == "token_conv":
        # PVTv2's MLP on its stage grids (56, 28, 14, 7 tokens a side; widths 64-512, ratio 4 or 8).
        side = int(rng.choice([s for s in (56, 28, 14, 7) if s in config.tokens.sides] or config.tokens.sides))
        width = round_channels(_log_uniform(rng, 32, 2 * 3584 / side))
        return BlockSpec(family, width, width, side, expansion=int(rng.choice([4, 8])), batch=batch,
                         variant=str(rng.choice(VARIANTS[family])))
    if family in ("maxpool", "avgpool") and rng.random() < 0.5:
        # ResNet's and VGG's stem pooling: a 3x3 window, stride 2, on 112 or 56 px maps of 64-256 channels.
        channels = round_channels(_log_uniform(rng, 64, 256))
        return BlockSpec(family, channels, channels, int(rng.choice([112, 56])), 2, 3, batch=batch)
    if family == "grouped_conv":
        # RegNet / ResNeXt: a kxk conv with 2-16 channels per group, as wide as its input.
        per_group = int(rng.choice([2, 4, 8, 16]))
        resolution = int(rng.choice(config.resolutions))
        channels = round_channels(_channels(resolution, rng, config), max(8, per_group * 4))
        stride = int(rng.choice(config.strides)) if resolution > min(config.resolutions) else 1
        return BlockSpec(family, channels, channels, resolution, stride, 3, groups=channels // per_group,
                         batch=batch, act=str(rng.choice(["relu", "relu", "silu"])))
    if family == "conv_act":
        # A conv with its bias and an in-place activation straight after it (VGG, SqueezeNet, torchvision heads).
        resolution = int(rng.choice(config.resolutions))
        c_in = _channels(resolution, rng, config)
        c_out = round_channels(c_in * math.exp(rng.uniform(math.log(0.5), math.log(2.0))))
        stride = int(rng.choice(config.strides)) if resolution > min(config.resolutions) else 1
        return BlockSpec(family, c_in, c_out, resolution, stride, int(rng.choice([1, 3])), batch=batch,
                         act=str(rng.choice(["relu", "relu", "relu6", "hswish"])))
    return None


def _batch(rng: np.random.Generator, config: ProfileConfig) -> int:
    if config.extra_batches and rng.random() < config.extra_batch_share:
        return int(rng.choice(config.extra_batches))
    return config.batch


def _random_spec(family: str, rng: np.random.Generator, config: ProfileConfig) -> BlockSpec:
    batch = _batch(rng, config)
    special = _special_spec(family, rng, config, batch)
    if special is not None:
        return special
    if family in TOKEN_BLOCK_FAMILIES:
        return _token_spec(family, rng, config, batch)
    resolution = int(rng.choice(config.resolutions))
    c_in = _channels(resolution, rng, config)
    c_out = round_channels(c_in * math.exp(rng.uniform(math.log(0.5), math.log(2.0))))
    stride = int(rng.choice(config.strides)) if resolution > min(config.resolutions) else 1
    kernel = int(rng.choice(config.kernels))
    expansion, groups = 1, 1
    act = str(rng.choice(config.activations))
    se = family in _SE_FAMILIES and rng.random() < config.se_share
    if family in ("mbconv", "ghost", "mixconv"):
        expansion = int(rng.choice(config.expansions))
        if family == "mbconv":
            groups = int(rng.choice([g for g in config.groups if g <= 2] or [1]))  # FBNet groups its 1x1s by 2
        if family == "mixconv":
            kernel = max(kernel, 5)
    elif family in ("conv_bn_relu", "bottleneck"):
        groups = int(rng.choice(config.groups)) if rng.random() < 0.4 else 1
        kernel = 1 if family == "conv_bn_relu" and rng.random() < 0.3 else kernel
    elif family in ("basic", "dense"):
        kernel = 3
    elif family in ("skip", "maxpool", "avgpool", "convnext"):
        c_out, act, se = c_in, "relu", False
        stride = 1 if family in ("skip", "convnext") else stride
        kernel = 7 if family == "convnext" else int(rng.choice([2, 3])) if family != "skip" else kernel
        expansion = 4 if family == "convnext" else 1
    if family == "dense":
        c_out, stride = c_in + int(rng.choice([16, 32, 48])), 1
    if family == "bottleneck":
        c_out = max(c_out, 4 * 8 * groups)
    if family == "conv_bn_relu" and groups == 1 and rng.random() < 0.2:
        # A network stem: RGB input at full resolution (C_in = 3 is handled unlike any padded channel count).
        c_in, stride, resolution = 3, 2, int(rng.choice([max(config.resolutions), 2 * max(config.resolutions)]))
        kernel = int(rng.choice([3, 5, 7]))
    if family == "classifier":
        c_in = round_channels(c_in * 4)
        c_out, resolution, stride, kernel = int(rng.choice([10, 100, 1000])), int(rng.choice([1, 7])), 1, 1
    if family == "linear":
        # Fully connected layers up to VGG's (25088 -> 4096): their weights stream from memory.
        c_in, c_out = round_channels(_log_uniform(rng, 256, 8192)), round_channels(_log_uniform(rng, 256, 4096))
        resolution, stride, kernel, se = 1, 1, 1, False
    if family == "conv_bn_relu" and groups > 1:
        c_in, c_out = round_channels(c_in, 8 * groups), round_channels(c_out, 8 * groups)
    if act not in ("relu", "relu6", "hswish", "silu", "gelu"):
        act = "relu"
    return BlockSpec(family, c_in, c_out, resolution, stride, kernel, expansion, groups, se, batch, act)


# Multiply-accumulates of the families beyond classification (c: c_in, o: c_out, r: resolution, k: kernel).
_BEYOND_MACS = {
    "unet_up": lambda c, o, r, k, s: (c * o + o * o * 4) * r * r * (k * k + 1),
    "sr_up": lambda c, o, r, k, s: 5 * r * r * c * c * 37,
    "aspp": lambda c, o, r, k, s: r * r * c * (12 * o + 18),
    "video": lambda c, o, r, k, s: max(2, r // 7) * r * r * o * (4 * c + 36),
    "sequence": lambda c, o, r, k, s: 8 * r * o * (c + 4 * o) + (9 * r * o * o if s.variant else 0),
    "tcn": lambda c, o, r, k, s: r * o * (2 * c + k),
    "swin": lambda c, o, r, k, s: 2 * r * r * c * (12 * c + 2 * k * k),
    "levit": lambda c, o, r, k, s: r * r * s.heads * (96 * c + 48 * r * r),
    "conv_pos": lambda c, o, r, k, s: r * r * c * 9,
}


def _work_proxy(spec: BlockSpec) -> float:
    """Roughly the block's multiply-accumulates: what log-stratification spreads the blocks over."""
    if spec.family in _BEYOND_MACS:
        return spec.batch * _BEYOND_MACS[spec.family](spec.c_in, spec.c_out, spec.resolution, spec.kernel, spec)
    if spec.family == "token_conv":
        return spec.batch * spec.resolution ** 2 * spec.c_in ** 2 * spec.expansion * 2
    if spec.family in TOKEN_INPUT_FAMILIES or spec.family == "mobilevit":
        tokens = spec.resolution ** 2
        width = max(spec.c_in, spec.c_out)
        return spec.batch * tokens * width * (width * (4 + 2 * spec.expansion) + 2 * min(tokens, 3136))
    if spec.family in ("linear", "stream_linear"):
        return spec.batch * spec.c_in * spec.c_out
    if spec.family == "grouped_conv":
        return spec.batch * spec.c_in * spec.c_out / spec.groups * spec.resolution**2 / spec.stride**2
    expansion = max(spec.expansion, 1)
    return spec.batch * spec.c_in * spec.c_out * expansion * spec.resolution**2 / spec.stride**2


def _families(config: ProfileConfig) -> dict[str, float]:
    unknown = [f for f in config.families if f not in FAMILIES]
    if unknown:
        raise InvalidInput(f"unknown block family {unknown[0]!r} in families: use some of {', '.join(FAMILIES)}")
    families = {f: w for f, w in config.families.items() if config.tokens.enabled or f not in TOKEN_BLOCK_FAMILIES}
    if sum(families.values()) <= 0:
        raise InvalidInput("families: give at least one family a positive weight")
    return families


def sample_specs(config: ProfileConfig) -> list[BlockSpec]:
    """``config.count`` distinct blocks, allocated to families by weight, log-stratified on work per family."""
    families = _families(config)
    rng = np.random.default_rng(config.seed)
    weights = np.array(list(families.values()), float)
    counts = np.floor(weights / weights.sum() * config.count).astype(int)
    for i in np.argsort(-weights)[: config.count - counts.sum()]:
        counts[i] += 1
    specs: list[BlockSpec] = []
    for family, count in zip(families, counts):
        if count == 0:
            continue
        pool = {s.key: s for s in (_random_spec(family, rng, config) for _ in range(40 * count))}
        pool = sorted(pool.values(), key=_work_proxy)
        pool = [s for s in pool if _within_cap(s, config)] or pool
        specs.extend(_stratified(pool, count, rng))
    return specs


def _within_cap(spec: BlockSpec, config: ProfileConfig) -> bool:
    """Whether a block's FLOPs stay under the cap, using the proxy (2 MACs x kernel area) as an upper bound;
    the stream families are sized by their bytes instead, and the work of explicit attention is its MACs."""
    if spec.family in STREAM_FAMILIES:
        return True
    if spec.family == "attention_heads":  # softmax and the score traffic cost more than the MACs say
        return 2 * _work_proxy(spec) / 1e6 <= config.max_mflops / 2
    if spec.family in _BEYOND_MACS:  # their proxy counts every kernel's taps already
        return 2 * _work_proxy(spec) / 1e6 <= config.max_mflops
    return 2 * _work_proxy(spec) * spec.kernel**2 / 1e6 <= config.max_mflops * 4


def _stratified(pool: Sequence, count: int, rng: np.random.Generator) -> list:
    """``count`` members of ``pool`` (sorted by work) spread over equal steps of log work."""
    strata = np.linspace(math.log(_work_of(pool[0])), math.log(_work_of(pool[-1])), count + 1)
    chosen: dict[str, object] = {}
    for low, high in zip(strata[:-1], strata[1:]):
        members = [s for s in pool if low <= math.log(_work_of(s)) <= high and s.key not in chosen]
        if members:
            pick = members[rng.integers(len(members))]
            chosen[pick.key] = pick
    leftovers = [s for s in pool if s.key not in chosen]
    while len(chosen) < count and leftovers:
        pick = leftovers.pop(rng.integers(len(leftovers)))
        chosen[pick.key] = pick
    return list(chosen.values())


def _work_of(spec) -> float:
    return sum(map(_work_proxy, spec.blocks)) if isinstance(spec, ChainSpec) else _work_proxy(spec)


def _random_chain(rng: np.random.Generator, config: ProfileConfig) -> ChainSpec:
    """A stage of a network: 2-4 blocks of one family (sometimes mixed), the first one may downsample."""
    low, high = config.chains.lengths
    length = int(rng.integers(low, high + 1))
    kinds = ["cnn"] * 3 + (["tokens"] if config.tokens.enabled else [])
    batch = _batch(rng, config)
    if str(rng.choice(kinds)) == "tokens":
        first = _token_spec("attention", rng, config, batch)
        encoder = [first, BlockSpec("mlp", first.c_in, first.c_in, first.resolution,
                                    expansion=int(rng.choice(config.tokens.mlp_ratios)), batch=first.batch)]
        if rng.random() < 0.3:
            first = BlockSpec("attention_explicit", first.c_in, first.c_in, first.resolution, heads=first.heads,
                              batch=first.batch)
            encoder[0] = first
        return ChainSpec(tuple((encoder * length)[:max(length, 2)]))
    family = str(rng.choice(config.chains.families))
    resolution = int(rng.choice([r for r in config.resolutions if r > 1]))
    width = _channels(resolution, rng, config)
    act = str(rng.choice(config.activations))
    blocks, c_in = [], width
    for index in range(length):
        block_family = family if family != "mixed" else str(rng.choice(["mbconv", "basic", "dw_separable", "ghost"]))
        stride = 2 if index == 0 and resolution > min(config.resolutions) and rng.random() < 0.5 else 1
        c_out = round_channels(c_in * 1.5) if stride == 2 else c_in
        spec = _random_spec(block_family, rng, config)
        expansion, kernel = spec.expansion, spec.kernel
        if block_family == "bottleneck":
            c_out = max(c_out, 4 * 8 * spec.groups)
        if block_family == "shuffle":
            c_in, c_out = round_channels(c_in, 16), round_channels(c_out, 16) if stride == 2 else round_channels(c_in, 16)
        if block_family == "dense":
            c_out, stride = c_in + 32, 1
        if block_family == "convnext":
            c_out, stride = c_in, 1
        blocks.append(BlockSpec(block_family, c_in, c_out, resolution, stride, kernel, expansion, spec.groups, spec.se,
                                batch, act if block_family != "shuffle" else "relu"))
        c_in, resolution = c_out, resolution // stride
    return ChainSpec(tuple(blocks))


def sample_chains(config: ProfileConfig) -> list[ChainSpec]:
    """``config.chains.count`` distinct chains, log-stratified on their total work."""
    if config.chains.count <= 0:
        return []
    rng = np.random.default_rng(config.seed + 1)
    pool = {c.key: c for c in (_random_chain(rng, config) for _ in range(20 * config.chains.count))}
    capped = [c for c in pool.values() if 2 * _work_of(c) * 9 / 1e6 <= config.max_mflops * 8] or list(pool.values())
    return _stratified(sorted(capped, key=_work_of), config.chains.count, rng)


def suite_specs(config: ProfileConfig) -> list[BlockSpec | ChainSpec]:
    """Everything a profile of ``config`` measures: its blocks, then its chains."""
    return [*sample_specs(config), *sample_chains(config)]
