"""Shared fixtures: a device model fitted on synthetic latencies (no timing), and a tiny profiling config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nni_latency.fit.fitting import MIN_POINTS
from nni_latency.measure import allocator
from nni_latency.measure.allocator import apply_allocator_policy
from nni_latency.model.model import LatencyModel
from nni_latency.model.regressors import RelativeLinearModel
from nni_latency.runtimes.protocol import MeasurementProtocol
from nni_latency.runtimes.torch.counting import extract_features
from nni_latency.runtimes.torch.operators import FEATURE_ROLES
from nni_latency.suite.blocks import BlockSpec

# One intra-op thread: results do not depend on the machine's core count, and OpenMP's spin-waiting cannot
# stall a test when another process holds the other core (training steps slowed 100x that way here).
torch.set_num_threads(1)
# The tests measure under the default protocol, which asks for the steady allocator: set it for the test
# process, as the command line does for its own (library code never does).
apply_allocator_policy(MeasurementProtocol())

# The synthetic "device": 1e-6 ms per FLOP, 2e-6 ms per element moved by memory-bound ops, 0.01 ms per
# op call, 0.02 ms fixed; written over the features relative_linear uses, so that model fits it exactly.
_ROLE_WEIGHTS = {"compute": 1e-6, "overhead": 0.01}
SYNTHETIC_WEIGHTS = {name: 2e-6 if name == "mem_elements" else _ROLE_WEIGHTS.get(FEATURE_ROLES[name], 0.0)
                     for name in RelativeLinearModel.feature_names}
SYNTHETIC_INTERCEPT = 0.02

# As few blocks as the fit (with its 5-fold cross-validation) accepts, and tiny ones, timed for 10-50 ms each.
TINY_PROFILE_COUNT = max(14, MIN_POINTS)
TINY_PROFILE_YAML = f"""\
seed: 0
count: {TINY_PROFILE_COUNT}
channels: [8, 32]
resolutions: [7, 14]
timing:
  min_run_time: 0.01
  max_run_time: 0.05
  working_set_mb: 4
"""


def synthetic_latency(features) -> float:
    """Latency of the synthetic device for one feature row (``BlockFeatures`` or a dict)."""
    row = features.as_dict() if hasattr(features, "as_dict") else features
    return SYNTHETIC_INTERCEPT + sum(weight * row[name] for name, weight in SYNTHETIC_WEIGHTS.items())


def _random_specs(count: int, seed: int) -> list[BlockSpec]:
    rng = np.random.default_rng(seed)
    families = ["mbconv", "conv_bn_relu", "dw_separable", "basic", "bottleneck", "shuffle"]
    specs = []
    for i in range(count):
        family = families[i % len(families)]
        c_in = int(rng.choice([8, 16, 24, 32]))
        c_out = c_in if family == "shuffle" else int(rng.choice([16, 32, 48]))
        specs.append(BlockSpec(family, c_in, c_out, resolution=int(rng.choice([7, 14, 28])),
                               stride=int(rng.choice([1, 2])), kernel=int(rng.choice([3, 5])),
                               expansion=int(rng.choice([1, 3, 6])) if family == "mbconv" else 1,
                               groups=2 if family in ("conv_bn_relu", "bottleneck") and i % 4 == 0 else 1,
                               se=family == "mbconv" and i % 3 == 0))
    return specs


@pytest.fixture(scope="session")
def synthetic_dataset():
    """(specs, feature rows, latencies_ms) of 30 random blocks under the synthetic device (session-wide)."""
    torch.manual_seed(0)
    specs = _random_specs(30, seed=0)
    rows = [extract_features(spec.build(), spec.input_shape) for spec in specs]
    latencies = [synthetic_latency(row) for row in rows]
    return specs, rows, latencies


@pytest.fixture
def synthetic_model(synthetic_dataset) -> LatencyModel:
    """A fresh ``relative_linear`` LatencyModel fitted on ``synthetic_dataset`` (no timing involved)."""
    _, rows, latencies = synthetic_dataset
    device = {"name": "synthetic", "type": "cpu", "threads": 1, "dtype": "fp32", "batch": 1, "protocol": "rotate"}
    return LatencyModel.fit(rows, latencies, kind="relative_linear", device=device)


@pytest.fixture(scope="session")
def tiny_profile_yaml() -> str:
    """Text of a YAML profiling config small enough to measure on CPU in a few seconds (for wider scopes)."""
    return TINY_PROFILE_YAML


@pytest.fixture
def tiny_profile_config(tmp_path, tiny_profile_yaml):
    """Path of a YAML profiling config small enough to measure on CPU in a few seconds."""
    path = tmp_path / "tiny_profile.yaml"
    path.write_text(tiny_profile_yaml, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory, tiny_profile_yaml):
    """A folder profiled once for the session with the tiny config: ``device_model.json`` and its own rows
    ``microbench.jsonl`` (read-only by convention: copy what a test changes)."""
    import contextlib
    import io

    from nni_latency.cli.dispatch import main

    root = tmp_path_factory.mktemp("tiny_profile")
    config = root / "tiny.yaml"
    config.write_text(tiny_profile_yaml, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["profile", "--config", str(config), "--output-dir", str(root / "run"), "--no-progress"])
    assert code == 0, err.getvalue()
    return root / "run"


@pytest.fixture
def allocator_never_enabled(monkeypatch):
    """A process that has not enabled the steady allocator policy, where enabling it fails the test."""
    monkeypatch.setattr(allocator, "_steady_allocator_state", None)
    monkeypatch.setattr(allocator, "use_steady_allocator", lambda: pytest.fail("the allocator policy was enabled"))


def pytest_configure(config):
    config.addinivalue_line("markers", "engine: runs NNI's experiment engine (node manager, trial processes; about a "
                                       "minute); deselect with -m 'not engine'")
