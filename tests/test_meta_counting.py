"""Counting features without allocating what is too large: meta tensors for huge modules, the real pass
(exactly what the model was fitted on) for everything else."""

from __future__ import annotations

import functools

import pytest
from torch import nn

from nni_latency.runtimes.torch import meta as counting
from nni_latency.runtimes.torch.counting import extract_features
from nni_latency.runtimes.torch.meta import count_features
from nni_latency.suite.blocks import BlockSpec


def test_an_ordinary_block_is_counted_for_real():
    spec = BlockSpec("mbconv", 16, 24, 14, stride=2, expansion=3)
    expected = extract_features(spec.build(seed=0), spec.input_shape).as_dict()
    assert count_features(functools.partial(spec.build, seed=0), spec.input_shape, 16).as_dict() == expected
    assert count_features(spec.build(seed=0), spec.input_shape, 16).as_dict() == expected


def test_a_huge_block_is_counted_on_meta_tensors_with_a_warning():
    spec = BlockSpec("conv_bn_relu", 1024, 1024, 2048, kernel=7)
    with pytest.warns(UserWarning, match="counted on meta tensors"):
        features = count_features(functools.partial(spec.build, seed=0), spec.input_shape, 16)
    assert features.flops == 2.0 * 1024 * 1024 * 49 * 2048 ** 2
    assert features.acts == 1024 * 2048 ** 2


# What meta tensors count as a real pass does (the kernel path features differ: on meta every convolution
# counts as oneDNN's, which is what ATen picks for the large ones that take this route).
SHAPE_FEATURES = ("flops", "acts", "inp", "weights", "mem_elements", "conv_ops", "mem_ops", "vflops_dense",
                  "vflops_pointwise", "convs_dense", "convs_pointwise")


def test_meta_counts_match_the_real_pass_on_convolutions(monkeypatch):
    monkeypatch.setattr(counting, "_SMALL_WORK", 0)  # every module takes the meta route
    monkeypatch.setattr(counting, "LARGE_FLOPS", 0)
    network = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 1))
    with pytest.warns(UserWarning, match="meta"):
        meta = count_features(network, (1, 8, 20, 20), 16).as_dict()
    real = extract_features(network, (1, 8, 20, 20)).as_dict()
    assert {name: meta[name] for name in SHAPE_FEATURES} == {name: real[name] for name in SHAPE_FEATURES}


def test_a_huge_shape_that_does_not_fit_is_reported_without_allocating():
    with pytest.raises(ValueError, match="too large to run here .* cannot be counted without running it"):
        count_features(nn.Conv2d(8, 8, 3), (100_000, 3, 100_000, 100_000), 16)
