"""HF ``transformers`` implementations as a second whole-network test set: names, groups, tiny builds counted,
and the one-line error when ``transformers`` is not installed (no download, no timing)."""

from __future__ import annotations

import sys

import pytest
import torch

from nni_latency.cli.targets import default_input_shape, load_network
from nni_latency.errors import describe_error
from nni_latency.evaluate.selection import select_networks
from nni_latency.runtimes.torch.counting import extract_features
from nni_latency.zoo import KINDS
from nni_latency.zoo import hf as hf_models


@pytest.fixture
def transformers():
    return pytest.importorskip("transformers")


# name, config overrides for a tiny variant, input size, aten ops its features must count
TINY = [
    ("ViT", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=16),
     64, {"convolution", "native_layer_norm", "addmm", "gelu"}),
    ("ConvNext", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1]), 64,
     {"convolution", "native_layer_norm", "gelu"}),
    ("PvtV2", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2]), 64,
     {"convolution", "native_layer_norm"}),
    ("ResNet", dict(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1]), 64,
     {"convolution", "max_pool2d_with_indices", "add_"}),  # an in-place residual
    ("MobileNetV2", dict(depth_multiplier=0.35), 64, {"convolution", "hardtanh", "constant_pad_nd"}),  # TF padding
]


@pytest.mark.parametrize("name, overrides, size, ops", TINY, ids=[t[0] for t in TINY])
def test_tiny_variants_build_run_and_count(transformers, name, overrides, size, ops):
    shape = hf_models.get(name).input_shape(image_size=size)
    model = hf_models.build(name, image_size=size, num_labels=10, **overrides)
    assert not model.training and isinstance(model, hf_models.HFVision)
    with torch.no_grad():
        assert model(torch.randn(shape)).shape == (1, 10)
    features = extract_features(model, shape)
    assert features.flops > 0 and ops <= set(features.op_counts), sorted(features.op_counts)


def test_a_build_is_seeded_and_leaves_the_callers_random_state(transformers):
    tiny = dict(image_size=32, num_labels=4, **TINY[0][1])
    state = torch.random.get_rng_state()
    first, second = hf_models.build("ViT", **tiny), hf_models.build("ViT", **tiny)
    assert torch.equal(torch.random.get_rng_state(), state)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_every_entry_names_classes_transformers_has(transformers):
    for name in hf_models.names():
        entry = hf_models.get(name)
        assert hasattr(transformers, entry.config) and hasattr(transformers, entry.model), name


@pytest.mark.parametrize("term, kinds", [("hf:all", set(KINDS)), ("hf:cnn", {"cnn"}),
                                         ("hf:transformer", {"transformer"}), ("hf:hybrid", {"hybrid"})])
def test_groups_select_their_kind(transformers, term, kinds):
    specs = select_networks(term)
    assert {s.kind for s in specs} == kinds and all(s.name.startswith("hf:") for s in specs)
    assert len(specs) == len(hf_models.names(None if term == "hf:all" else term[3:]))


def test_hf_names_mix_with_zoo_names_once_each(transformers):
    names = [s.name for s in select_networks("hf:PvtV2,resnet18,hf:PvtV2,hf:cnn")]
    assert names[:2] == ["hf:PvtV2", "resnet18"] and names.count("hf:PvtV2") == 1 and "hf:ResNet" in names


@pytest.mark.parametrize("term, fragment", [("hf:Convnext", "did you mean 'ConvNext'?"),
                                            ("hf:", "unknown HF network ''")])
def test_an_unknown_name_is_a_one_line_error(transformers, term, fragment):
    with pytest.raises(ValueError, match="unknown HF network") as error:
        select_networks(term)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_targets_take_hf_names_at_their_own_resolution():
    assert default_input_shape("hf:MobileViT") == (1, 3, 256, 256)
    assert default_input_shape("hf:ConvNext") == (1, 3, 224, 224)


@pytest.mark.parametrize("call", [lambda: select_networks("hf:ConvNext"), lambda: load_network("hf:ConvNext", None),
                                  lambda: hf_models.build("ResNet")], ids=["evaluate", "analyze", "build"])
def test_without_transformers_the_error_is_one_line_naming_the_install(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an absent package looks like to import
    with pytest.raises(ImportError) as error:
        call()
    assert describe_error(error.value) == hf_models.INSTALL_HINT
