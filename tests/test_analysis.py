"""Bottleneck analysis: block splitting, the (rest) row, cost-term classification, ranking, the CLI."""

import json
import math
import re
import textwrap
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nni_latency.analysis.network import select_blocks
from nni_latency.analysis.report import REST, LatencyReport, analyze_network
from nni_latency.cli.dispatch import main
from nni_latency.count.features import ROLES
from nni_latency.measure import allocator
from nni_latency.measure.allocator import AllocatorWarning
from nni_latency.model.model import LatencyModel
from nni_latency.model.regressors import FlopsModel, RelativeLinearModel, TwoRegimeModel
from nni_latency.model.terms import TERM_ROLES, dominant_role
from nni_latency.plots import plot_report
from nni_latency.runtimes.torch import timing
from nni_latency.runtimes.torch.counting import extract_features
from nni_latency.runtimes.torch.operators import FEATURE_NAMES
from nni_latency.suite.blocks import BlockSpec, ConvBNAct

SHAPE = (1, 3, 16, 16)

# Test networks are deliberately tiny; extrapolation warnings about them are expected.
pytestmark = pytest.mark.filterwarnings("ignore::nni_latency.model.model.OutOfRangeWarning")


# The synthetic device, written by what each role means: arithmetic, elements moved, op calls (and a fixed cost).
DEVICE_ROLES = {"compute": lambda f: 1e-6 * f["flops"], "memory": lambda f: 2e-6 * f["mem_elements"],
                "overhead": lambda f: 0.01 * (f["conv_ops"] + f["mem_ops"]) + 0.02}


def _synthetic_latency(f):
    return sum(cost(f) for cost in DEVICE_ROLES.values())


@pytest.fixture(scope="module")
def fitted_model():
    """A relative_linear model fitted on 30 random blocks with synthetic latencies (nothing is measured)."""
    rng = np.random.default_rng(0)
    families = ["mbconv", "conv_bn_relu", "dw_separable", "basic", "bottleneck"]
    rows = []
    for index in range(30):
        family = families[index % len(families)]
        c_in = int(rng.choice([8, 16, 32]))
        spec = BlockSpec(family, c_in, c_in * int(rng.choice([1, 2])), int(rng.choice([8, 16, 32])),
                         stride=int(rng.choice([1, 2])), expansion=3 if family == "mbconv" else 1)
        torch.manual_seed(0)
        rows.append(extract_features(spec.build(), spec.input_shape).as_dict())
    return LatencyModel.fit(rows, [_synthetic_latency(f) for f in rows], kind="relative_linear",
                            device={"name": "synthetic", "type": "cpu", "device": "cpu", "threads": 1})


# Models of every kind built from parameters, so each kind's cost split is checked without fitting.
MODELS = {
    "relative_linear": LatencyModel(RelativeLinearModel.from_state({
        "features": list(RelativeLinearModel.feature_names),
        "weights": {name: {"compute": 1e-6, "memory": 3e-6, "overhead": 0.01}[TERM_ROLES[name]] * (1 + i / 10)
                    for i, name in enumerate(RelativeLinearModel.feature_names)},
        "intercept": 0.03})),
    "two_regime_high": LatencyModel(TwoRegimeModel.from_state(
        {"a": 1e-5, "b": 2e-5, "c": 1e-6, "d": 0.05, "breakpoint": 0.01, "slope": 0.5, "offset": 0.02})),
    "two_regime_low": LatencyModel(TwoRegimeModel.from_state(
        {"a": 1e-5, "b": 2e-5, "c": 1e-6, "d": 0.05, "breakpoint": 1e9, "slope": 0.5, "offset": 0.02})),
    "flops": LatencyModel(FlopsModel.from_state({"c": 1e-6, "d": 0.1})),
}


