"""Measured rows at the command line: ``fit`` on a file with duplicated rows or a row of another schema, and
``evaluate --dataset`` on the model's own profiling rows (training rows are never scored as held-out), each
checked by the one line the command prints. Everything runs on the session's tiny profile; nothing is measured."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from types import SimpleNamespace

import pytest

from nni_latency.cli.dispatch import main
from nni_latency.evaluate import testset
from nni_latency.files.formats import MODEL_FORMAT


def _run(argv: list[str]) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


def _one_line_error(result, command: str) -> str:
    assert result.code == 2, result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"nni-latency {command}: error: ")
    assert not result.out  # refused before any work: nothing fitted, scored or printed
    return lines[0]


@pytest.fixture
def no_measuring(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a block was measured")

    monkeypatch.setattr(testset, "measure_latency", refuse)


def _rows(tiny_profile) -> list[str]:
    return (tiny_profile / "microbench.jsonl").read_text(encoding="utf-8").splitlines()


# ---- fit: duplicated rows are dropped with one warning line; a row of another schema is refused naming it

def _duplicated(lines):
    return lines + lines


def _with_a_model_line(lines):
    return lines[:3] + [json.dumps({"format": MODEL_FORMAT, "kind": "op_linear"})] + lines[3:]


def _with_a_foreign_row(lines):
    return lines[:1] + [json.dumps({"image": "cat.png", "label": 3})] + lines[1:]


FIT_CASES = {
    "duplicated_rows": (_duplicated, 0, ["nni-latency fit: warning: ", "dropped 14 duplicate row(s)",
                                         "each measurement is used once"]),
    "a_model_among_the_rows": (_with_a_model_line, 2, ["row 4 is not a measured row of nni-latency",
                                                       "give a microbench.jsonl written by `nni-latency profile`"]),
    "another_tools_jsonl": (_with_a_foreign_row, 2, ["row 2 is not a measured row", "its keys: image, label"]),
}


@pytest.mark.parametrize("change, code, fragments", FIT_CASES.values(), ids=FIT_CASES.keys())
def test_fit_on_rows_of_another_schema_or_duplicated(tiny_profile, tmp_path, change, code, fragments):
    dataset = tmp_path / "microbench.jsonl"
    dataset.write_text("\n".join(change(_rows(tiny_profile))) + "\n", encoding="utf-8")
    result = _run(["fit", str(dataset), "--no-plot", "--output", str(tmp_path / "model.json")])
    if code:
        line = _one_line_error(result, "fit")
        assert not (tmp_path / "model.json").exists()
    else:
        assert result.code == 0, result.err
        warnings = [line for line in result.err.splitlines() if "duplicate" in line]
        assert len(warnings) == 1, result.err  # one line, not one per row
        line = warnings[0]
        assert "over 14 blocks" in result.out  # each block once in the fit, not twice
    for fragment in fragments:
        assert fragment in line, line


# ---- evaluate --dataset: the model's own rows are never its held-out score

def test_evaluate_refuses_the_models_own_profiling_rows(tiny_profile, tmp_path, no_measuring):
    result = _run(["evaluate", "--model", str(tiny_profile / "device_model.json"), "--dataset",
                   str(tiny_profile / "microbench.jsonl"), "--output-dir", str(tmp_path / "eval")])
    line = _one_line_error(result, "evaluate")
    assert "all 14 rows are blocks this device model was fitted on" in line
    assert "training error, not a held-out score" in line and "evaluate without --dataset" in line
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_evaluate_leaves_training_rows_out_of_a_mixed_dataset_and_says_so(tiny_profile, tmp_path, no_measuring):
    """A dataset holding some of the model's rows: those are left out with a warning, the header says how many,
    and metrics.json counts only the others."""
    from nni_latency.files.config import load_config, packaged_config
    from nni_latency.measure.allocator import apply_allocator_policy
    from nni_latency.model.model import LatencyModel
    from nni_latency.runtimes.torch.counting import extract_features

    model = LatencyModel.load(tiny_profile / "device_model.json")
    apply_allocator_policy(model.protocol)
    own = [json.loads(line) for line in _rows(tiny_profile)[:4]]
    smoke = testset.generate_testset(load_config(packaged_config("testset_smoke.yaml"), testset.TestSetConfig),
                                     exclude_keys=sorted(testset.training_keys(model)))
    others = []
    for block in smoke[:3]:  # held-out blocks, 'measured' as their own rows are (latency made up)
        row = {**own[0], "key": block.spec.key, "spec": block.spec.to_dict(), "round": 0,
               "features": extract_features(block.spec.build(), block.spec.input_shape, model.counting).as_dict()}
        row.pop("ops", None)
        others.append(row)
    dataset = tmp_path / "mixed.jsonl"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in own + others), encoding="utf-8")
    result = _run(["evaluate", "--model", str(tiny_profile / "device_model.json"), "--dataset", str(dataset),
                   "--output-dir", str(tmp_path / "eval")])
    assert result.code == 0, result.err
    header = result.out.splitlines()[0]
    assert f"held-out rows of {dataset} (4 row(s) the model was fitted on left out)" in header
    assert "left out 4 of 7 rows" in result.err and "scoring the other 3" in result.err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["count"] == 3 and metrics["testset"]["left_out_training_rows"] == 4


def test_a_model_fitted_by_fit_records_its_rows_so_evaluate_knows_them(tiny_profile, tmp_path, no_measuring):
    """``fit`` without a profiled model beside it has no profiling config to regenerate the suite from: it records
    the keys of the rows it was fitted on, and evaluate refuses those rows just the same."""
    dataset = tmp_path / "rows.jsonl"
    shutil.copy(tiny_profile / "microbench.jsonl", dataset)
    assert _run(["fit", str(dataset), "--no-plot", "--output", str(tmp_path / "refit.json")]).code == 0
    fitted = json.loads((tmp_path / "refit.json").read_text())["device"]
    assert "config" not in fitted and len(fitted["fitted_keys"]) == 14
    result = _run(["evaluate", "--model", str(tmp_path / "refit.json"), "--dataset", str(dataset),
                   "--output-dir", str(tmp_path / "eval")])
    assert "all 14 rows are blocks this device model was fitted on" in _one_line_error(result, "evaluate")
