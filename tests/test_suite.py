"""The profiling suite: new block families, token blocks, chains, batch coverage (no timing)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nni_latency.blocks import FAMILIES, TOKEN_INPUT_FAMILIES, BlockSpec, ChainSpec, spec_from_dict
from nni_latency.config import ChainConfig, ProfileConfig, TokenConfig
from nni_latency.features import FEATURE_NAMES, extract_features
from nni_latency.suite import TOKEN_BLOCK_FAMILIES, sample_chains, sample_specs, suite_specs


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
            assert whole[name] == pytest.approx(sum(p[name] for p in parts), rel=1e-9, abs=1e-9), (chain.key, name)


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
