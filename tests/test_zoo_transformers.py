"""The zoo's transformer and hybrid networks: they build, run, match their papers' sizes and token counts."""

from __future__ import annotations

import importlib

import pytest
import torch

from nni_latency.zoo import _attention

torch.set_num_threads(1)

# module -> {network: (kind, parameters in millions the paper reports, the count we expect when that differs)}
NETWORKS = {
    "vit": {"deit_tiny": ("transformer", 5.7, None), "deit_small": ("transformer", 22.0, None)},
    "swin": {"swin_tiny": ("transformer", 28.3, None)},
    # PVTv2's 3.4 M leaves out the 1000-class head (0.26 M); with it the released model has 3.67 M.
    "pvt": {"pvt_v2_b0": ("transformer", 3.4, 3.67)},
    "poolformer": {"poolformer_s12": ("transformer", 11.9, None)},
    "mobilevit": {"mobilevit_xxs": ("hybrid", 1.3, None), "mobilevit_xs": ("hybrid", 2.3, None),
                  "mobilevit_s": ("hybrid", 5.6, None)},
    "efficientformer": {"efficientformer_l1": ("hybrid", 12.3, None)},
    "levit": {"levit_128s": ("hybrid", 7.8, None), "levit_128": ("hybrid", 9.2, None)},
    "edgenext": {"edgenext_xx_small": ("hybrid", 1.3, None)},
    "efficientvit": {"efficientvit_b0": ("hybrid", 3.4, None), "efficientvit_b1": ("hybrid", 9.1, None)},
    # FastViT's released definition has 4.0 M (timm agrees); the paper's table says 3.6 M (see fastvit.py).
    "fastvit": {"fastvit_t8": ("hybrid", 3.6, 4.0)},
    "tinyvit": {"tinyvit_5m": ("hybrid", 5.4, None)},
    "coat": {"coat_lite_tiny": ("hybrid", 5.7, None)},
}
# Networks whose paper evaluates at 256 rather than 224.
INPUT_256 = {"mobilevit_xxs", "mobilevit_xs", "mobilevit_s", "edgenext_xx_small", "fastvit_t8"}

CASES = [(module, name, *spec) for module, nets in NETWORKS.items() for name, spec in nets.items()]
IDS = [case[1] for case in CASES]


def _builder(module: str, name: str):
    return getattr(importlib.import_module(f"nni_latency.zoo.{module}"), name)


def _params(net: torch.nn.Module) -> float:
    return sum(p.numel() for p in net.parameters()) / 1e6


@pytest.mark.parametrize("module,name,kind,paper_m,expected_m", CASES, ids=IDS)
def test_small_forward(module, name, kind, paper_m, expected_m):
    size = importlib.import_module(f"nni_latency.zoo.{module}").SMALL_SIZES[name]
    net = _builder(module, name)(image_size=size).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, size, size))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("module,name,kind,paper_m,expected_m", CASES, ids=IDS)
def test_parameter_count(module, name, kind, paper_m, expected_m):
    size = 256 if name in INPUT_256 else 224
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        built = _params(_builder(module, name)(image_size=size))
    target = expected_m or paper_m
    assert abs(built - target) / target < 0.05, f"{name}: {built:.2f} M built, {target} M expected"


def test_registry_entries():
    from nni_latency import zoo

    for module, nets in NETWORKS.items():
        mod = importlib.import_module(f"nni_latency.zoo.{module}")
        assert mod.__doc__ and set(mod.SMALL_SIZES) == set(nets), module
        for name, (kind, _, _) in nets.items():
            entry = zoo.get(name)
            assert entry.kind == kind and entry.paper and entry.builder is getattr(mod, name)
            assert entry.input_size == (256 if name in INPUT_256 else 224)
            assert getattr(mod, name).__doc__
    mine = {name for nets in NETWORKS.values() for name in nets}
    assert mine <= set(zoo.names("transformer")) | set(zoo.names("hybrid"))