class Bottlenecked(nn.Module):
    """A light stem, one obviously heavy stage, a shared block called twice, and functional code."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = ConvBNAct(3, 8, 3)
        self.heavy = nn.Sequential(ConvBNAct(8, 64, 3), ConvBNAct(64, 64, 3))
        self.reduce = ConvBNAct(64, 8, 1)
        self.shared = ConvBNAct(8, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.reduce(self.heavy(self.stem(x)))
        x = x + self.shared(self.shared(x))  # a residual add outside every block
        return self.fc(torch.flatten(x.mean((2, 3)), 1))


def _by_name(report):
    return {row.name: row for row in report.blocks}


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_rows_partition_the_whole_network_prediction(kind, depth):
    model, network = MODELS[kind], Bottlenecked()
    report = analyze_network(network, SHAPE, model, depth=depth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = model.predict_one(extract_features(network, SHAPE))
    assert math.isclose(sum(r.predicted_ms for r in report.blocks), whole, rel_tol=1e-9)
    assert math.isclose(report.total_predicted_ms, whole, rel_tol=1e-9)
    assert math.isclose(sum(r.share for r in report.blocks), 1.0, rel_tol=1e-9)
    assert math.isclose(report.blocks[-1].cumulative_share, 1.0, rel_tol=1e-9)
    shares = [r.share for r in report.blocks]
    assert shares == sorted(shares, reverse=True)


def test_rest_row_holds_functional_code_and_the_intercept():
    model = MODELS["relative_linear"]
    rest = _by_name(analyze_network(Bottlenecked(), SHAPE, model))[REST]
    # the residual add and the global mean run in the top-level forward, outside every child module
    assert set(rest.op_counts) == {"add", "mean"}
    assert rest.features["conv_ops"] == 0 and rest.features["mem_ops"] == 2
    expected = model.cost_terms(rest.features).predict(rest.features)
    assert math.isclose(rest.predicted_ms, expected) and rest.predicted_ms > model.parameters["intercept"]


def test_heaviest_block_is_ranked_first(fitted_model):
    report = analyze_network(Bottlenecked(), SHAPE, fitted_model)
    assert report.blocks[0].name == "heavy" and report.blocks[0].bottleneck
    assert report.blocks[0].share > 0.5
    assert [r.name for r in report.bottlenecks] == ["heavy"]


@pytest.mark.parametrize("top, expected", [(1, ["heavy"]), (2, ["heavy", "shared"]), (3, ["heavy", "shared", "reduce"])])
def test_top_k_marks_the_k_heaviest(fitted_model, top, expected):
    report = analyze_network(Bottlenecked(), SHAPE, fitted_model, top=top)
    assert [r.name for r in report.bottlenecks] == expected


def test_block_called_twice_sums_its_calls(fitted_model):
    shared = _by_name(analyze_network(Bottlenecked(), SHAPE, fitted_model))["shared"]
    single = extract_features(ConvBNAct(8, 8, 3), (1, 8, 16, 16)).as_dict()
    assert len(shared.calls) == 2 and shared.input_shape == (1, 8, 16, 16)
    assert shared.features == {name: 2 * single[name] for name in FEATURE_NAMES}
    assert math.isclose(shared.standalone_ms, 2 * fitted_model.predict_one(single))


@pytest.mark.parametrize("depth, names", [
    (1, ["stem", "heavy", "reduce", "shared", "fc"]),
    (2, ["stem.0", "stem.1", "stem.2", "heavy.0", "heavy.1", "reduce.0", "reduce.1", "reduce.2",
         "shared.0", "shared.1", "shared.2", "fc"]),  # fc has no children: it stays as is
])
def test_depth_selects_descendants(depth, names):
    assert [name for name, _ in select_blocks(Bottlenecked(), depth)] == names


def test_named_blocks_leave_the_rest_to_the_rest_row(fitted_model):
    network = Bottlenecked()
    named = analyze_network(network, SHAPE, fitted_model, blocks=["heavy.1", "stem"])
    by_depth = analyze_network(network, SHAPE, fitted_model, depth=1)
    assert {r.name for r in named.blocks} == {"heavy.1", "stem", REST}
    assert math.isclose(named.total_predicted_ms, by_depth.total_predicted_ms, rel_tol=1e-9)
    assert _by_name(named)["heavy.1"].input_shape == (1, 64, 16, 16)
    assert _by_name(named)[REST].features["conv_ops"] == 5  # heavy.0, reduce, shared twice, fc


@pytest.mark.parametrize("blocks, message", [
    (["heavyy"], "no block named 'heavyy' in Bottlenecked (did you mean 'heavy'?); valid names: stem, heavy,"),
    (["heavy", "heavy.0"], "overlap"),
    (["stem", "stem"], "named twice"),
])
def test_bad_block_names(blocks, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        select_blocks(Bottlenecked(), names=blocks)


def test_valid_names_are_truncated():
    network = nn.Sequential(*[nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()) for _ in range(20)])
    with pytest.raises(ValueError, match=r", \.\.\. \(\d+ more\)$"):
        select_blocks(network, names=["nope"])


@pytest.mark.parametrize("kind", list(MODELS))
def test_cost_terms_split_features_into_roles(kind):
    model = MODELS[kind]
    terms = model.cost_terms({name: 1.0 for name in FEATURE_NAMES})
    assert set(terms.coefficients) == set(model.regressor.feature_names)
    for feature in terms.coefficients:
        only = {name: (1e6 if name == feature else 0.0) for name in FEATURE_NAMES}
        split = terms.split(only)
        assert dominant_role(split) == TERM_ROLES[feature], feature
        assert sum(split.values()) == pytest.approx(terms.predict(only, include_intercept=False))
    assert terms.split(dict.fromkeys(FEATURE_NAMES, 0.0), include_intercept=True)["overhead"] == terms.intercept


@pytest.mark.parametrize("kind,feature", [(kind, feature) for kind, model in MODELS.items()
                                           for feature in model.regressor.feature_names])
def test_a_term_moves_only_its_roles_share_of_the_breakdown(kind, feature):
    model = MODELS[kind]
    row = extract_features(ConvBNAct(8, 16, 3), (1, 8, 16, 16)).as_dict()
    raised = row | {feature: row[feature] + 1e3}  # small enough to stay in two_regime's piece
    before, after = ({role: float(values[0]) for role, values in model.breakdown([r]).items()} for r in (row, raised))
    moved = {role: after[role] - before[role] for role in ROLES}
    assert moved.pop(TERM_ROLES[feature]) == pytest.approx(model.predict_one(raised) - model.predict_one(row))
    assert moved == pytest.approx({role: 0.0 for role in moved}, abs=1e-12)


@pytest.mark.parametrize("kind", list(MODELS))
def test_a_block_without_ops_costs_only_overhead(kind):
    empty = dict.fromkeys(FEATURE_NAMES, 0.0)
    split = {role: float(values[0]) for role, values in MODELS[kind].breakdown([empty]).items()}
    assert split == {"compute": 0.0, "memory": 0.0, "overhead": pytest.approx(MODELS[kind].predict_one(empty))}


@pytest.mark.parametrize("spec", [BlockSpec("mbconv", 24, 40, 14, expansion=6), BlockSpec("basic", 16, 16, 28),
                                  BlockSpec("dw_separable", 64, 64, 7)], ids=lambda spec: spec.family)
def test_a_fitted_model_splits_a_new_block_by_role_as_the_device_does(fitted_model, spec):
    # The device's costs are written by role (DEVICE_ROLES) and the model learns them from block totals alone:
    # each role's share of a block it never saw comes back within 5 points.
    features = extract_features(spec.build(seed=0), spec.input_shape).as_dict()
    truth = {role: cost(features) for role, cost in DEVICE_ROLES.items()}
    split = {role: float(values[0]) for role, values in fitted_model.breakdown([features]).items()}
    for role in ROLES:
        assert split[role] / sum(split.values()) == pytest.approx(truth[role] / sum(truth.values()), abs=0.05), role


@pytest.mark.parametrize("kind", list(MODELS))
def test_cost_terms_reproduce_the_model(kind):
    model = MODELS[kind]
    features = extract_features(ConvBNAct(8, 16, 3), (1, 8, 16, 16)).as_dict()
    terms = model.cost_terms(features)
    assert terms.predict(features) == pytest.approx(model.predict_one(features), rel=1e-9)


@pytest.mark.parametrize("kind", ["relative_linear", "flops"])
def test_split_agrees_with_the_models_own_breakdown(kind):
    # For linear kinds a block's standalone breakdown is its row's split plus the intercept.
    model, features = MODELS[kind], extract_features(ConvBNAct(8, 16, 3), (1, 8, 16, 16)).as_dict()
    split = model.cost_terms(features).split(features, include_intercept=True)
    breakdown = {role: float(values[0]) for role, values in model.breakdown([features]).items()}
    assert split == pytest.approx(breakdown, rel=1e-9)


@pytest.mark.parametrize("split, bound", [
    ({"compute": 2.0, "memory": 1.0, "overhead": 0.5}, "compute"),
    ({"compute": 0.2, "memory": 1.0, "overhead": 0.5}, "memory"),
    ({"compute": 0.1, "memory": 0.1, "overhead": 0.5}, "overhead"),
    ({"compute": 0.0, "memory": 0.0, "overhead": 0.0}, "-"),
])
def test_dominant_role(split, bound):
    assert dominant_role(split) == bound


def test_every_model_term_has_a_role():
    for cls in (RelativeLinearModel, TwoRegimeModel, FlopsModel):
        assert set(cls.feature_names) <= set(TERM_ROLES)
    assert set(FEATURE_NAMES) <= set(TERM_ROLES) and set(TERM_ROLES.values()) == set(ROLES)


def test_flops_model_calls_every_conv_block_compute_bound():
    report = analyze_network(Bottlenecked(), SHAPE, MODELS["flops"])
    assert {r.bound for r in report.blocks if r.features["flops"] > 0} == {"compute"}


def test_plot_report_writes_a_png(fitted_model, tmp_path):
    path = plot_report(analyze_network(Bottlenecked(), SHAPE, fitted_model), tmp_path / "plots" / "blocks.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["blocks.png"]  # no temporary file left behind


def test_measure_adds_measured_columns(fitted_model):
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = ConvBNAct(3, 4, 3)
            self.b = ConvBNAct(4, 4, 3)

        def forward(self, x):
            return self.b(self.a(x))

    torch.manual_seed(0)
    report = analyze_network(Tiny(), (1, 3, 8, 8), fitted_model, measure=True,
                     measure_options={"min_run_time": 0.01, "max_run_time": 0.05, "retries": 0,
                                      "working_set_mb": 1.0})
    blocks = [r for r in report.blocks if r.name != REST]
    assert all(r.measured_ms > 0 and math.isfinite(r.error) for r in blocks)
    m = report.measurement
    assert m["total_ms"] > 0 and m["threads"] == 1 and m["device"] == "cpu"
    assert m["blocks_sum_ms"] == pytest.approx(sum(r.measured_ms for r in blocks))
    assert m["error"] == pytest.approx((report.total_predicted_ms - m["total_ms"]) / m["total_ms"])
    assert "meas ms" in report.format_table()


def test_measuring_leaves_the_allocator_policy_and_the_network_alone(fitted_model, allocator_never_enabled):
    network = Bottlenecked().train()
    weights = {name: value.clone() for name, value in network.state_dict().items()}
    with pytest.warns(AllocatorWarning):
        analyze_network(network, SHAPE, fitted_model, measure=True,
                        measure_options={"min_run_time": 0.01, "max_run_time": 0.05, "retries": 0, "working_set_mb": 1.0})
    assert network.training and allocator.steady_allocator_state() is None
    assert all(torch.equal(weights[name], value) for name, value in network.state_dict().items())


# --- the command line -------------------------------------------------------------------------------

NETWORK_FILE = textwrap.dedent("""
    import torch
    from torch import nn
    from nni_latency.suite.blocks import ConvBNAct

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = ConvBNAct(3, 8, 3)
            self.body = nn.Sequential(ConvBNAct(8, 32, 3), ConvBNAct(32, 8, 3))
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(torch.flatten(self.body(self.stem(x)).mean((2, 3)), 1))

    def build():
        torch.manual_seed(0)
        return Net()

    def not_a_network():
        return "resnet"
