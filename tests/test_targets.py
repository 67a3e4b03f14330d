"""Loading networks named as ``file.py:callable`` / ``package.module:callable``, and parsing input shapes."""

import re
import textwrap

import pytest
from torch import nn

from nni_latency.cli.targets import load_module_target, load_target_object, parse_input_shape

NETWORKS = textwrap.dedent("""
    from torch import nn
    from helper import WIDTH  # a sibling file, imported as a script would

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, WIDTH, 3)

        def forward(self, x):
            return self.conv(x)

    def make_net():
        return Net()

    def make_int():
        return 42

    def needs_args(width):
        return nn.Conv2d(3, width, 3)

    def broken():
        raise RuntimeError("weights file not found")

    instance = nn.Sequential(nn.Conv2d(3, 4, 1))
    registry = {"net": make_net}
    CONSTANT = 3

    class Zoo:
        small = staticmethod(make_net)
""")


@pytest.fixture
def target_dir(tmp_path, monkeypatch):
    (tmp_path / "helper.py").write_text("WIDTH = 8\n")
    (tmp_path / "nets.py").write_text(NETWORKS)
    (tmp_path / "bad_syntax.py").write_text("def oops(:\n")
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("from torch import nn\n\ndef tiny():\n    return nn.Conv2d(3, 2, 1)\n")
    (package / "needs_missing.py").write_text("import not_installed_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("attribute, expected_type", [
    ("Net", "Net"),                    # a class, called with no arguments
    ("make_net", "Net"),               # a factory
    ("instance", "Sequential"),        # a module instance, used as is
    ("Zoo.small", "Net"),              # a dotted attribute path
], ids=["class", "factory", "instance", "dotted"])
def test_loads_a_file_target(target_dir, attribute, expected_type):
    module = load_module_target(f"{target_dir / 'nets.py'}:{attribute}")
    assert isinstance(module, nn.Module) and type(module).__name__ == expected_type


def test_loads_a_package_module_target(target_dir):
    module = load_module_target("mypkg.models:tiny")
    assert isinstance(module, nn.Conv2d) and module.out_channels == 2


def test_loading_twice_reuses_the_imported_file(target_dir):
    spec = f"{target_dir / 'nets.py'}:registry"
    assert load_target_object(spec) is load_target_object(spec)


@pytest.mark.parametrize("spec, message", [
    ("{dir}/nets.py", "names no callable"),
    ("{dir}/missing.py:net", "does not exist"),
    ("no_such_package_xyz.models:net", "cannot import module 'no_such_package_xyz.models'"),
    ("mypkg.needs_missing:net", "imports 'not_installed_dependency_xyz'"),
    ("{dir}/nets.py:nope", "has no attribute 'nope'; candidates there: Net, make_net"),
    ("{dir}/nets.py:make_int", "returned a value of type int, not a torch.nn.Module"),
    ("{dir}/nets.py:CONSTANT", "is a value of type int, not an nn.Module"),
    ("{dir}/nets.py:needs_args", "calling"),
    ("{dir}/nets.py:broken", "RuntimeError: weights file not found"),
    ("{dir}/bad_syntax.py:oops", "importing target file"),
], ids=["no-colon", "file-missing", "module-missing", "dependency-missing", "attribute-missing", "not-a-module",
        "not-callable", "needs-arguments", "factory-raises", "syntax-error"])
def test_bad_targets_give_one_line_errors(target_dir, spec, message):
    with pytest.raises(ValueError) as error:
        load_module_target(spec.format(dir=target_dir))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("text, dims, expected", [
    ("1,3,224,224", 4, (1, 3, 224, 224)),
    (" 2, 3, 32, 32 ", 4, (2, 3, 32, 32)),
    ("1x3x64x64", 4, (1, 3, 64, 64)),
    ("1,16", None, (1, 16)),
])
def test_parse_input_shape(text, dims, expected):
    assert parse_input_shape(text, dims) == expected


@pytest.mark.parametrize("text, message", [
    ("1,3,a,224", "malformed"),
    ("1,3,0,224", "malformed"),
    ("", "malformed"),
    ("1,3,224", "has 3 size(s), 4 are needed"),
])
def test_parse_input_shape_rejects(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_input_shape(text)


# ---- zoo:NAME targets and what a network expects

def test_a_zoo_target_builds_the_network_for_the_input_resolution():
    from nni_latency.cli.targets import default_input_shape

    assert default_input_shape("zoo:deit_tiny") == (1, 3, 224, 224)
    assert default_input_shape("nets.py:net") is None
    network = load_module_target("zoo:deit_tiny", (1, 3, 64, 64))
    assert network.pos_embed.shape[1] == 17  # 4x4 patches and the class token


@pytest.mark.parametrize("spec, shape, message", [
    ("zoo:deit_tny", None, "no zoo network named 'deit_tny' (did you mean 'deit_tiny'?); known: "),
    ("zoo:deit_tiny", (1, 3, 50, 50), "cannot be built for input 1,3,50,50"),
], ids=["unknown-name", "bad-resolution"])
def test_bad_zoo_targets_give_one_line_errors(spec, shape, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        load_module_target(spec, shape)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("module, spec, expected", [
    (nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), None, "an image N,3,H,W (e.g. 1,3,224,224)"),
    (nn.Sequential(nn.LayerNorm(192), nn.Linear(192, 10)), None, "tokens B,N,192 (e.g. 1,196,192)"),
    (nn.Linear(64, 10), None, "tokens B,N,64 (e.g. 1,196,64)"),
    (nn.Sequential(nn.ReLU()), None, None),
    (nn.Identity(), "zoo:resnet18", "an image 1,3,224,224 (N,C,H,W)"),
], ids=["conv", "layer-norm", "linear", "nothing-to-say", "zoo"])
def test_expected_input(module, spec, expected):
    from nni_latency.cli.targets import expected_input

    assert expected_input(module, spec) == expected