def _tokens(net: torch.nn.Module, size: int, module_type: type | None = None, modules=()) -> list[int]:
    """Token counts (``shape[1]`` of the first input) seen by calls of ``module_type`` (or ``modules``), in order."""
    seen: list[int] = []
    targets = [m for m in net.modules() if type(m) is module_type] if module_type else list(modules)
    hooks = [m.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1])) for m in targets]
    with torch.no_grad():
        net.eval()(torch.randn(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return list(dict.fromkeys(seen))


def test_vit_tokens_at_224():
    from nni_latency.zoo import vit

    net = vit.deit_tiny()
    assert net.pos_embed.shape == (1, 197, 192)
    assert _tokens(net, 224, type(net.blocks[0].attn)) == [197]


def test_swin_windows_at_224():
    from nni_latency.zoo import swin

    blocks = [m for m in swin.swin_tiny().modules() if isinstance(m, swin.SwinBlock)]
    assert len(blocks) == 12 and blocks[0].attn.relative_position_bias_table.shape == (169, 3)
    assert [b.resolution for b in blocks] == [56] * 2 + [28] * 2 + [14] * 6 + [7] * 2
    assert all(b.window == 7 and b.padded == b.resolution for b in blocks)
    assert [b.shift for b in blocks] == [0, 3, 0, 3, 0, 3, 0, 3, 0, 3, 0, 0]  # stage 4 is one window: no shift
    assert [tuple(b.attn_mask.shape) for b in blocks if b.shift] == [(64, 49, 49), (16, 49, 49)] + [(4, 49, 49)] * 3


def test_pvt_tokens_at_224():
    from nni_latency.zoo import pvt

    net = pvt.pvt_v2_b0()
    assert _tokens(net, 224, pvt.SRAttention) == [3136, 784, 196, 49]
    # spatial reduction 8/4/2/1 brings every stage's keys and values to 7x7
    kv = [m.kv for m in net.modules() if isinstance(m, pvt.SRAttention)]
    assert _tokens(net, 224, modules=kv) == [49]


def test_levit_bias_tables_at_224():
    from nni_latency.zoo import levit

    shapes = [tuple(m.attention_bias_idxs.shape) for m in levit.levit_128s().modules()
              if isinstance(m, _attention.AttentionBias)]
    assert list(dict.fromkeys(shapes)) == [(196, 196), (49, 196), (49, 49), (16, 49), (16, 16)]


def test_hybrid_tokens_at_paper_size():
    from nni_latency.zoo import coat, efficientformer, mobilevit, tinyvit

    assert _tokens(efficientformer.efficientformer_l1(), 224, efficientformer.Attention) == [49]
    assert _tokens(coat.coat_lite_tiny(), 224, coat.SerialBlock) == [3137, 785, 197, 50]
    # MobileViT at 256: 2x2 patches -> 4 pixel sequences of 16x16, 8x8, 4x4 patches
    assert _tokens(mobilevit.mobilevit_xxs(), 256, mobilevit.Attention) == [256, 64, 16]
    # TinyViT: windows of 7x7 on 28x28, 14x14 on 14x14, 7x7 on 7x7
    assert _tokens(tinyvit.tinyvit_5m(), 224, tinyvit.Attention) == [49, 196]


def test_mobilevit_resizes_at_224():
    from nni_latency.zoo import mobilevit

    # 224 leaves 7x7 in the last stage: resized to 8x8 for 2x2 patches (16 of them), as the official code does
    assert _tokens(mobilevit.mobilevit_xxs(), 224, mobilevit.Attention) == [196, 49, 16]


def test_attention_bias_cache_follows_mode():
    bias = _attention.AttentionBias(num_heads=2, resolution=3)
    bias.eval()
    first = bias()
    assert first.shape == (2, 9, 9) and bias() is first  # gathered once in eval mode
    with torch.no_grad():
        bias.attention_biases.add_(1.0)
    bias.train()
    assert torch.equal(bias(), first + 1.0)
    bias.eval()
    assert torch.equal(bias(), first + 1.0)


@pytest.mark.parametrize("module,name,size", [("swin", "swin_tiny", 100), ("vit", "deit_tiny", 200),
                                              ("levit", "levit_128s", 72)], ids=["swin", "vit", "levit"])
def test_sizes_that_do_not_fit_are_refused(module, name, size):
    with pytest.raises(ValueError, match="multiple of"):
        _builder(module, name)(image_size=size)
