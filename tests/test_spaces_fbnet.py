"""FBNetSpace: labels and choices, frozen networks that run, and the paper's layout at full size."""

import pytest
import torch

from nni_latency.spaces import CANDIDATE_NAMES, FBNetSpace
from nni_latency.spaces.fbnet import default_strides, make_divisible
from nni_latency.suite.blocks import MBConv, Skip

# (stage, channels, resolution after the stage) of FBNet at 224 (paper, Table 1)
PAPER_LAYOUT = [(1, 16, 112), (2, 24, 56), (3, 32, 28), (4, 64, 14), (5, 112, 14), (6, 184, 7), (7, 352, 7)]


def _layer_shapes(net: torch.nn.Module, input_size: int) -> dict[str, tuple[int, ...]]:
    """Output shape of every searched layer, from a forward pass on the meta device (no compute)."""
    shapes = {}
    net = net.eval().to("meta")
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
             for name, module in net.layers.named_children()]
    with torch.no_grad():
        out = net(torch.empty(1, 3, input_size, input_size, device="meta"))
    for hook in hooks:
        hook.remove()
    shapes["logits"] = tuple(out.shape)
    return shapes


@pytest.fixture(scope="module")
def paper_space():
    return FBNetSpace()


def test_paper_space_has_22_labelled_layers_of_9_choices(paper_space):
    choices = paper_space.simplify()
    assert len(choices) == 22
    assert list(choices)[:3] == ["stage1.0", "stage2.0", "stage2.1"]
    assert all(tuple(choice.values) == CANDIDATE_NAMES for choice in choices.values())


@pytest.mark.parametrize("arch_choice", ["k3_e1", "k5_e6", "skip"])
def test_paper_layout_matches_table_1(paper_space, arch_choice):
    net = paper_space.freeze({label: arch_choice for label in paper_space.simplify()})
    shapes = _layer_shapes(net, 224)
    assert shapes["logits"] == (1, 1000)
    layer_shapes = [shape for name, shape in shapes.items() if name != "logits"]
    depths, start = [1, 4, 4, 4, 4, 4, 1], 0
    for (stage, channels, resolution), depth in zip(PAPER_LAYOUT, depths):
        for shape in layer_shapes[start:start + depth]:
            assert shape == (1, channels, resolution, resolution), f"stage {stage}"
        start += depth
    assert net.head[0].out_channels == 1984


def test_skip_is_identity_only_where_the_shape_allows(paper_space):
    for name, layer in paper_space.layers.named_children():
        skip = layer["skip"]
        assert isinstance(skip, Skip)
        k3 = layer["k3_e1"]
        same_shape = k3.residual
        assert (skip.proj is None) == same_shape, name


def test_without_projection_skip_first_layers_have_8_choices():
    space = FBNetSpace(projection_skip=False)
    counts = {label: len(choice.values) for label, choice in space.simplify().items()}
    # stage1.0 maps 16 -> 16 at stride 1, so its skip is an identity and stays
    assert counts["stage1.0"] == 9
    assert [label for label, n in counts.items() if n == 8] == [f"stage{s}.0" for s in range(2, 8)]


@pytest.mark.parametrize("candidate, groups, has_expand", [
    ("k3_e1_g2", 2, False), ("k5_e1_g2", 2, False), ("k3_e6", 1, True), ("k5_e3", 1, True),
])
def test_candidates_are_mbconv_with_named_kernel_expansion_groups(paper_space, candidate, groups, has_expand):
    block = paper_space.layers[3][candidate]
    assert isinstance(block, MBConv)
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == (3 if has_expand else 2)
    depthwise = [c for c in convs if c.groups == c.in_channels and c.kernel_size[0] > 1]
    assert depthwise[0].kernel_size == (int(candidate[1]),) * 2
    assert all(c.groups == groups for c in convs if c.kernel_size == (1, 1))


@pytest.mark.parametrize("width_mult, depth_mult, input_size, layers", [
    (0.25, 0.25, 16, 7), (0.5, 0.5, 32, 12), (0.35, 1.0, 24, 22),
])
def test_scaled_space_freezes_to_a_runnable_network(width_mult, depth_mult, input_size, layers):
    torch.manual_seed(0)
    space = FBNetSpace(num_classes=10, input_size=input_size, width_mult=width_mult, depth_mult=depth_mult)
    labels = list(space.simplify())
    assert len(labels) == layers
    arch = {label: CANDIDATE_NAMES[i % len(CANDIDATE_NAMES)] for i, label in enumerate(labels)}
    net = space.freeze(arch).eval()
    assert not net.simplify()
    assert all(width % 8 == 0 for width in space.widths)
    with torch.no_grad():
        out = net(torch.randn(2, 3, input_size, input_size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("input_size, stem, stages, final", [
    (224, 2, (1, 2, 2, 2, 1, 2, 1), 7),
    (64, 1, (1, 2, 2, 2, 1, 2, 1), 4),
    (32, 1, (1, 1, 2, 2, 1, 2, 1), 4),
    (16, 1, (1, 1, 1, 2, 1, 2, 1), 4),
    (8, 1, (1, 1, 1, 1, 1, 2, 1), 4),
])
def test_default_strides_drop_the_earliest_halvings_first(input_size, stem, stages, final):
    assert default_strides(input_size) == (stem, stages)
    total = stem
    for stride in stages:
        total *= stride
    assert input_size // total == final


@pytest.mark.parametrize("value, expected", [(16 * 0.25, 8), (24 * 0.5, 16), (184 * 0.35, 64), (1984, 1984)])
def test_make_divisible(value, expected):
    assert make_divisible(value) == expected


@pytest.mark.parametrize("kwargs, message", [
    ({"width_mult": 0}, "width_mult"),
    ({"candidates": ["k7_e6"]}, "unknown FBNet candidate"),
    ({"strides": (2, (1, 2))}, "one stride per stage"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FBNetSpace(**kwargs)
