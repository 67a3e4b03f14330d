"""The profiling suite: new block families, token blocks, chains, batch coverage (no timing)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nni_latency.files.config import load_config, packaged_config
from nni_latency.runtimes.torch.counting import extract_features
from nni_latency.runtimes.torch.operators import FEATURE_NAMES
from nni_latency.suite import sampling as suite
from nni_latency.suite.blocks import FAMILIES, TOKEN_INPUT_FAMILIES, BlockSpec, ChainSpec, spec_from_dict
from nni_latency.suite.config import ChainConfig, ProfileConfig, TokenConfig
from nni_latency.suite.sampling import TOKEN_BLOCK_FAMILIES, sample_chains, sample_specs, suite_specs


def _config(**changes) -> ProfileConfig:
    base = dict(count=24, channels=[8, 32], resolutions=[7, 14], extra_batch_share=0.0,
                chains=ChainConfig(count=6), tokens=TokenConfig(widths=[32, 64], sides=[7, 14]))
    return ProfileConfig(**(base | changes))


@pytest.fixture(scope="module")
def chains() -> list[ChainSpec]:
    return sample_chains(_config())


def test_chains_are_distinct_and_deterministic(chains):
    assert len(chains) == 6 and len({c.key for c in chains}) == 6
    assert [c.key for c in sample_chains(_config())] == [c.key for c in chains]
    assert sample_chains(_config(chains=ChainConfig(count=0))) == []


def test_every_chain_runs_and_its_features_are_the_sum_of_its_blocks(chains):
    for chain in chains:
        assert 2 <= len(chain.blocks) <= 4
        whole = extract_features(chain.build(seed=0), chain.input_shape).as_dict()
        parts = [extract_features(block.build(seed=0), block.input_shape).as_dict() for block in chain.blocks]
        for name in FEATURE_NAMES:
            extra = 1 if name == "overhead.modules" else 0  # the chain's own container is one more module call
            assert whole[name] == pytest.approx(sum(p[name] for p in parts) + extra, rel=1e-9, abs=1e-9), \
                (chain.key, name)


def test_a_chain_round_trips_through_its_dict(chains):
    for chain in chains:
        assert spec_from_dict(chain.to_dict()) == chain


def test_the_suite_is_blocks_then_chains():
    config = _config()
    assert suite_specs(config) == [*sample_specs(config), *sample_chains(config)]


def test_a_cnn_only_profile_leaves_the_token_families_out():
    config = _config(count=40, families=dict.fromkeys(FAMILIES, 1.0))
    families = {spec.family for spec in sample_specs(config)}
    assert TOKEN_BLOCK_FAMILIES <= families
    cnn_only = dataclasses.replace(config, tokens=TokenConfig(enabled=False))
    assert not TOKEN_BLOCK_FAMILIES & {spec.family for spec in sample_specs(cnn_only)}


@pytest.mark.parametrize("family", sorted(TOKEN_BLOCK_FAMILIES | {"ghost", "mixconv", "dense", "linear", "convnext"}))
def test_sampled_blocks_of_the_new_families_build_and_run(family):
    config = _config(count=3, families={family: 1.0})
    for spec in sample_specs(config):
        block = spec.build(seed=0).eval()
        with torch.no_grad():
            block(torch.randn(*spec.input_shape))
        if family in TOKEN_INPUT_FAMILIES:
            assert spec.input_shape == (spec.batch, spec.resolution ** 2, spec.c_in)
        assert not extract_features(block, spec.input_shape).uncovered


@pytest.mark.parametrize("batches", [[1, 8], [2, 4, 16]])
def test_covering_batches_spreads_blocks_and_chains_over_them(batches):
    config = _config(count=30).covering_batches(batches)
    assert config.batch == batches[0]
    assert {spec.batch for spec in suite_specs(config)} == set(batches)


def test_token_block_keys_carry_their_heads():
    assert BlockSpec("attention", 64, 64, 14, heads=2).key == "attention_k3_h2_c64-64_r14_s1_b1"
    assert "_h" not in BlockSpec("mbconv", 16, 16, 14).key  # the keys of earlier datasets stay as they were


# --- issue 17: what real networks run (weights streamed from memory, stem pooling, in-place activations,
# transposing copies, written-out attention, few channels per group, cell-space ops) ---

NEW_FAMILIES = ("stream_head", "stream_linear", "conv_act", "grouped_conv", "cell_op", "attention_heads", "token_conv")


class _CopyStrides(TorchDispatchMode):
    """The innermost stride of the input of every copying op (clone, copy_, contiguous) that runs."""

    def __init__(self):
        super().__init__()
        self.strides: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("clone", "copy_", "contiguous"):
            source = args[1] if name == "copy_" else args[0]
            self.strides.append(source.stride()[-1])
        return func(*args, **(kwargs or {}))


def _run(spec: BlockSpec) -> torch.Tensor:
    with torch.no_grad():
        return spec.build(seed=0).eval()(torch.randn(*spec.input_shape))


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_sampled_blocks_of_the_issue_17_families_build_run_and_are_covered(family, monkeypatch):
    monkeypatch.setattr(suite, "last_level_cache_bytes", lambda: 2 * 2**20)  # small weights, a quick test
    config = _config(count=3, families={family: 1.0}, tokens=TokenConfig(widths=[32, 64], sides=[7, 14, 28, 56]))
    specs = sample_specs(config)
    assert len(specs) == 3 and {spec.family for spec in specs} == {family}
    for spec in specs:
        _run(spec)
        assert spec_from_dict(spec.to_dict()) == spec
        assert not extract_features(spec.build(seed=0), spec.input_shape).uncovered, spec.key


# family, block, the aten ops its features must count (op -> calls)
COUNTED = [
    ("conv_act_relu", BlockSpec("conv_act", 16, 16, 14, act="relu"), {"convolution": 1, "relu_": 1}),
    ("conv_act_relu6", BlockSpec("conv_act", 16, 32, 14, act="relu6"), {"convolution": 1, "hardtanh_": 1}),
    ("conv_act_hswish", BlockSpec("conv_act", 16, 16, 14, act="hswish"), {"convolution": 1, "hardswish_": 1}),
    ("stream_linear_bias", BlockSpec("stream_linear", 512, 256, 1, kernel=1), {"addmm": 1}),
    ("stream_linear_nobias", BlockSpec("stream_linear", 512, 256, 1, kernel=1, variant="nobias"), {"mm": 1}),
    ("stream_head_vgg", BlockSpec("stream_head", 64, 128, 7, kernel=7), {"addmm": 1, "relu_": 1}),
    ("stream_head_1x1", BlockSpec("stream_head", 256, 128, 1, kernel=1), {"convolution": 1, "relu_": 1}),
    ("attention_heads", BlockSpec("attention_heads", 96, 96, 14, heads=6), {"bmm": 2, "_softmax": 1}),
    ("token_conv_view", BlockSpec("token_conv", 32, 32, 14, expansion=4), {"convolution": 1, "gelu": 1}),
    ("token_conv_copy", BlockSpec("token_conv", 32, 32, 14, expansion=4, variant="contiguous"),
     {"convolution": 1, "clone": 1}),
    ("cell_sep_conv", BlockSpec("cell_op", 16, 16, 32, kernel=3, variant="sep_conv"), {"convolution": 4, "relu": 2}),
    ("cell_dil_conv", BlockSpec("cell_op", 16, 16, 32, kernel=5, variant="dil_conv"), {"convolution": 2}),
    ("cell_max_pool", BlockSpec("cell_op", 16, 16, 32, variant="max_pool"), {"max_pool2d_with_indices": 1}),
    ("cell_avg_pool", BlockSpec("cell_op", 16, 16, 16, 2, variant="avg_pool"), {"avg_pool2d": 1}),
    ("cell_reduce", BlockSpec("cell_op", 16, 32, 32, 2, 1, variant="factorized_reduce"), {"convolution": 2, "cat": 1}),
    ("stem_maxpool", BlockSpec("maxpool", 64, 64, 112, 2, 3), {"max_pool2d_with_indices": 1}),
]


@pytest.mark.parametrize("spec, ops", [(spec, ops) for _, spec, ops in COUNTED], ids=[i for i, _, _ in COUNTED])
def test_each_new_block_counts_the_ops_it_runs(spec, ops):
    counts = extract_features(spec.build(seed=0), spec.input_shape).op_counts
    assert {op: counts.get(op, 0) for op in ops} == ops


def test_grouped_convs_have_few_channels_per_group_and_count_as_grouped():
    config = _config(count=6, families={"grouped_conv": 1.0}, channels=[16, 256], resolutions=[14, 28, 56])
    for spec in sample_specs(config):
        assert spec.c_in // spec.groups in (2, 4, 8, 16) and spec.groups > 1, spec.key
        features = extract_features(spec.build(seed=0), spec.input_shape)
        assert features.flops_grouped > 0 and features.flops_depthwise == 0 and features.convs_grouped == 1


def test_the_transposing_copy_reads_a_non_unit_last_stride_and_the_view_copies_nothing():
    copying, viewing = (BlockSpec("token_conv", 32, 32, 14, expansion=4, variant=v) for v in ("contiguous", ""))
    with _CopyStrides() as strides:
        _run(copying)
    assert strides.strides == [4 * 32]  # the hidden width: the transposed tokens' innermost stride
    with _CopyStrides() as strides:
        _run(viewing)
    assert strides.strides == []


@pytest.mark.parametrize("cache_mib", [1, 32])
def test_stream_blocks_are_sized_around_the_last_level_cache(cache_mib, monkeypatch):
    monkeypatch.setattr(suite, "last_level_cache_bytes", lambda: cache_mib * 2**20)
    config = _config(count=8, families={"stream_head": 1.0, "stream_linear": 1.0})
    specs = sample_specs(config)
    weight_bytes = [4 * spec.c_in * spec.c_out * spec.kernel ** 2 for spec in specs]
    low, high = (ratio * cache_mib * 2**20 for ratio in suite._STREAM_RANGE)
    assert all(0.8 * low <= size <= 1.2 * high for size in weight_bytes), weight_bytes
    assert max(weight_bytes) > cache_mib * 2**20 and all(spec.batch == 1 for spec in specs)


def test_half_the_pooling_blocks_are_stems_on_large_maps():
    config = _config(count=20, families={"maxpool": 1.0, "avgpool": 1.0}, resolutions=[7, 14, 28])
    stems = [s for s in sample_specs(config) if s.resolution in (56, 112)]
    assert stems and all(s.c_in >= 64 and (s.kernel, s.stride) == (3, 2) for s in stems)


def test_attention_heads_span_one_to_twelve_heads_and_long_rows():
    config = _config(count=40, families={"attention_heads": 1.0}, max_mflops=3000)
    specs = sample_specs(config)
    assert {s.heads for s in specs} <= {1, 2, 3, 4, 6, 8, 12} and len({s.heads for s in specs}) >= 4
    assert max(s.resolution ** 2 for s in specs) == 3136 and min(s.resolution ** 2 for s in specs) == 196


@pytest.mark.parametrize("text, expected", [("32768K\n", 32 * 2**20), ("2M", 2 * 2**20), ("512", 512)])
def test_the_last_level_cache_is_the_largest_size_listed(text, expected, tmp_path, monkeypatch):
    (tmp_path / "index0").mkdir()
    (tmp_path / "index0" / "size").write_text("32K")
    (tmp_path / "index3").mkdir()
    (tmp_path / "index3" / "size").write_text(text)
    monkeypatch.setattr(suite.glob, "glob", lambda _: [str(p) for p in tmp_path.glob("index*/size")])
    assert suite.last_level_cache_bytes() == max(expected, 32 * 2**10)


def test_the_cache_size_falls_back_when_sys_says_nothing(monkeypatch):
    monkeypatch.setattr(suite.glob, "glob", lambda _: [])
    assert suite.last_level_cache_bytes() == 32 * 2**20


@pytest.mark.parametrize("family, variant", [("cell_op", ""), ("cell_op", "conv_7x7"), ("mbconv", "nobias")])
def test_a_variant_the_family_lacks_is_a_one_line_error(family, variant):
    with pytest.raises(ValueError, match="has no variant"):
        BlockSpec(family, 16, 16, 32, variant=variant)


def test_variants_enter_the_key_and_plain_keys_stay_as_they_were():
    assert BlockSpec("cell_op", 16, 16, 32, variant="sep_conv").key == "cell_op_k3_sep_conv_c16-16_r32_s1_b1"
    assert BlockSpec("conv_bn_relu", 16, 16, 32).key == "conv_bn_relu_k3_c16-16_r32_s1_b1"


def test_the_packaged_cpu_profile_samples_every_new_family():
    config = load_config(packaged_config("profile_cpu.yaml"), ProfileConfig)
    assert set(NEW_FAMILIES) <= set(config.families)
    assert (Path(__file__).resolve().parent.parent / "configs" / "profile_cpu.yaml").read_text() == \
        Path(packaged_config("profile_cpu.yaml")).read_text()


# --- issue 28: operators beyond CNN classification, and the calls attention networks make ---

BEYOND_FAMILIES = ("unet_up", "sr_up", "aspp", "video", "tcn", "sequence", "swin", "levit", "conv_pos")
# The classes issue 28 added: the default profile must make 6 calls of each, so that each gets weights of its own.
BEYOND_CLASSES = ("conv_transposed", "conv_gemm_3d", "conv_depthwise_3d", "conv_depthwise_gemm", "rnn", "gather",
                  "index", "upsample_nearest", "upsample_linear", "group_norm", "instance_norm")


@pytest.fixture(scope="module")
def default_suite_calls():
    from collections import Counter

    from nni_latency.runtimes.protocol import MeasurementProtocol

    config = load_config(packaged_config("profile_cpu.yaml"), ProfileConfig)
    counting = MeasurementProtocol(threads=config.threads).counting
    calls, uncovered = Counter(), set()
    for spec in suite_specs(config):
        features = extract_features(spec.build(seed=0), spec.input_shape, counting)
        calls.update(record.cls for record in features.ops)
        uncovered |= set(features.uncovered)
    return calls, uncovered


def _calls_to_fit(cls: str) -> int:
    """Calls a class needs to be fitted on its own (``OperatorCostModel.fit_ops``): 6, and one more than its
    features."""
    from nni_latency.model.regressors import MIN_OP_ROWS
    from nni_latency.runtimes.torch.operators import OP_CLASSES

    return max(MIN_OP_ROWS, len(OP_CLASSES[cls].features) + 1)


@pytest.mark.parametrize("cls", BEYOND_CLASSES)
def test_the_default_profile_makes_enough_calls_of_every_new_class_to_fit_it(cls, default_suite_calls):
    calls, uncovered = default_suite_calls
    assert calls[cls] >= _calls_to_fit(cls) >= 6, calls
    assert not uncovered


def test_making_room_for_them_left_every_other_class_its_calls(default_suite_calls):
    from nni_latency.runtimes.torch.operators import OP_CLASSES

    calls, _ = default_suite_calls
    # ATen runs nearly every 1x1 conv at batch 1 on its GEMM path: oneDNN's pointwise class borrows conv_gemm's
    # weights, as it did before issue 28.
    starved = [cls for cls in OP_CLASSES if cls != "conv_pointwise" and calls[cls] < _calls_to_fit(cls)]
    assert not starved, {cls: calls[cls] for cls in starved}


def test_the_default_profile_keeps_its_size():
    config = load_config(packaged_config("profile_cpu.yaml"), ProfileConfig)
    specs = sample_specs(config)
    assert len(specs) == 110 and len(suite_specs(config)) == 140
    families = {spec.family for spec in specs}
    assert set(BEYOND_FAMILIES) <= families and set(NEW_FAMILIES) <= families


@pytest.mark.parametrize("family", BEYOND_FAMILIES)
def test_sampled_blocks_beyond_classification_build_run_and_are_covered(family):
    config = _config(count=3, families={family: 1.0})
    specs = sample_specs(config)
    assert len(specs) == 3 and {spec.family for spec in specs} == {family}
    for spec in specs:
        output = _run(spec)
        assert spec_from_dict(spec.to_dict()) == spec and output.shape[0] == spec.batch
        assert not extract_features(spec.build(seed=0), spec.input_shape).uncovered, spec.key


# family, block, the aten ops its features must count (op -> calls)
BEYOND_COUNTED = [
    ("unet_up", BlockSpec("unet_up", 32, 16, 7, kernel=2),  # 2 transposed + 2 1x1 convs
     {"convolution": 4, "native_batch_norm": 2, "upsample_bilinear2d": 1, "upsample_nearest2d": 1}),
    ("sr_up", BlockSpec("sr_up", 16, 16, 8), {"convolution": 4, "pixel_shuffle": 2, "upsample_nearest2d": 2}),
    # 1x1, rate 6, 2 x (depthwise + 1x1), the pooled branch's 1x1, the projection
    ("aspp", BlockSpec("aspp", 32, 16, 14), {"convolution": 8, "upsample_bilinear2d": 1, "cat": 1, "mean": 1}),
    ("video", BlockSpec("video", 16, 32, 14), {"convolution": 4, "add": 1}),
    ("tcn", BlockSpec("tcn", 16, 32, 50, variant="d16"), {"convolution": 3, "native_group_norm": 2}),
    ("tcn_undilated", BlockSpec("tcn", 16, 32, 50), {"convolution": 3, "native_group_norm": 2}),
    # word, position and segment embeddings; 2 layers x 2 directions of an LSTM
    ("sequence", BlockSpec("sequence", 16, 24, 6), {"embedding": 3, "mkldnn_rnn_layer": 4}),
    ("sequence_gru", BlockSpec("sequence", 16, 24, 6, variant="gru"),
     {"embedding": 3, "mkldnn_rnn_layer": 4, "addmm": 1 + 6}),  # the GRU: the input's product, then one per step
    ("swin", BlockSpec("swin", 64, 64, 14, kernel=7, expansion=4, heads=2),
     {"index": 2, "roll": 2, "_softmax": 2, "gelu": 2}),  # the shifted block rolls forth and back
    ("levit", BlockSpec("levit", 32, 32, 7, heads=2), {"index": 1, "mm": 2, "hardswish": 1}),
    ("conv_pos", BlockSpec("conv_pos", 16, 16, 7), {"convolution": 1, "cat": 1}),
]


@pytest.mark.parametrize("spec, ops", [(spec, ops) for _, spec, ops in BEYOND_COUNTED],
                         ids=[i for i, _, _ in BEYOND_COUNTED])
def test_each_block_beyond_classification_counts_the_ops_it_runs(spec, ops):
    counts = extract_features(spec.build(seed=0), spec.input_shape).op_counts
    assert {op: counts.get(op, 0) for op in ops} == ops


def test_sequence_and_video_inputs_have_their_own_layout():
    assert BlockSpec("sequence", 64, 128, 32).input_shape == (1, 32, 64)  # steps x features
    assert BlockSpec("tcn", 64, 256, 1000).input_shape == (1, 64, 1000)  # channels x samples
    assert BlockSpec("video", 32, 64, 56, batch=2).input_shape == (2, 32, 8, 56, 56)  # 8 frames at 56 px
    assert BlockSpec("conv_pos", 64, 64, 14).input_shape == (1, 197, 64)  # a class token and 14 x 14 tokens
    assert BlockSpec("swin", 96, 96, 56, kernel=7, heads=3).input_shape == (1, 3136, 96)
