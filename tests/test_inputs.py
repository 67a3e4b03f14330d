"""Inputs as users have them: a dtype in ``--input-shape`` (``1,64:int64``, several inputs separated by ``;``) and
in the API (``LatencyModel.count`` / ``predict_module``); integer token ids drawn below the embeddings' sizes; the
message for a network that takes token ids; and a ``torch.jit.script`` module refused in one line."""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace

import pytest
import torch

from nni_latency.cli.dispatch import main
from nni_latency.count.inputs import (DEFAULT_INTEGER_BOUND, InputSpec, format_inputs, input_specs, integer_bound,
                                      make_inputs)

# A tiny text classifier: token ids -> embedding -> layer norm -> mean -> linear.
NETS = '''\
import torch
from torch import nn


class TokenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(1000, 32)
        self.position = nn.Embedding(64, 32)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 4)

    def forward(self, ids):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        return self.head(self.norm(self.embed(ids) + self.position(positions)).mean(1))


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)

    def forward(self, ids, mask):
        return (self.embed(ids) * mask.unsqueeze(-1)).sum(1)


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x)


def scripted():
    return torch.jit.script(Conv().eval())


def traced():
    return torch.jit.trace(Conv().eval(), torch.randn(1, 3, 16, 16))


class HoldsScripted(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = torch.jit.script(Conv().eval())

    def forward(self, x):
        return self.inner(x)
'''


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS, encoding="utf-8")
    namespace: dict = {}
    exec(compile(NETS, str(path), "exec"), namespace)
    return SimpleNamespace(path=path, **{k: v for k, v in namespace.items() if not k.startswith("_")})


@pytest.fixture
def model_path(tmp_path, synthetic_model):
    path = tmp_path / "device_model.json"
    synthetic_model.save(path)
    return path


def _run(argv: list[str]) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


# ---- the forms an input takes

@pytest.mark.parametrize("given, expected", [
    ((1, 3, 8, 8), [((1, 3, 8, 8), None)]),
    ([(1, 2), (3, 4)], [((1, 2), None), ((3, 4), None)]),
    (((1, 64), torch.int64), [((1, 64), torch.int64)]),
    (((1, 64), "int64"), [((1, 64), torch.int64)]),
    ([((1, 64), torch.int64), ((1, 64), torch.bool)], [((1, 64), torch.int64), ((1, 64), torch.bool)]),
    ("1,64:int64;1x64:bool", [((1, 64), torch.int64), ((1, 64), torch.bool)]),
    ("1,3,8,8", [((1, 3, 8, 8), None)]),
    (InputSpec((2, 8), "long"), [((2, 8), torch.int64)]),
], ids=["shape", "shapes", "pair", "pair-name", "pairs", "text", "text-float", "spec"])
def test_every_form_of_an_input(given, expected):
    specs = input_specs(given)
    assert [(tuple(spec), spec.dtype) for spec in specs] == expected


@pytest.mark.parametrize("given, message", [
    ("1,64:int65", "unknown dtype 'int65'"),
    ("1,0:int64", "malformed"),
    ((1, -3), "is invalid"),
    (((1, 64), "int65"), "'int65' is malformed"),
])
def test_a_bad_input_is_one_line(given, message):
    with pytest.raises(ValueError, match=message) as raised:
        input_specs(given)
    assert "\n" not in str(raised.value)


def test_integer_inputs_are_drawn_below_their_bound_floats_as_before():
    ids, mask, image = make_inputs([InputSpec((4, 256), "int64", high=7), InputSpec((4, 256), "bool"), (1, 3, 4, 4)])
    assert ids.dtype == torch.int64 and 0 <= int(ids.min()) and int(ids.max()) < 7
    assert mask.dtype == torch.bool and 0 < int(mask.sum()) < mask.numel()
    assert image.dtype == torch.float32
    before = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))  # the stream a float input used
    assert torch.equal(make_inputs((1, 3, 4, 4))[0], before)
    unbounded = make_inputs(InputSpec((1, 512), "int64"))[0]
    assert int(unbounded.max()) < DEFAULT_INTEGER_BOUND


def test_the_bound_is_the_smallest_embedding(nets):
    assert integer_bound(nets.TokenNet()) == 64  # below the position table too: every id indexes every table
    assert integer_bound(nets.Conv()) == DEFAULT_INTEGER_BOUND
    assert format_inputs([InputSpec((1, 64), "int64"), (1, 3)]) == "1,64:int64;1,3"


