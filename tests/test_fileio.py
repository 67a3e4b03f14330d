"""File writing: strict JSON, atomic replacement through a callback, append-as-you-go JSONL."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nni_latency.files.fileio import append_jsonl, atomic_write, json_safe, read_jsonl


def test_json_safe_makes_strict_json():
    value = {"a": float("nan"), "b": [np.float64(1.5), float("inf")], "c": np.int64(3), 4: "x"}
    safe = json_safe(value)
    assert safe == {"a": None, "b": [1.5, None], "c": 3, "4": "x"}
    json.dumps(safe, allow_nan=False)


def test_atomic_write_through_a_callback_replaces_the_file_whole(tmp_path):
    path = tmp_path / "sub" / "out.bin"
    atomic_write(path, lambda handle: handle.write(b"first"), binary=True)
    atomic_write(path, lambda handle: handle.write(b"2"), binary=True)
    assert path.read_bytes() == b"2"
    assert [p.name for p in path.parent.iterdir()] == ["out.bin"]


def test_a_failing_writer_keeps_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write(path, lambda handle: handle.write("old"))

    def broken(handle):
        handle.write("half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_jsonl_rows_round_trip(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"key": "a", "latency_ms": 1.5}, {"key": "b", "latency_ms": 2.0}]
    for row in rows:
        append_jsonl(path, row)
    assert list(read_jsonl(path)) == rows
