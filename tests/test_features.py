"""extract_features: every conv / linear variant against its hand-computed formula, functional ops,
views, batch scaling, additivity, the uncovered-operator warning and bad input shapes."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nni_latency.count.features import BLOCK_FEATURE_NAMES, BlockFeatures, UncoveredOperatorWarning
from nni_latency.count.inputs import make_inputs
from nni_latency.runtimes.torch.counting import extract_features
from nni_latency.runtimes.torch.operators import FEATURE_NAMES
from nni_latency.suite.blocks import FAMILIES, VARIANTS, BlockSpec

KIND_FIELDS = ("flops_dense", "flops_pointwise", "flops_grouped", "flops_depthwise")


def _conv_case(module, shape, out_shape, macs_per_output, kind, weights):
    """Expected features of one convolution from its output shape: FLOPs = 2 * out * C_in/g * prod(k)."""
    acts = math.prod(out_shape)
    flops = 2.0 * acts * macs_per_output
    expected = {"acts": acts, "inp": math.prod(shape), "flops": flops, kind: flops, "weights": weights,
                "conv_ops": 1}
    return module, shape, expected


def _transposed_case(module, shape, out_shape, c_out_per_group, kernel, weights):
    """Transposed conv: FLOPs = 2 * input elements * C_out/groups * prod(kernel)."""
    flops = 2.0 * math.prod(shape) * c_out_per_group * kernel
    expected = {"acts": math.prod(out_shape), "inp": math.prod(shape), "flops": flops, "flops_dense": flops,
                "weights": weights, "conv_ops": 1}
    return module, shape, expected


# (module, input shape, expected non-zero features); every other numeric feature must be 0.
CONV_CASES = {
    "conv1d_k3": _conv_case(nn.Conv1d(4, 6, 3), (1, 4, 10), (1, 6, 8), 4 * 3, "flops_dense", 6 * 4 * 3),
    "conv1d_stride2_pad1": _conv_case(nn.Conv1d(4, 6, 3, stride=2, padding=1), (1, 4, 10), (1, 6, 5), 4 * 3,
                                      "flops_dense", 6 * 4 * 3),
    "conv2d_k3_pad1": _conv_case(nn.Conv2d(8, 16, 3, padding=1), (1, 8, 10, 10), (1, 16, 10, 10), 8 * 9,
                                 "flops_dense", 16 * 8 * 9),
    "conv2d_k5_no_bias": _conv_case(nn.Conv2d(3, 4, 5, bias=False), (1, 3, 9, 9), (1, 4, 5, 5), 3 * 25,
                                    "flops_dense", 4 * 3 * 25),
    "conv2d_stride2": _conv_case(nn.Conv2d(8, 16, 3, stride=2, padding=1), (1, 8, 10, 10), (1, 16, 5, 5), 8 * 9,
                                 "flops_dense", 16 * 8 * 9),
    "conv2d_dilation2": _conv_case(nn.Conv2d(8, 8, 3, padding=2, dilation=2), (1, 8, 9, 9), (1, 8, 9, 9), 8 * 9,
                                   "flops_dense", 8 * 8 * 9),
    "conv2d_dilation2_no_pad": _conv_case(nn.Conv2d(8, 8, 3, dilation=2), (1, 8, 9, 9), (1, 8, 5, 5), 8 * 9,
                                          "flops_dense", 8 * 8 * 9),
    "conv2d_rect_kernel": _conv_case(nn.Conv2d(4, 4, (1, 3), padding=(0, 1)), (1, 4, 6, 6), (1, 4, 6, 6), 4 * 3,
                                     "flops_dense", 4 * 4 * 3),
    "conv3d_k3": _conv_case(nn.Conv3d(2, 4, 3, padding=1), (1, 2, 4, 5, 6), (1, 4, 4, 5, 6), 2 * 27,
                            "flops_dense", 4 * 2 * 27),
    "conv3d_stride2": _conv_case(nn.Conv3d(2, 4, 3, stride=2, padding=1), (1, 2, 4, 6, 6), (1, 4, 2, 3, 3), 2 * 27,
                                 "flops_dense", 4 * 2 * 27),
    "pointwise_1x1": _conv_case(nn.Conv2d(8, 16, 1), (1, 8, 7, 7), (1, 16, 7, 7), 8, "flops_pointwise", 16 * 8),
    "pointwise_1x1_stride2": _conv_case(nn.Conv2d(8, 16, 1, stride=2), (1, 8, 8, 8), (1, 16, 4, 4), 8,
                                        "flops_pointwise", 16 * 8),
    "grouped_g2_k3": _conv_case(nn.Conv2d(8, 16, 3, padding=1, groups=2), (1, 8, 6, 6), (1, 16, 6, 6), 4 * 9,
                                "flops_grouped", 16 * 4 * 9),
    "grouped_g4_1x1": _conv_case(nn.Conv2d(8, 8, 1, groups=4), (1, 8, 6, 6), (1, 8, 6, 6), 2, "flops_grouped",
                                 8 * 2),
    "depthwise_k3": _conv_case(nn.Conv2d(8, 8, 3, padding=1, groups=8), (1, 8, 6, 6), (1, 8, 6, 6), 9,
                               "flops_depthwise", 8 * 9),
    "depthwise_k5_stride2": _conv_case(nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=8), (1, 8, 8, 8),
                                       (1, 8, 4, 4), 25, "flops_depthwise", 8 * 25),
    "depthwise_multiplier2": _conv_case(nn.Conv2d(8, 16, 3, padding=1, groups=8), (1, 8, 6, 6), (1, 16, 6, 6), 9,
                                        "flops_depthwise", 16 * 9),
    "depthwise_conv1d": _conv_case(nn.Conv1d(6, 6, 3, padding=1, groups=6), (1, 6, 10), (1, 6, 10), 3,
                                   "flops_depthwise", 6 * 3),
    "conv_transpose1d": _transposed_case(nn.ConvTranspose1d(4, 6, 3, stride=2), (1, 4, 5), (1, 6, 11), 6, 3,
                                         4 * 6 * 3),
    "conv_transpose2d": _transposed_case(nn.ConvTranspose2d(8, 16, 3, stride=2), (1, 8, 5, 5), (1, 16, 11, 11),
                                         16, 9, 8 * 16 * 9),
    "conv_transpose2d_pad_k4": _transposed_case(nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1), (1, 4, 3, 3),
                                                (1, 2, 6, 6), 2, 16, 4 * 2 * 16),
    "linear_2d": (nn.Linear(10, 20), (4, 10), {"acts": 80, "inp": 40, "flops": 2.0 * 4 * 10 * 20,
                                                "flops_pointwise": 2.0 * 4 * 10 * 20, "weights": 200, "conv_ops": 1}),
    "linear_3d_batched": (nn.Linear(10, 20), (2, 3, 10), {"acts": 120, "inp": 60, "flops": 2.0 * 6 * 10 * 20,
                                                          "flops_pointwise": 2.0 * 6 * 10 * 20, "weights": 200,
                                                          "conv_ops": 1}),
    "linear_3d_no_bias": (nn.Linear(10, 20, bias=False), (2, 3, 10),
                          {"acts": 120, "inp": 60, "flops": 2.0 * 6 * 10 * 20, "flops_pointwise": 2.0 * 6 * 10 * 20,
                           "weights": 200, "conv_ops": 1}),
}


# The features every model kind builds on; other fields (per-kind counts, vector-padded FLOPs) are
# checked against these by the consistency tests below.
CORE_FIELDS = ("acts", "inp", "flops", *KIND_FIELDS, "weights", "mem_elements", "conv_ops", "mem_ops")


def _kind_of(module: nn.Module, expected: dict) -> str:
    if isinstance(module, nn.Linear):
        return "matmul"
    (kind,) = [name for name in KIND_FIELDS if expected.get(name)]
    return kind.removeprefix("flops_")


def _count_field(kind: str) -> str:
    return "matmuls" if kind == "matmul" else f"convs_{kind}"


@pytest.mark.parametrize("module,shape,expected", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv_and_linear_features_match_formula(module, shape, expected):
    torch.manual_seed(0)
    features = extract_features(module, shape)
    assert {name: getattr(features, name) for name in CORE_FIELDS} == {
        name: float(expected.get(name, 0.0)) for name in CORE_FIELDS}


@pytest.mark.parametrize("module,shape,expected", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_per_kind_counts_and_vector_flops_follow_the_kind(module, shape, expected):
    # Convolutions and matrix multiplies each have their own op count, padded FLOPs and weight feature.
    features = extract_features(module, shape).as_dict()
    kind = _kind_of(module, expected)
    counts = {name: value for name, value in features.items() if name.startswith("convs_") or name == "matmuls"}
    vector = {name: value for name, value in features.items() if name.startswith("vflops_")}
    assert counts == {name: float(name == _count_field(kind)) for name in counts}
    assert sum(counts.values()) == features["conv_ops"]
    assert vector[f"vflops_{kind}"] >= features["flops"] > 0
    assert all(value == 0 for name, value in vector.items() if name != f"vflops_{kind}")
    split = "matmul_weights" if kind == "matmul" else "conv_weights"
    assert features[split] == features["weights"]
    assert features["conv_weights"] + features["matmul_weights"] == features["weights"]


# Vector-padded FLOPs: channels rounded up to a multiple of 16 (the default width: fp32 on AVX-512).
VECTOR_CASES = {
    "dense_24ch_pads_to_32": (nn.Conv2d(24, 24, 3, padding=1), (1, 24, 5, 5), "vflops_dense", 2.0 * 25 * 32 * 32 * 9),
    "dense_16ch_unpadded": (nn.Conv2d(16, 32, 3, padding=1), (1, 16, 5, 5), "vflops_dense", 2.0 * 25 * 16 * 32 * 9),
    "pointwise_8_to_40": (nn.Conv2d(8, 40, 1), (1, 8, 4, 4), "vflops_pointwise", 2.0 * 16 * 16 * 48),
    "grouped_g2_24ch": (nn.Conv2d(24, 24, 3, padding=1, groups=2), (1, 24, 4, 4), "vflops_grouped",
                        2.0 * 16 * 2 * 16 * 16 * 9),
    "depthwise_24ch": (nn.Conv2d(24, 24, 3, padding=1, groups=24), (1, 24, 4, 4), "vflops_depthwise",
                       2.0 * 16 * 32 * 9),
    "linear_10_to_20": (nn.Linear(10, 20), (4, 10), "vflops_matmul", 2.0 * 4 * 16 * 32),
    "linear_3d_32_to_16": (nn.Linear(32, 16), (2, 3, 32), "vflops_matmul", 2.0 * 6 * 32 * 16),
}


@pytest.mark.parametrize("module,shape,name,expected", VECTOR_CASES.values(), ids=VECTOR_CASES.keys())
def test_vector_padded_flops(module, shape, name, expected):
    assert getattr(extract_features(module, shape), name) == expected


# The same kernels on a device with another vector width (vector_width=8: AVX2 or CUDA; 4: NEON).
OTHER_WIDTH_CASES = {
    "dense_24ch_width8": (nn.Conv2d(24, 24, 3, padding=1), (1, 24, 5, 5), 8, "vflops_dense", 2.0 * 25 * 24 * 24 * 9),
    "dense_20ch_width8": (nn.Conv2d(20, 20, 3, padding=1), (1, 20, 5, 5), 8, "vflops_dense", 2.0 * 25 * 24 * 24 * 9),
    "pointwise_8_to_40_width4": (nn.Conv2d(8, 40, 1), (1, 8, 4, 4), 4, "vflops_pointwise", 2.0 * 16 * 8 * 40),
    "linear_10_to_20_width8": (nn.Linear(10, 20), (4, 10), 8, "vflops_matmul", 2.0 * 4 * 16 * 24),
}


@pytest.mark.parametrize("module,shape,width,name,expected", OTHER_WIDTH_CASES.values(), ids=OTHER_WIDTH_CASES.keys())
def test_vector_padded_flops_at_the_devices_width(module, shape, width, name, expected):
    features = extract_features(module, shape, width)
    assert getattr(features, name) == expected
    unpadded = {k: v for k, v in features.as_dict().items() if "vflops" not in k}
    assert unpadded == {k: v for k, v in extract_features(module, shape).as_dict().items() if "vflops" not in k}


@pytest.mark.parametrize("batch", [2, 5])
@pytest.mark.parametrize("module,shape,expected", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_batch_scales_activation_counts_linearly(module, shape, expected, batch):
    single = extract_features(module, shape)
    batched = extract_features(module, (batch * shape[0], *shape[1:]))
    for name in BLOCK_FEATURE_NAMES:
        if name in PATH_FEATURES:
            continue  # ATen may pick another convolution kernel for another batch (test_conv_paths)
        # Weights are read, and ops called, once per forward pass whatever the batch; the rest scales.
        once_per_pass = (name.endswith("weights") or name in ("conv_ops", "mem_ops", "matmuls")
                         or name.startswith("convs_"))
        factor = 1 if once_per_pass else batch
        assert getattr(batched, name) == factor * getattr(single, name), name


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)

    def forward(self, x):
        return x + self.conv(x)


class _SqueezeMultiply(nn.Module):
    def forward(self, x):
        return x * x.mean((2, 3), keepdim=True)


class _ViewsOnly(nn.Module):
    def forward(self, x):
        n, c, h, w = x.shape
        y = x.view(n, 2, c // 2, h, w).transpose(1, 2).permute(0, 1, 2, 4, 3).unsqueeze(0).squeeze(0)
        return y.narrow(3, 0, 2).chunk(2, dim=1)[0].expand(n, 2, 2, 2, h)


class _ChannelShuffle(nn.Module):
    def forward(self, x):
        n, c, h, w = x.shape  # the reshape of a transposed view is a real copy
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


N, C, H, W = 2, 8, 4, 4
ELEMS = N * C * H * W
# (module, input shape, expected mem_elements, expected mem_ops, expected conv features or {})
FUNCTIONAL_CASES = {
    "relu": (nn.ReLU(), 2 * ELEMS, 1),
    "relu_inplace": (nn.ReLU(inplace=True), 2 * ELEMS, 1),
    "batchnorm_eval": (nn.BatchNorm2d(C), 2 * ELEMS + 4 * C, 1),  # x, y, and weight/bias/mean/var
    "residual_add": (_Residual(), 3 * ELEMS, 1),  # add reads x and conv(x), writes the sum
    "se_multiply": (_SqueezeMultiply(), (ELEMS + N * C) + (ELEMS + N * C + ELEMS), 2),  # mean, then x * scale
    "views_are_free": (_ViewsOnly(), 0, 0),
    "channel_shuffle_copy": (_ChannelShuffle(), 2 * ELEMS, 1),
    "flatten_contiguous_free": (nn.Flatten(), 0, 0),
    "identity_free": (nn.Identity(), 0, 0),
}


# Windowed pooling: work = output elements x window size; adaptive pooling is a plain reduction.
POOL_CASES = {
    "maxpool2d_k2": (nn.MaxPool2d(2), (2, 8, 4, 4), "maxpool_work", 2 * 8 * 2 * 2 * 4),
    "maxpool2d_rect_stride1": (nn.MaxPool2d((2, 3), stride=1), (1, 4, 6, 6), "maxpool_work", 4 * 5 * 4 * 6),
    "maxpool1d_k3": (nn.MaxPool1d(3), (1, 4, 9), "maxpool_work", 4 * 3 * 3),
    "avgpool2d_k3_s2_p1": (nn.AvgPool2d(3, stride=2, padding=1), (1, 4, 8, 8), "avgpool_work", 4 * 4 * 4 * 9),
    "avgpool3d_k2": (nn.AvgPool3d(2), (1, 2, 4, 4, 4), "avgpool_work", 2 * 8 * 8),
    "adaptive_avgpool": (nn.AdaptiveAvgPool2d(1), (1, 4, 4, 4), None, 0),
}


@pytest.mark.parametrize("module,shape,name,work", POOL_CASES.values(), ids=POOL_CASES.keys())
def test_pooling_window_work(module, shape, name, work):
    features = extract_features(module, shape)
    pool_fields = {field: getattr(features, field) for field in ("maxpool_work", "avgpool_work")}
    assert pool_fields == {field: float(work if field == name else 0) for field in pool_fields}
    assert features.mem_ops == 1 and features.mem_elements >= math.prod(shape)  # still a memory op
    assert features.conv_ops == 0 and features.uncovered == ()


@pytest.mark.parametrize("module,mem_elements,mem_ops", FUNCTIONAL_CASES.values(), ids=FUNCTIONAL_CASES.keys())
def test_functional_and_memory_ops(module, mem_elements, mem_ops):
    features = extract_features(module, (N, C, H, W))
    assert features.mem_elements == mem_elements
    assert features.mem_ops == mem_ops
    assert features.uncovered == ()


def test_views_only_module_records_no_op_at_all():
    features = extract_features(_ViewsOnly(), (N, C, H, W))
    assert features.op_counts == {} and features.ops == ()
    # only what dispatching them costs: the metadata-only calls and the module's own call
    assert features["overhead.free_ops"] > 0 and features["overhead.modules"] == 1
    assert all(value == 0 for name, value in features.as_dict().items() if not name.startswith("overhead."))


def _rnn_counted(layer: nn.RNNBase, x: torch.Tensor, totals: dict[str, float]) -> None:
    """A recurrent layer as its matrix multiplies: per layer and direction, the input's [T*B, I] x [I, G*H], then one
    [B, H] x [H, G*H] per step (G gates: 4 for an LSTM, 3 for a GRU), the recurrent weights read at each step."""
    steps, batch = (x.shape[1], x.shape[0]) if layer.batch_first else (x.shape[0], x.shape[1])
    rows, hidden, directions = layer.weight_ih_l0.shape[0], layer.hidden_size, 2 if layer.bidirectional else 1
    for index in range(layer.num_layers * directions):
        inputs = layer.input_size if index < directions else hidden * directions
        totals["acts"] += 2 * steps * batch * rows
        totals["inp"] += steps * batch * (inputs + hidden)
        totals["flops"] += 2.0 * steps * batch * rows * (inputs + hidden)
        totals["weights"] += rows * inputs + steps * rows * hidden
        totals["conv_ops"] += 1 + steps


def _hand_counted(module: nn.Module, shape) -> dict[str, float]:
    """acts / inp / flops / weights / conv_ops of every conv, linear and recurrent layer, from forward hooks and the
    formula."""
    totals = {"acts": 0.0, "inp": 0.0, "flops": 0.0, "weights": 0.0, "conv_ops": 0.0}

    def hook(layer, inputs, output):
        (x,) = inputs
        if isinstance(layer, nn.RNNBase):
            _rnn_counted(layer, x, totals)
            return
        if isinstance(layer, nn.Linear):
            macs = output.numel() * layer.in_features
        elif layer.transposed:
            macs = x.numel() * layer.out_channels // layer.groups * math.prod(layer.kernel_size)
        else:
            macs = output.numel() * layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        totals["acts"] += output.numel()
        totals["inp"] += x.numel()
        totals["flops"] += 2.0 * macs
        totals["weights"] += layer.weight.numel()
        totals["conv_ops"] += 1

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase))]
    with torch.no_grad():
        module.eval()(*make_inputs(shape))
    for handle in handles:
        handle.remove()
    return totals


FAMILY_SPECS = {
    "mbconv_e6_se": BlockSpec("mbconv", 16, 16, 14, kernel=5, expansion=6, se=True),
    "mbconv_e3_g2_s2": BlockSpec("mbconv", 16, 24, 14, stride=2, expansion=3, groups=2),
    "conv_bn_relu": BlockSpec("conv_bn_relu", 8, 16, 14),
    "conv_bn_relu_1x1": BlockSpec("conv_bn_relu", 8, 16, 14, kernel=1),
    "dw_separable": BlockSpec("dw_separable", 16, 32, 14, kernel=3),
    "basic_s2": BlockSpec("basic", 16, 32, 14, stride=2),
    "basic_grouped_se": BlockSpec("basic", 16, 16, 14, groups=2, se=True),
    "bottleneck": BlockSpec("bottleneck", 16, 64, 14),
    "bottleneck_grouped": BlockSpec("bottleneck", 32, 64, 14, groups=2),
    "shuffle_s1": BlockSpec("shuffle", 16, 16, 14),
    "shuffle_s2": BlockSpec("shuffle", 16, 32, 14, stride=2),
    "skip_identity": BlockSpec("skip", 16, 16, 14),
    "skip_projection": BlockSpec("skip", 16, 32, 14, stride=2),
}
# The families real networks added (transformer ones take a 14x14 grid of 32-wide tokens).
FAMILY_SPECS |= {
    "ghost_s2_se": BlockSpec("ghost", 16, 24, 14, kernel=5, stride=2, expansion=3, se=True),
    "mixconv": BlockSpec("mixconv", 16, 16, 14, kernel=7, expansion=3, act="silu"),
    "dense": BlockSpec("dense", 16, 48, 14),
    "linear": BlockSpec("linear", 64, 32, 1),
    "convnext": BlockSpec("convnext", 16, 16, 14, kernel=7, expansion=4),
    "patch_embed": BlockSpec("patch_embed", 3, 32, 56, stride=4, kernel=4),
    "mlp": BlockSpec("mlp", 32, 32, 14, expansion=4),
    "attention": BlockSpec("attention", 32, 32, 14, heads=2),
    "attention_explicit": BlockSpec("attention_explicit", 32, 32, 7, heads=2),
    "window_attention": BlockSpec("window_attention", 32, 32, 14, kernel=7, heads=2),
    "mobilevit": BlockSpec("mobilevit", 16, 32, 8, expansion=2, heads=2),
    "stream_head": BlockSpec("stream_head", 16, 16, 7, kernel=7),
    "attention_heads": BlockSpec("attention_heads", 16, 16, 7, heads=2),
}
# Issue 28's families beyond classification (token ones on a 7 or 14 grid; sequences of 6 steps).
FAMILY_SPECS |= {
    "unet_up_k4": BlockSpec("unet_up", 32, 16, 7, kernel=4),
    "unet_up_k3": BlockSpec("unet_up", 32, 16, 7, kernel=3),
    "sr_up": BlockSpec("sr_up", 16, 16, 8),
    "aspp": BlockSpec("aspp", 32, 16, 14),
    "video": BlockSpec("video", 16, 32, 14),
    "tcn_d8": BlockSpec("tcn", 16, 32, 50, variant="d8"),
    "tcn": BlockSpec("tcn", 16, 32, 50),
    "sequence_lstm": BlockSpec("sequence", 16, 24, 6),
    "sequence_gru": BlockSpec("sequence", 16, 24, 6, variant="gru"),
    "swin": BlockSpec("swin", 64, 64, 14, kernel=7, expansion=4, heads=2),
    "levit": BlockSpec("levit", 32, 32, 7, heads=2),
    "conv_pos": BlockSpec("conv_pos", 16, 16, 7),
}
# Families added later are covered with a default spec.
FAMILY_SPECS |= {family: BlockSpec(family, 16, 16, 14, variant=VARIANTS.get(family, ("",))[0]) for family in FAMILIES
                 if family not in {spec.family for spec in FAMILY_SPECS.values()}}
# Attention multiplies activations by activations: FLOPs no layer hook sees (test_attention_blocks).
ATTENTION_SPECS = {"attention", "attention_explicit", "window_attention", "mobilevit", "attention_heads", "swin",
                   "levit"}


@pytest.mark.parametrize("spec", [s for k, s in FAMILY_SPECS.items() if k not in ATTENTION_SPECS],
                         ids=[k for k in FAMILY_SPECS if k not in ATTENTION_SPECS])
def test_block_conv_features_are_sums_over_its_convs(spec):
    torch.manual_seed(0)
    block = spec.build()
    features = extract_features(block, spec.input_shape)
    expected = _hand_counted(block, spec.input_shape)
    assert {name: getattr(features, name) for name in expected} == expected
    assert features.flops == sum(getattr(features, name) for name in KIND_FIELDS)
    per_kind_counts = sum(v for k, v in features.as_dict().items() if k.startswith("convs_"))
    assert features.conv_ops == per_kind_counts + features.matmuls
    assert features.uncovered == ()


def test_per_kind_split_of_an_mbconv():
    # 1x1 expand (pointwise), kxk depthwise, 1x1 project (pointwise): no dense or grouped FLOPs.
    spec = BlockSpec("mbconv", 16, 16, 8, kernel=3, expansion=4)
    features = extract_features(spec.build(), spec.input_shape)
    hidden, pixels = 16 * 4, 8 * 8
    assert features.flops_pointwise == 2.0 * pixels * (16 * hidden + hidden * 16)
    assert features.flops_depthwise == 2.0 * pixels * hidden * 9
    assert features.flops_dense == features.flops_grouped == 0
    assert features.conv_ops == 3
    assert features.mem_ops == 3 + 2 + 1  # three batch norms, two activations, the residual add


def test_nested_block_at_depth_three_counts_every_layer():
    inner = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    net = nn.Sequential(nn.Sequential(nn.Sequential(inner, nn.Conv2d(8, 8, 1)), nn.Conv2d(8, 8, 3, groups=8)))
    features = extract_features(net, (1, 4, 6, 6))
    pixels = 36
    assert features.flops_dense == 2.0 * pixels * 8 * 4 * 9
    assert features.flops_pointwise == 2.0 * pixels * 8 * 8
    assert features.flops_depthwise == 2.0 * 16 * 8 * 9  # valid 3x3 conv: 4x4 output
    assert features.conv_ops == 3
    assert features.mem_ops == 2  # batch norm and relu
    assert features.mem_elements == (2 * pixels * 8 + 4 * 8) + 2 * pixels * 8


@pytest.mark.parametrize("spec", [FAMILY_SPECS["mbconv_e6_se"], FAMILY_SPECS["bottleneck_grouped"],
                                  FAMILY_SPECS["shuffle_s2"]], ids=["mbconv", "bottleneck", "shuffle"])
def test_memory_traffic_is_affine_in_batch(spec):
    # Activations scale with the batch; BN parameters are read once, so mem_elements is affine in N.
    block = spec.build()
    one, two, four = (extract_features(block, (n, *spec.input_shape[1:])) for n in (1, 2, 4))
    assert four.mem_elements - one.mem_elements == 3 * (two.mem_elements - one.mem_elements)
    assert two.mem_elements > one.mem_elements
    assert four.flops == 4 * one.flops and four.acts == 4 * one.acts


ADDITIVE_PAIRS = {
    "mbconv_then_basic": (BlockSpec("mbconv", 16, 24, 14, stride=2, expansion=3),
                          BlockSpec("basic", 24, 24, 7)),
    "conv_then_shuffle": (BlockSpec("conv_bn_relu", 8, 16, 14), BlockSpec("shuffle", 16, 16, 14)),
    "bottleneck_then_dw": (BlockSpec("bottleneck", 16, 64, 14, groups=2), BlockSpec("dw_separable", 64, 32, 14)),
}


@pytest.mark.parametrize("first,second", ADDITIVE_PAIRS.values(), ids=ADDITIVE_PAIRS.keys())
def test_features_of_a_sequence_are_the_sum_of_its_blocks(first, second):
    a, b = first.build(), second.build()
    combined = extract_features(nn.Sequential(a, b), first.input_shape)
    summed = extract_features(a, first.input_shape) + extract_features(b, second.input_shape)
    # every numeric feature adds up, but for the one module call the Sequential itself makes
    assert combined["overhead.modules"] == summed["overhead.modules"] + 1
    assert {k: v for k, v in combined.as_dict().items() if k != "overhead.modules"} == \
        {k: v for k, v in summed.as_dict().items() if k != "overhead.modules"}


def test_adding_features_merges_op_counts():
    a = extract_features(nn.Conv2d(4, 4, 1), (1, 4, 3, 3))
    b = extract_features(nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU()), (1, 4, 3, 3))
    assert (a + b).op_counts == {"convolution": 2, "relu": 1}
    assert (a + b).conv_ops == 2 and (a + b).mem_ops == 1


class _Uncovered(nn.Module):
    """Two operators no formula covers: a Bessel function (6 elements in, 6 out) and a running maximum (6 in; 6
    values and 6 indices out)."""

    def forward(self, x):
        return torch.special.bessel_j0(x) + torch.cummax(x, dim=-1)[0]


def test_uncovered_operators_are_named_in_one_warning_once_per_context():
    # Once per warnings context (each command runs in one): the same pass again, or another shape, says nothing new.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = extract_features(_Uncovered(), (2, 3))
        second = extract_features(_Uncovered(), (2, 3))
        extract_features(_Uncovered(), (4, 3))
    uncovered = [str(w.message) for w in caught if issubclass(w.category, UncoveredOperatorWarning)]
    assert len(uncovered) == 1 and "\n" not in uncovered[0]
    assert "aten.cummax (1 call, 18 elements, in module '<root> (_Uncovered)')" in uncovered[0]
    assert "aten.special_bessel_j0 (1 call, 12 elements, in module '<root> (_Uncovered)')" in uncovered[0]
    assert first.uncovered == second.uncovered == ("aten.cummax", "aten.special_bessel_j0")
    assert first.mem_ops > 0 and first.mem_elements > 0  # still counted, as memory-bound
    with warnings.catch_warnings(record=True) as caught:  # a new context (the next command) hears of them again
        warnings.simplefilter("always")
        extract_features(_Uncovered(), (2, 3))
    assert len([w for w in caught if issubclass(w.category, UncoveredOperatorWarning)]) == 1


@pytest.mark.parametrize("module,shape", [(nn.LSTM(4, 8, 2), (3, 1, 4)), (nn.GRU(4, 8), (3, 1, 4)),
                                          (nn.InstanceNorm2d(4, affine=True), (1, 4, 5, 5)),
                                          (nn.Upsample(scale_factor=2, mode="trilinear"), (1, 2, 3, 4, 4))],
                         ids=["lstm", "gru", "instance_norm", "trilinear"])
def test_operators_beyond_classification_are_covered(module, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncoveredOperatorWarning)
        assert extract_features(module, shape).uncovered == ()


def test_covered_operators_do_not_warn():
    spec = FAMILY_SPECS["mbconv_e6_se"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncoveredOperatorWarning)
        extract_features(spec.build(), spec.input_shape)


BAD_SHAPES = {
    "wrong_channels": (nn.Conv2d(8, 16, 3), (1, 3, 10, 10), ["1,3,10,10", "C=8"]),
    "wrong_rank": (nn.Conv2d(8, 16, 3), (1, 8, 10, 10, 10), ["1,8,10,10,10", "4-d", "C=8"]),
    "block_wrong_channels": (BlockSpec("mbconv", 16, 16, 14).build(), (1, 32, 14, 14), ["1,32,14,14", "C=16"]),
}


@pytest.mark.parametrize("module,shape,fragments", BAD_SHAPES.values(), ids=BAD_SHAPES.keys())
def test_bad_input_shape_is_a_one_line_value_error(module, shape, fragments):
    with pytest.raises(ValueError) as raised:
        extract_features(module, shape)
    message = str(raised.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("shape", [
    (1, 0, 4, 4), (1, -3, 4, 4), (), (1, 2.5, 4, 4),
], ids=["zero", "negative", "empty", "float"])
def test_invalid_shapes_rejected_before_running(shape):
    with pytest.raises(ValueError, match="input shape"):
        extract_features(nn.Conv2d(3, 3, 1), shape)


@pytest.mark.parametrize("shape", [
    torch.Size([1, 3, 4, 4]), tuple(np.array([1, 3, 4, 4])),
], ids=["torch_size", "numpy_ints"])
def test_integer_like_shapes_are_accepted(shape):
    assert extract_features(nn.Conv2d(3, 3, 1), shape).flops == 2.0 * 16 * 3 * 3


def test_make_inputs_is_seeded_and_accepts_several_shapes():
    first = make_inputs([(1, 2, 3), (2, 4)])
    second = make_inputs([(1, 2, 3), (2, 4)])
    assert [tuple(t.shape) for t in first] == [(1, 2, 3), (2, 4)]
    assert all(torch.equal(x, y) for x, y in zip(first, second))


def test_training_mode_is_restored_and_counting_uses_eval():
    block = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    block.train()
    before = block[1].running_mean.clone()
    features = extract_features(block, (2, 4, 6, 6))
    assert block.training and block[1].training
    assert torch.equal(block[1].running_mean, before)  # eval mode: running stats untouched
    assert "native_dropout" not in features.op_counts and "dropout" not in features.op_counts


def test_a_counted_row_holds_every_feature_and_a_hand_made_one_only_its_own():
    assert BlockFeatures(flops=2.0).as_dict() == {"flops": 2.0}
    assert BlockFeatures(flops=2.0).as_dict(FEATURE_NAMES) == {**dict.fromkeys(FEATURE_NAMES, 0.0), "flops": 2.0}
    assert extract_features(nn.ReLU(), (1, 4)).as_dict().keys() == set(FEATURE_NAMES)  # a counted row: all of them


# ---- convolution paths, attention and memory classes

PATH_FEATURES = {name for name in FEATURE_NAMES if name.startswith(("dnn_", "gemm_")) or name == "im2col_elements"}

# module, input shape, threads -> the path ATen takes and the path features it gives
PATH_CASES = {
    "pointwise_batch1_one_thread_is_gemm": (nn.Conv2d(64, 32, 1, bias=False), (1, 64, 28, 28), 1,
                                            {"gemm_flops": 2.0 * 784 * 64 * 32, "gemm_convs": 1, "im2col_elements": 0}),
    "pointwise_two_threads_is_onednn": (nn.Conv2d(64, 32, 1, bias=False), (1, 64, 28, 28), 2,
                                        {"dnn_vflops_pointwise": 2.0 * 784 * 64 * 32, "dnn_convs_pointwise": 1}),
    "pointwise_batch16_is_onednn": (nn.Conv2d(64, 32, 1, bias=False), (16, 64, 2, 2), 1,
                                    {"dnn_vflops_pointwise": 2.0 * 64 * 64 * 32, "dnn_convs_pointwise": 1}),
    "small_3x3_unfolds": (nn.Conv2d(8, 16, 3, padding=1, bias=False), (1, 8, 14, 14), 1,
                          {"gemm_flops": 2.0 * 196 * 8 * 16 * 9, "gemm_convs": 1, "im2col_elements": 196 * 8 * 9}),
    "large_3x3_is_onednn": (nn.Conv2d(16, 16, 3, padding=1, bias=False), (1, 16, 56, 56), 1,
                            {"dnn_vflops_dense": 2.0 * 3136 * 16 * 16 * 9, "dnn_convs_dense": 1}),
    "depthwise_is_onednn": (nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), (1, 32, 7, 7), 1,
                            {"dnn_vflops_depthwise": 2.0 * 49 * 32 * 9, "dnn_convs_depthwise": 1}),
}


@pytest.mark.parametrize("module,shape,threads,expected", PATH_CASES.values(), ids=PATH_CASES.keys())
def test_conv_paths(module, shape, threads, expected):
    before = torch.get_num_threads()
    features = extract_features(module, shape, threads=threads).as_dict()
    assert torch.get_num_threads() == before  # the process's setting is restored
    assert {name: features[name] for name in PATH_FEATURES} == {name: float(expected.get(name, 0)) for name in
                                                                PATH_FEATURES}


class _Attention(nn.Module):
    def forward(self, q, k, v):
        return nn.functional.scaled_dot_product_attention(q, k, v)


def test_fused_attention_counts_both_matmuls_and_the_scores():
    batch, heads, queries, keys, dim = 2, 3, 5, 7, 20
    features = extract_features(_Attention(), [(batch, heads, queries, dim), (batch, heads, keys, dim),
                                               (batch, heads, keys, dim)])
    pairs = batch * heads * queries * keys
    assert features.op_counts == {"_scaled_dot_product_flash_attention_for_cpu": 1}
    assert features.flops == 2.0 * pairs * (dim + dim)
    assert features.vflops_attention == 2.0 * batch * heads * queries * 16 * (32 + 32)  # 7 -> 16, 20 -> 32
    assert features.attention_scores == pairs and features.attentions == 1
    assert not features.uncovered


def test_attention_that_falls_back_to_the_math_kernel_counts_its_matmuls_and_softmax():
    # Different key and value widths: ATen decomposes (scale, Q K^T, softmax, weights x V).
    batch, heads, queries, keys, dim, value_dim = 2, 3, 5, 7, 16, 32
    features = extract_features(_Attention(), [(batch, heads, queries, dim), (batch, heads, keys, dim),
                                               (batch, heads, keys, value_dim)])
    assert features.matmuls == 2 and features.attentions == 0 and not features.uncovered
    assert features.flops == 2.0 * batch * heads * queries * keys * (dim + value_dim)
    assert features.ops_transcendental == 1  # the softmax


class _Ops(nn.Module):
    def forward(self, x):
        y = torch.relu(x) + x                                   # simple: relu (2x), add (3x)
        z = nn.functional.gelu(y)                               # transcendental (2x)
        n = nn.functional.layer_norm(z, z.shape[-1:])           # norm (2x, + mean/rstd outputs)
        c = torch.cat([n, n], dim=1)                            # move (4x)
        return c.mean(dim=(2, 3)), nn.functional.max_pool2d(x, 2)  # reduce; window


def test_memory_operators_are_counted_by_class():
    x = 2 * 3 * 4 * 4
    features = extract_features(_Ops(), (2, 3, 4, 4))
    assert (features.elements_simple, features.ops_simple) == (2 * x + 3 * x, 2)
    assert (features.elements_transcendental, features.ops_transcendental) == (2 * x, 1)
    assert features.ops_norm == 1 and features.elements_norm >= 2 * x
    assert (features.elements_move, features.ops_move) == (4 * x, 1)
    assert (features.elements_reduce, features.ops_reduce) == (2 * x + 2 * 6, 1)  # (2, 6, 4, 4) -> (2, 6)
    assert features.ops_window == 1 and features.maxpool_work == 2 * 3 * 2 * 2 * 4
    classes = ("simple", "transcendental", "norm", "move", "reduce", "window")
    assert sum(getattr(features, f"ops_{name}") for name in classes) == features.mem_ops


# spec -> FLOPs of attention itself (Q K^T and the weighted sum of V: 2 x 2 x tokens x keys x width per window)
ATTENTION_CASES = {
    "fused": (FAMILY_SPECS["attention"], 4.0 * 196 * 196 * 32),
    "explicit": (FAMILY_SPECS["attention_explicit"], 4.0 * 49 * 49 * 32),
    "windows": (FAMILY_SPECS["window_attention"], 4 * 4.0 * 49 * 49 * 32),  # four 7x7 windows
    "mobilevit": (FAMILY_SPECS["mobilevit"], 4 * 4.0 * 16 * 16 * 32),  # four 2x2-pixel sequences of 16 tokens
}


@pytest.mark.parametrize("spec,attention_flops", ATTENTION_CASES.values(), ids=ATTENTION_CASES.keys())
def test_attention_blocks(spec, attention_flops):
    block = spec.build(seed=0)
    features = extract_features(block, spec.input_shape)
    layers = _hand_counted(block, spec.input_shape)
    assert features.flops == layers["flops"] + attention_flops
    assert features.uncovered == ()


class _TokensToImage(nn.Module):
    """A token MLP's depthwise conv (PVTv2): the tokens are transposed into an image, a strided view."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)

    def forward(self, x):
        return self.dw(x.transpose(1, 2).reshape(1, 16, 7, 7))


HIDDEN_COPY_CASES = {
    "strided_conv_input": (_TokensToImage(), (1, 49, 16), 2 * 49 * 16, 1),
    "contiguous_conv_input": (nn.Conv2d(16, 16, 3, padding=1), (1, 16, 7, 7), 0, 0),
    "linear_bias_broadcast": (nn.Linear(8, 4), (5, 8), 5 * 4, 0),  # addmm copies the bias into its output
    "linear_without_bias": (nn.Linear(8, 4, bias=False), (5, 8), 0, 0),
}


@pytest.mark.parametrize("module,shape,elements,ops", HIDDEN_COPY_CASES.values(), ids=HIDDEN_COPY_CASES.keys())
def test_copies_inside_an_operator_are_counted_as_data_movement(module, shape, elements, ops):
    features = extract_features(module, shape)
    assert (features.elements_move, features.ops_move) == (elements, ops)