# ---- the API and the command line give the same number

def test_token_ids_are_counted_through_the_api_and_the_command_line(nets, synthetic_model, model_path):
    api = synthetic_model.predict_module(nets.TokenNet(), ((1, 48), torch.int64))
    assert api == pytest.approx(synthetic_model.predict_module(nets.TokenNet(), "1,48:int64"))
    features = synthetic_model.count(nets.TokenNet(), InputSpec((1, 48), torch.int64))
    assert features.op_counts.get("embedding", 0) == 2
    result = _run(["predict", "--model", str(model_path), f"{nets.path}:TokenNet", "--input-shape", "1,48:int64"])
    assert result.code == 0, result.err
    assert result.out.startswith(f"{nets.path}:TokenNet on input 1,48:int64: {api:.4f} ms predicted")


def test_several_inputs_of_several_dtypes(nets, synthetic_model, model_path):
    result = _run(["predict", "--model", str(model_path), f"{nets.path}:Masked", "--input-shape",
                   "2,10:int64;2,10:float32"])
    assert result.code == 0, result.err
    assert "on input 2,10:int64;2,10:float32:" in result.out


def test_analyze_keeps_token_ids_integers_down_to_the_blocks(nets, model_path, tmp_path):
    import json

    report = tmp_path / "report.json"
    result = _run(["analyze", f"{nets.path}:TokenNet", "--model", str(model_path), "--input-shape", "1,48:int64",
                   "--json", str(report)])
    assert result.code == 0, result.err
    assert result.out.startswith("TokenNet on 1x48:int64, blocks:")
    rows = {row["name"]: row for row in json.loads(report.read_text())["blocks"]}
    assert rows["embed"]["input_shape"] == [1, 48] and rows["embed"]["predicted_ms"] > 0
    assert json.loads(report.read_text())["input"] == "1,48:int64"


@pytest.mark.parametrize("target, shape, words", [
    ("TokenNet", "1,48", ["does not fit TokenNet", "TokenNet takes token ids B,N, integers",
                          "--input-shape 1,128:int64", "drawn in 0..63"]),
    ("scripted", "1,3,16,16", ["Conv is a torch.jit.script module, which cannot be counted",
                               "give the nn.Module before torch.jit.script"]),
    ("HoldsScripted", "1,3,16,16", ["HoldsScripted's submodule 'inner' (Conv) is a torch.jit.script module"]),
], ids=["floats-for-token-ids", "scripted", "holds-a-scripted-module"])
def test_what_cannot_be_counted_is_said_in_one_line(nets, model_path, target, shape, words):
    for command in ("predict", "analyze"):
        argv = [command, "--model", str(model_path), f"{nets.path}:{target}", "--input-shape", shape]
        result = _run(argv)
        lines = [line for line in result.err.strip().splitlines() if ": warning: " not in line]  # torch's on jit
        assert result.code == 2 and len(lines) == 1 and lines[0].startswith(f"nni-latency {command}: error: "), \
            result.err
        for word in words:
            assert word in lines[0], (command, lines[0])


def test_the_api_refuses_a_scripted_module_and_counts_a_traced_one(nets, synthetic_model):
    with pytest.raises(ValueError, match="torch.jit.script module"):
        synthetic_model.predict_module(nets.scripted(), (1, 3, 16, 16))
    assert synthetic_model.predict_module(nets.traced(), (1, 3, 16, 16)) == pytest.approx(
        synthetic_model.predict_module(nets.Conv(), (1, 3, 16, 16)))


def test_token_ids_are_measured_with_valid_ids_in_every_rotated_copy():
    from nni_latency.count.inputs import random_like

    ids = torch.randint(0, 50, (2, 48))
    generator = torch.Generator().manual_seed(3)
    copies = [random_like(ids, generator) for _ in range(20)]
    assert all(c.dtype == torch.int64 and c.min() >= 0 and c.max() < 50 for c in copies)
    assert random_like(torch.ones(3, dtype=torch.bool), generator).dtype == torch.bool


def test_measuring_token_ids_under_the_rotate_protocol_times_them(nets, model_path):
    result = _run(["analyze", f"{nets.path}:TokenNet", "--model", str(model_path), "--input-shape", "1,48:int64",
                   "--measure"])
    assert result.code == 0, result.err
    assert "measured whole network" in result.out
