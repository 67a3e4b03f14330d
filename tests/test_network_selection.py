"""Parsing network selections (zoo names, kinds, hub samples) and building the networks they name."""

from __future__ import annotations

import pytest
import torch

from nni_latency import zoo
from nni_latency.evaluate.selection import NetworkSpec, hub_samples, hub_spaces, select_networks

# (id, selection, expected names, or a callable of the zoo giving them)
SELECTIONS = [
    ("one", "resnet18", ["resnet18"]),
    ("several_in_order", "squeezenet1_1, resnet18", ["squeezenet1_1", "resnet18"]),
    ("duplicates_once", "resnet18,resnet18,cnn", lambda: ["resnet18", *[n for n in zoo.names("cnn") if n != "resnet18"]]),
    ("kind", "transformer", lambda: zoo.names("transformer")),
    ("all", "all", lambda: zoo.names()),
    ("kind_and_name", "hybrid,resnet18", lambda: [*zoo.names("hybrid"), "resnet18"]),
]


@pytest.mark.parametrize("selection, expected", [c[1:] for c in SELECTIONS], ids=[c[0] for c in SELECTIONS])
def test_zoo_selections(selection, expected):
    expected = expected() if callable(expected) else expected
    specs = select_networks(selection)
    assert [s.name for s in specs] == expected
    assert all(s.kind == zoo.get(s.name).kind and s.image_size == zoo.get(s.name).input_size for s in specs)


# (id, selection, fragments of the one-line error)
BAD_SELECTIONS = [
    ("typo", "resnet81", ["unknown network 'resnet81'", "did you mean 'resnet18'", "resnet50", "hub:SPACE:N"]),
    ("kind_typo", "transformers", ["did you mean 'transformer'", "cnn, transformer, hybrid"]),
    ("empty", " , ", ["selection is empty"]),
    ("hub_space", "hub:proxyless:2", ["unknown hub space 'proxyless'", "did you mean 'proxylessnas'",
                                      "nasbench201"]),
    ("hub_count", "hub:shufflenet", ["hub:SPACE:N"]),
    ("hub_not_a_number", "hub:shufflenet:x", ["hub:SPACE:N"]),
]


@pytest.mark.parametrize("selection, fragments", [c[1:] for c in BAD_SELECTIONS], ids=[c[0] for c in BAD_SELECTIONS])
def test_bad_selections_are_one_line_value_errors(selection, fragments):
    with pytest.raises(ValueError) as error:
        select_networks(selection)
    message = str(error.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message


def test_hub_count_must_be_positive():
    with pytest.raises(ValueError, match="positive count"):
        select_networks("hub:shufflenet:0")


@pytest.fixture(scope="module")
def spaces():
    return {}  # hub spaces, built once for the module's tests


def test_hub_samples_are_seeded_distinct_and_json_able(spaces):
    import json

    first = hub_samples("shufflenet", 3, seed=0, spaces=spaces)
    again = select_networks("hub:shufflenet:3", spaces=spaces)
    assert [s.to_dict() for s in first] == [s.to_dict() for s in again]
    assert [s.name for s in first] == ["shufflenet#0", "shufflenet#1", "shufflenet#2"]
    assert all(s.kind == "hub" and s.image_size == 224 and s.space == "shufflenet" for s in first)
    assert len({json.dumps(s.to_dict()["sample"], sort_keys=True) for s in first}) == 3
    shifted = hub_samples("shufflenet", 1, seed=1, spaces=spaces)
    assert shifted[0].sample == first[1].sample and shifted[0].name == "shufflenet#1"


def test_hub_sample_builds_the_same_network_every_time(spaces):
    spec = hub_samples("shufflenet", 1, seed=0, spaces=spaces)[0]
    first, second = spec.build(32, spaces), spec.build(32, spaces)
    assert first is not second and not first.training
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert first(torch.randn(spec.input_shape(1, 32))).shape == (1, 1000)


def test_build_is_fresh_seeded_and_leaves_the_callers_random_state():
    spec = select_networks("squeezenet1_1")[0]
    state = torch.random.get_rng_state()
    first, second = spec.build(32), spec.build(32)
    assert torch.equal(state, torch.random.get_rng_state())
    assert first is not second and not first.training
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_keys_and_shapes_carry_batch_and_image_size():
    spec = NetworkSpec("resnet18", "cnn", 224)
    assert spec.key(1) == "resnet18_b1_224px" and spec.key(8, 128) == "resnet18_b8_128px"
    assert spec.input_shape(8, 128) == (8, 3, 128, 128) and spec.input_shape() == (1, 3, 224, 224)


def test_every_hub_space_samples_at_its_native_size():
    from nni_latency.spaces.hub import space_entry

    assert {"darts", "nasbench201", "autoformer", "proxylessnas"} <= set(hub_spaces())
    (spec,) = select_networks("hub:nasbench201:1")
    assert spec.image_size == space_entry("nasbench201").input_size == 32
    network = spec.build()
    assert network(torch.randn(spec.input_shape())).shape[0] == 1