""")


@pytest.fixture
def cli_files(tmp_path, fitted_model):
    (tmp_path / "nets.py").write_text(NETWORK_FILE)
    fitted_model.save(tmp_path / "model.json")
    return tmp_path


def _analyze_args(files, *extra, target="nets.py:build", shape="1,3,16,16"):
    return ["analyze", f"{files / target.split(':')[0]}:{target.split(':')[1]}", "--input-shape", shape,
            "--model", str(files / "model.json"), *extra]


def test_cli_writes_table_json_and_plot(cli_files, capsys):
    out_json, out_png = cli_files / "report.json", cli_files / "report.png"
    assert main(_analyze_args(cli_files, "--json", str(out_json), "--plot", str(out_png))) == 0
    printed = capsys.readouterr().out
    assert "body" in printed and "(rest)" in printed and "total predicted" in printed
    data = json.loads(out_json.read_text())
    assert {"blocks", "total_predicted_ms", "network", "input_shape", "bottlenecks", "model"} <= set(data)
    keys = {"name", "type", "input_shape", "flops", "acts", "predicted_ms", "share", "cumulative_share", "bound",
            "bottleneck", "calls", "compute_ms", "memory_ms", "overhead_ms", "standalone_ms", "features"}
    assert all(keys <= set(row) for row in data["blocks"])
    assert [row["name"] for row in data["blocks"]][0] == "body"
    assert data["blocks"][0]["input_shape"] == [1, 8, 16, 16] and data["blocks"][0]["type"] == "Sequential"
    assert sum(row["share"] for row in data["blocks"]) == pytest.approx(1.0)
    assert sum(row["predicted_ms"] for row in data["blocks"]) == pytest.approx(data["total_predicted_ms"])
    assert {row["bound"] for row in data["blocks"]} <= {"compute", "memory", "overhead", "-"}
    assert out_png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("extra, rows", [
    (["--depth", "2"], {"stem.0", "stem.1", "stem.2", "body.0", "body.1", "fc", REST}),
    (["--blocks", "body.1,fc"], {"body.1", "fc", REST}),
])
def test_cli_depth_and_blocks(cli_files, tmp_path, extra, rows):
    out = tmp_path / "r.json"
    assert main(_analyze_args(cli_files, *extra, "--json", str(out))) == 0
    assert {row["name"] for row in json.loads(out.read_text())["blocks"]} == rows


@pytest.mark.parametrize("target, shape, extra, message", [
    ("missing.py:build", "1,3,16,16", [], "target file"),
    ("no_such_module_xyz.nets:build", "1,3,16,16", [], "cannot import module 'no_such_module_xyz.nets'"),
    ("nets.py:nope", "1,3,16,16", [], "has no attribute 'nope'"),
    ("nets.py:not_a_network", "1,3,16,16", [], "returned a value of type str, not a torch.nn.Module"),
    ("nets.py:build", "1,5,16,16", [], "input shape 1,5,16,16 does not fit Net"),
    ("nets.py:build", "1,3,16", [], "Net takes an image N,3,H,W"),  # any rank parses; the network decides
    ("nets.py:build", "1,3,x6,16", [], "is malformed"),
    ("nets.py:build", "1,3,16,16", ["--blocks", "body.9"], "no block named 'body.9' in Net"),
    ("nets.py:build", "1,3,16,16", ["--depth", "0"], "--depth must be at least 1"),
], ids=["file-missing", "module-missing", "attribute-missing", "not-a-module", "shape-rejected",
        "shape-3d", "shape-malformed", "unknown-block", "bad-depth"])
def test_cli_bad_input_is_one_line(cli_files, capsys, target, shape, extra, message):
    if target.startswith("no_such"):
        args = ["analyze", target, "--input-shape", shape, "--model", str(cli_files / "model.json"), *extra]
    else:
        args = _analyze_args(cli_files, *extra, target=target, shape=shape)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nni-latency analyze: error:") and message in err and "\n" not in err


def test_report_round_trips_through_json(fitted_model):
    report = analyze_network(Bottlenecked(), SHAPE, fitted_model)
    assert isinstance(report, LatencyReport)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["total_predicted_ms"] == pytest.approx(report.total_predicted_ms)
    assert data["bottlenecks"] == [r.name for r in report.bottlenecks]
