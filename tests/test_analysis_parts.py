"""Analysis of transformers: one row per encoder block by default, and every row's predicted time split into
attention, MLP and other (``nni_latency.analysis.parts``), in the table, the JSON and the plot. Small networks only."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nni_latency.analysis.network import attribute_features, record_calls, runnable_blocks
from nni_latency.analysis.parts import auto_blocks, classify, encoder_blocks
from nni_latency.analysis.report import REST, analyze_network
from nni_latency.cli.dispatch import main
from nni_latency.model.model import LatencyModel
from nni_latency.model.regressors import RelativeLinearModel
from nni_latency.model.terms import TERM_ROLES
from nni_latency.plots import plot_report
from nni_latency.zoo._attention import Mlp, MultiHeadAttention
from nni_latency.zoo.vit import VisionTransformer

pytestmark = pytest.mark.filterwarnings("ignore::nni_latency.model.model.OutOfRangeWarning",
                                        "ignore::nni_latency.count.features.UncoveredOperatorWarning")

IMAGE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def fitted_model() -> LatencyModel:
    """A model with a positive cost on every feature (fitted on CNN blocks, attention terms would be 0)."""
    names = RelativeLinearModel.feature_names
    weights = {name: {"compute": 1e-6, "memory": 3e-6, "overhead": 0.01}[TERM_ROLES[name]] for name in names}
    regressor = RelativeLinearModel.from_state({"features": list(names), "weights": weights, "intercept": 0.02})
    return LatencyModel(regressor, device={"name": "synthetic", "type": "cpu", "threads": 1})


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return VisionTransformer(image_size=32, num_classes=10, dim=16, depth=2, num_heads=2)


class TorchEncoder(nn.Module):
    """An encoder layer on ``nn.MultiheadAttention``, called with keyword arguments (as torch's own layers are)."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.feed_forward = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        y = self.norm(x)
        x = x + self.self_attn(y, y, y, need_weights=False)[0]
        return x + self.feed_forward(x)


class GridBlock(nn.Module):
    """A block called with its token grid's height and width (as PVT's are): it cannot be run alone."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.attn = MultiHeadAttention(dim, 2)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x, height, width):
        return x + self.mlp(x + self.attn(x))


class GridStage(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 8, 8)
        self.blocks = nn.ModuleList([GridBlock(), GridBlock()])

    def forward(self, x):
        x = self.embed(x)
        height, width = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = block(x, height, width)
        return x


class GridNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stage = GridStage()
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.stage(x).mean(1))


@pytest.mark.parametrize("name, module, part", [
    ("blocks.0.attn", MultiHeadAttention(16, 2), "attention"),
    ("layer.self_attn", nn.MultiheadAttention(16, 2), "attention"),
    ("layers.0.token_mixer", type("WindowAttention", (nn.Module,), {})(), "attention"),
    ("stages.0.xca", type("XCA", (nn.Module,), {})(), "attention"),
    ("blocks.0.mlp", Mlp(16, 32), "mlp"),
    ("layer.ffn", nn.Sequential(nn.Conv2d(16, 32, 1), nn.GELU(), nn.Conv2d(32, 16, 1)), "mlp"),
    ("blocks.1.m", nn.Sequential(nn.Linear(16, 32), nn.Hardswish(), nn.Dropout(), nn.Linear(32, 16)), "mlp"),
    ("blocks.0.token_mixer", nn.AvgPool2d(3, 1, 1), None),
    ("blocks.0.conv", nn.Sequential(nn.Conv2d(16, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3)), None),
    ("norm", nn.LayerNorm(16), None),
], ids=["by-type", "torch-mha", "type-name", "xca", "mlp-type", "ffn-name", "unnamed-linear-act-linear",
        "pooling-mixer", "conv-pair", "norm"])
def test_classify(name, module, part):
    assert classify(name, module) == part


def test_encoder_blocks_of_a_vit_are_its_blocks():
    network = tiny_vit()
    assert encoder_blocks(network) == ["blocks.0", "blocks.1"]
    rows, encoders = auto_blocks(network)
    assert [name for name, _ in rows] == ["patch_embed", "blocks.0", "blocks.1", "norm", "head"]


@pytest.fixture(scope="module")
def vit_report(fitted_model):
    return analyze_network(tiny_vit(), IMAGE, fitted_model)


def test_a_transformer_is_reported_per_encoder_block(vit_report):
    assert {row.name for row in vit_report.blocks} == {"patch_embed", "blocks.0", "blocks.1", "norm", "head", REST}
    assert vit_report.split == "2 encoder blocks and 3 others"


def test_parts_partition_every_row_and_the_network(vit_report):
    for row in vit_report.blocks:
        assert sum(row.parts.values()) == pytest.approx(row.predicted_ms, abs=1e-9)
    assert sum(vit_report.parts.values()) == pytest.approx(vit_report.total_predicted_ms)
    encoder = next(row for row in vit_report.blocks if row.name == "blocks.0")
    assert encoder.parts["attention"] > 0 and encoder.parts["mlp"] > 0 and encoder.parts["other"] > 0  # 2 norms
    embed = next(row for row in vit_report.blocks if row.name == "patch_embed")
    assert embed.parts["attention"] == embed.parts["mlp"] == 0


def test_parts_are_priced_with_the_models_own_cost_terms(vit_report, fitted_model):
    network = tiny_vit()
    counted = attribute_features(network, IMAGE, [("blocks.0.attn", network.blocks[0].attn)], fitted_model)
    whole, _ = record_calls(network, [], IMAGE, fitted_model.count)
    expected = fitted_model.cost_terms(whole.as_dict()).predict(counted["blocks.0.attn"].as_dict(),
                                                                include_intercept=False)
    row = next(row for row in vit_report.blocks if row.name == "blocks.0")
    assert row.parts["attention"] == pytest.approx(expected)


def test_counting_parts_leaves_the_network_as_it_was(fitted_model):
    network = tiny_vit().train()
    attribute_features(network, IMAGE, [("blocks.0.attn", network.blocks[0].attn)], fitted_model)
    assert "forward" not in vars(network.blocks[0].attn) and network.training and network.blocks[0].attn.training


def test_an_attention_called_with_keyword_arguments_is_counted(fitted_model):
    network = nn.Sequential(TorchEncoder(), TorchEncoder())
    report = analyze_network(network, (1, 8, 16), fitted_model)
    assert {row.name for row in report.blocks} == {"0", "1", REST}
    assert report.parts["attention"] > 0 and report.parts["mlp"] > 0


def test_blocks_that_cannot_run_alone_are_reported_as_their_stage(fitted_model):
    report = analyze_network(GridNet(), IMAGE, fitted_model)
    assert {row.name for row in report.blocks} == {"stage", "head", REST}
    assert report.parts["attention"] > 0


def test_runnable_blocks_keeps_runnable_ones(fitted_model):
    network = GridNet()
    everything = [(name, module) for name, module in network.named_modules() if name]
    _, calls = record_calls(network, everything, IMAGE, fitted_model.count, strict=False)
    assert calls["stage.blocks.0"] is None and calls["stage.blocks"] == []
    blocks = [("stage.embed", network.stage.embed), ("stage.blocks.0", network.stage.blocks[0]),
              ("head", network.head)]
    assert [name for name, _ in runnable_blocks(network, blocks, calls)] == ["stage", "head"]


def test_an_explicit_depth_still_cuts_a_transformer_by_depth(fitted_model):
    report = analyze_network(tiny_vit(), IMAGE, fitted_model, depth=1)
    assert {row.name for row in report.blocks} == {"patch_embed", "blocks", "norm", "head", REST}
    assert report.split == "depth 1 (4)"


def test_a_cnn_has_no_parts_columns(fitted_model):
    network = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    report = analyze_network(network, IMAGE, fitted_model)
    assert not report.has_parts and "attn" not in report.format_table().splitlines()[1]
    assert report.to_dict()["parts"]["other_share"] == pytest.approx(1.0)


def test_table_json_and_plot_show_the_parts(vit_report, tmp_path):
    table = vit_report.format_table()
    assert "attn" in table.splitlines()[1] and "by module: attention " in table
    data = json.loads(json.dumps(vit_report.to_dict()))
    assert {"attention_ms", "mlp_ms", "other_ms", "attention_share"} <= set(data["parts"])
    assert all({"attention_ms", "mlp_ms", "other_ms"} <= set(row) for row in data["blocks"])
    assert plot_report(vit_report, tmp_path / "vit.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_analyzes_a_zoo_transformer(fitted_model, tmp_path, capsys):
    fitted_model.save(tmp_path / "model.json")
    out = tmp_path / "deit.json"
    assert main(["analyze", "zoo:deit_tiny", "--input-shape", "1,3,32,32", "--model", str(tmp_path / "model.json"),
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "12 encoder blocks and 3 others" in printed and "by module: attention" in printed
    rows = {row["name"]: row for row in json.loads(out.read_text())["blocks"]}
    assert {f"blocks.{i}" for i in range(12)} <= set(rows) and rows["blocks.3"]["attention_ms"] > 0
