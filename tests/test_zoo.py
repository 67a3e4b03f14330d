"""The zoo's convolutional networks: each builds and runs, has the parameter count its paper reports, and the
registry's lookups behave (one-line errors, no name collisions)."""

from __future__ import annotations

import re

import pytest
import torch

from nni_latency import zoo
from nni_latency.evaluate.selection import select_networks

# name -> (parameters in millions its paper / reference release reports, relative tolerance)
PAPER_PARAMS_M = {
    "resnet18": (11.7, 0.02),
    "resnet34": (21.8, 0.02),
    "resnet50": (25.6, 0.02),
    "resnet101": (44.5, 0.02),
    "resnext50_32x4d": (25.0, 0.02),
    "wide_resnet50_2": (68.9, 0.02),
    "mobilenet_v1": (4.2, 0.03),
    "mobilenet_v2": (3.5, 0.03),
    "mobilenet_v3_large": (5.4, 0.03),
    "mobilenet_v3_small": (2.5, 0.03),
    "efficientnet_b0": (5.3, 0.03),
    "efficientnet_b1": (7.8, 0.03),
    "efficientnet_lite0": (4.7, 0.03),
    "tinynet_a": (6.2, 0.03),
    "mnasnet_a1": (3.9, 0.03),
    "mnasnet_b1": (4.4, 0.03),
    "fbnet_a": (4.3, 0.03),
    "fbnet_b": (4.5, 0.07),          # the released definition has 4.8 M (see fbnet.py)
    "fbnet_c": (5.5, 0.03),
    "proxylessnas_mobile": (4.1, 0.03),
    "ghostnet": (5.2, 0.03),
    "shufflenet_v2_x1_0": (2.3, 0.03),
    "regnetx_400mf": (5.2, 0.03),
    "regnety_400mf": (4.3, 0.03),
    "densenet121": (8.0, 0.03),
    "vgg11": (132.9, 0.02),
    "vgg16": (138.4, 0.02),
    "squeezenet1_1": (1.24, 0.03),
    "mixnet_s": (4.1, 0.03),
    "repvgg_a0": (8.3, 0.03),
    "repvgg_a0_train": (9.1, 0.03),
    "convnext_tiny": (28.6, 0.02),
    "dla34": (15.7, 0.03),
    "mobileone_s0": (2.1, 0.03),
    "rexnet_1_0": (4.8, 0.03),
    "googlenet": (7.0, 0.03),        # 5x5 branches as in the paper (torchvision's 3x3 variant has 6.6 M)
}

CNNS = zoo.names("cnn")


def _params_m(name: str) -> float:
    """Parameter count in millions, built on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        net = zoo.build(name)
    return sum(p.numel() for p in net.parameters()) / 1e6


@pytest.mark.parametrize("name", CNNS, ids=CNNS)
def test_builds_and_runs(name):
    torch.manual_seed(0)
    net = zoo.build(name).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M), ids=sorted(PAPER_PARAMS_M))
def test_parameter_count_matches_paper(name):
    expected, tol = PAPER_PARAMS_M[name]
    assert _params_m(name) == pytest.approx(expected, rel=tol)


def test_every_registered_cnn_is_checked_against_its_paper():
    assert sorted(PAPER_PARAMS_M) == CNNS, sorted(set(PAPER_PARAMS_M) ^ set(CNNS))


def test_num_classes_and_image_size_are_honoured():
    net = zoo.build("mobilenet_v2", image_size=96, num_classes=10).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 96, 96)).shape == (2, 10)


def test_entries_describe_their_network():
    for name in CNNS:
        entry = zoo.get(name)
        assert entry.kind == "cnn" and entry.name == name
        assert re.search(r"(19|20)\d\d", entry.paper), f"{name}: paper {entry.paper!r} names no year"
        assert entry.input_shape() == (1, 3, entry.input_size, entry.input_size)
        assert (entry.builder.__doc__ or "").strip(), f"{name}: builder has no docstring"
    assert zoo.get("efficientnet_b1").input_size == 240
    assert zoo.get("tinynet_a").input_size == 192


def test_unknown_name_is_a_one_line_error_listing_the_names():
    with pytest.raises(ValueError) as info:
        zoo.get("nope")
    message = str(info.value)
    assert "\n" not in message
    assert "'nope'" in message
    for name in ("resnet50", "mobilenet_v2", "vgg16"):
        assert name in message


def test_close_misspelling_gets_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'resnet50'"):
        zoo.get("resnet5")


def test_each_cnn_is_its_own_network_and_an_evaluation_selects_it_by_name():
    # A test set of whole networks: no name is another's alias (each has its own parameter count), and each name
    # resolves where a user gives it (``evaluate --networks NAME``) to that network at its paper's resolution.
    params = {name: _params_m(name) for name in CNNS}
    assert len(set(params.values())) == len(CNNS), sorted(params.items(), key=lambda item: item[1])
    specs = select_networks(",".join(CNNS))
    assert [(spec.name, spec.kind, spec.image_size) for spec in specs] == [
        (name, "cnn", zoo.get(name).input_size) for name in CNNS]


def test_no_name_collisions():
    names = zoo.names()
    assert len(names) == len(set(names))
    canonical = {}
    for name in names:
        key = re.sub(r"[^a-z0-9]", "", name.lower())
        assert key not in canonical, f"{name!r} collides with {canonical[key]!r}"
        canonical[key] = name


def test_registering_a_taken_name_fails():
    with pytest.raises(ValueError, match="registered twice"):
        zoo.register("resnet50", kind="cnn", paper="x")(lambda image_size=224, num_classes=1000: None)
