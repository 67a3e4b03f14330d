"""The interleaved, resumable measuring loop: rounds, their order, combining them, resuming mid-round.

Items are measured by a fake callback that returns a scripted latency, so no test depends on timing.
"""

from __future__ import annotations

import pytest

from nni_latency.files.fileio import read_jsonl
from nni_latency.measure.rounds import measure_rounds
from nni_latency.rows.store import RowStore, combine_rounds
from nni_latency.runtimes.protocol import MeasurementProtocol


class Scripted:
    """``measure(key)`` returning latencies from a script per key, in call order; optional interrupt."""

    def __init__(self, script: dict[str, list[float]], stop_after: int | None = None):
        self.script = {key: list(values) for key, values in script.items()}
        self.calls: list[str] = []
        self.stop_after = stop_after

    def __call__(self, key: str) -> dict:
        if self.stop_after is not None and len(self.calls) == self.stop_after:
            raise KeyboardInterrupt
        self.calls.append(key)
        return {"latency_ms": self.script[key].pop(0)}


SCRIPT = {"a": [1.0, 9.0, 1.2], "b": [2.0, 2.2, 2.1]}


def test_rounds_interleave_items_and_the_median_of_rounds_is_the_latency(tmp_path):
    measure = Scripted(SCRIPT)
    combined = measure_rounds(["a", "b"], measure, RowStore(tmp_path / "rows.jsonl"), MeasurementProtocol(rounds=3),
                              progress=False)
    assert measure.calls == ["a", "b", "a", "b", "a", "b"]  # every item once per pass, not back to back
    assert combined["a"]["latency_ms"] == pytest.approx(1.2)  # the slow pass (9.0) does not move the median
    assert combined["a"]["round_ms"] == [1.0, 9.0, 1.2] and combined["a"]["rounds"] == 3
    assert combined["b"]["latency_ms"] == pytest.approx(2.1)
    rows = list(read_jsonl(tmp_path / "rows.jsonl"))
    assert [(r["key"], r["round"]) for r in rows] == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert all(r["rounds"] == 3 and r["threads"] == 1 for r in rows)  # the protocol goes with every row


@pytest.mark.parametrize("interrupt_after", [0, 1, 3, 5])
def test_an_interrupted_run_resumes_at_the_next_missing_pass(tmp_path, interrupt_after):
    dataset, protocol = tmp_path / "rows.jsonl", MeasurementProtocol(rounds=3)
    first = Scripted(SCRIPT, stop_after=interrupt_after)
    with pytest.raises(KeyboardInterrupt):
        measure_rounds(["a", "b"], first, RowStore(dataset), protocol, progress=False)
    resumed = Scripted(first.script)  # the latencies the interrupted run did not take
    combined = measure_rounds(["a", "b"], resumed, RowStore(dataset), protocol, progress=False)
    assert first.calls + resumed.calls == ["a", "b", "a", "b", "a", "b"]  # nothing measured twice or skipped
    assert combined["a"]["round_ms"] == SCRIPT["a"] and combined["b"]["round_ms"] == SCRIPT["b"]


def test_more_rounds_later_add_passes_without_remeasuring(tmp_path):
    dataset = tmp_path / "rows.jsonl"
    measure_rounds(["a", "b"], Scripted(SCRIPT), RowStore(dataset), MeasurementProtocol(rounds=1), progress=False)
    more = Scripted({"a": [9.0, 1.2], "b": [2.2, 2.1]})
    combined = measure_rounds(["a", "b"], more, RowStore(dataset), MeasurementProtocol(rounds=3), progress=False)
    assert more.calls == ["a", "b", "a", "b"]
    assert combined["a"]["latency_ms"] == pytest.approx(1.2)


def test_a_dataset_of_another_protocol_is_refused(tmp_path):
    dataset = tmp_path / "rows.jsonl"
    measure_rounds(["a"], Scripted(SCRIPT), RowStore(dataset), MeasurementProtocol(), progress=False)
    with pytest.raises(ValueError, match="threads=1.*--output-dir"):
        measure_rounds(["a"], Scripted(SCRIPT), RowStore(dataset), MeasurementProtocol(threads=2), progress=False)


@pytest.mark.parametrize("latencies,expected,noisy", [
    ([1.0], 1.0, False),
    ([1.0, 1.04], 1.02, False),
    ([1.0, 1.5, 1.02], 1.02, True),  # the passes disagree by more than max_spread
], ids=["one", "two_agree", "three_disagree"])
def test_combine_rounds(latencies, expected, noisy):
    rows = [{"key": "k", "round": i, "latency_ms": v, "max_spread": 0.1} for i, v in enumerate(latencies)]
    combined = combine_rounds(rows)
    assert combined["latency_ms"] == pytest.approx(expected)
    assert bool(combined.get("noisy")) is noisy


def test_rounds_with_their_runs_pool_them_at_the_protocols_quantile():
    rows = [{"key": "k", "round": 0, "latency_ms": 1.25, "times_ms": [1.0, 2.0], "quantile": 0.25, "repeats": 20},
            {"key": "k", "round": 1, "latency_ms": 3.75, "times_ms": [3.0, 4.0, 5.0, 6.0], "quantile": 0.25,
             "repeats": 4}]
    combined = combine_rounds(rows)
    # pooled runs 1, 2, 3, 4, 5, 6: the lower quartile is 2.25, the median 3.5, the IQR 4.75 - 2.25
    assert combined["latency_ms"] == pytest.approx(2.25) and combined["median_ms"] == pytest.approx(3.5)
    assert combined["iqr_ms"] == pytest.approx(2.5) and combined["repeats"] == 24
    assert "times_ms" not in combined and combined["round_ms"] == pytest.approx([1.25, 3.75])
    assert combined["noisy"]  # IQR / median = 0.71, far above the default max_spread


def test_a_combined_row_keeps_the_first_rows_other_fields():
    rows = [{"key": "k", "round": r, "latency_ms": 2.0, "times_ms": [2.0, 2.0, 2.0], "protocol": "rotate",
             "copies": 4, "spec": {"family": "mbconv"}, "threads": 2} for r in range(2)]
    combined = combine_rounds(rows)
    assert {k: combined[k] for k in ("key", "protocol", "copies", "spec", "threads")} == \
        {"key": "k", "protocol": "rotate", "copies": 4, "spec": {"family": "mbconv"}, "threads": 2}
    assert "round" not in combined and combined["rounds"] == 2 and not combined["noisy"]
