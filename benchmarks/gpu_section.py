"""The GPU section of docs/BENCHMARKS.md, rendered from ``docs/gpu/*.json`` (one file per GPU), so it is never
edited by hand: ``benchmarks/gpu_check.sh`` collects a run into such a file and re-renders the section in place;
``benchmarks/run.py`` renders the same section when it regenerates the whole document.

    python benchmarks/gpu_section.py collect RUN_DIR --output docs/gpu/   # RUN_DIR: what gpu_check.sh wrote
    python benchmarks/gpu_section.py update docs/BENCHMARKS.md --results docs/gpu
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules

from report import num as _num  # noqa: E402
from report import pct as _pct
from report import table as _table

HEADING = "## GPU"
RESULTS = Path(__file__).resolve().parent.parent / "docs" / "gpu"
_SUMMARY = ("count", "mdape", "within_5pct", "within_10pct", "bias", "kendall_tau")


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def _repeat_floor(predictions: Path) -> dict[str, float] | None:
    from whole_networks import repeat_floor

    return repeat_floor([json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()
                         if line.strip()])


def collect(run_dir: Path, seconds: float | None = None) -> dict[str, Any]:
    """The figures of one ``gpu_check.sh`` run: profile, block evaluation, networks per batch, search."""
    model = _read(run_dir / "profile" / "device_model.json")
    device, metrics = model.get("device", {}), model.get("metrics", {})
    cv = metrics.get("cv", {}).get(model.get("kind"), {})
    result: dict[str, Any] = {
        "device": device.get("name", "unknown GPU"), "torch": device.get("torch"), "date": device.get("date"),
        "seconds": seconds,
        "profile": {"kind": model.get("kind"), "blocks": metrics.get("points"),
                    "seconds": metrics.get("profile_seconds"), "batches": device.get("batches"),
                    "dtype": device.get("dtype"),
                    "cv": {k: cv.get(k) for k in ("mdape", "within_10pct", "kendall_tau")},
                    "probe_ms": (device.get("probe") or {}).get("total_ms")},
        "networks": [],
    }
    blocks = run_dir / "blocks" / "metrics.json"
    if blocks.exists():
        scores = _read(blocks)
        result["blocks"] = {**{k: scores.get(k) for k in ("count", "mdape", "within_10pct", "kendall_tau")},
                            "within_layer_tau": (scores.get("within_layer_kendall") or {}).get("mean"),
                            "drift": scores.get("drift")}
    for path in sorted(run_dir.glob("networks_b*/metrics.json"), key=lambda p: int(p.parent.name[len("networks_b"):])):
        scores = _read(path)
        result["networks"].append({**{k: scores.get(k) for k in _SUMMARY}, "batch": scores["networks"]["batch"],
                                   "worst": scores.get("worst", [])[:3], "drift": scores.get("drift"),
                                   "floor": _repeat_floor(path.parent / "predictions.jsonl"),
                                   "selection": scores["networks"]["selection"]})
    search = run_dir / "search" / "result.json"
    if search.exists():
        found = _read(search)
        result["search"] = {k: found.get(k) for k in ("predicted_latency_ms", "measured_latency_ms", "accuracy",
                                                      "measured_drift")}
    return result


def _device_section(result: dict[str, Any]) -> list[str]:
    profile = result["profile"]
    lines = [f"### {result['device']}", "",
             f"torch {result.get('torch')}, {result.get('date')}; the whole check took "
             f"{_num(result.get('seconds'), 0)} s. Profile: {profile['blocks']} blocks in "
             f"{_num(profile.get('seconds'), 1)} s at batch sizes {profile.get('batches')}, {profile.get('dtype')}; "
             f"cross-validated {profile['kind']} MdAPE {_pct(profile['cv'].get('mdape'))}, within ±10% "
             f"{_pct(profile['cv'].get('within_10pct'), 0)}, Kendall τ {_num(profile['cv'].get('kendall_tau'))}.", ""]
    rows = []
    if result.get("blocks"):
        b = result["blocks"]
        rows.append(("held-out blocks (reduced test set)", b["count"], _pct(b["mdape"]), "-",
                     _pct(b["within_10pct"], 0), "-", _num(b["kendall_tau"]), "-", "-"))
    for n in result["networks"]:
        floor = n.get("floor") or {}
        worst = ", ".join(f"{w['name']} {_pct(w['error'])}" for w in n.get("worst", [])) or "-"
        rows.append((f"whole networks, batch {n['batch']}", n["count"], _pct(n["mdape"]), _pct(n["within_5pct"], 0),
                     _pct(n["within_10pct"], 0), _pct(n["bias"]), _num(n["kendall_tau"]),
                     _pct(floor.get("mdape")), worst))
    lines += [_table(["test", "count", "MdAPE", "within ±5%", "within ±10%", "bias", "Kendall τ",
                      "repeat floor (median)", "worst"], rows), ""]
    selections: dict[str, list[str]] = {}
    for n in result["networks"]:
        selections.setdefault(n["selection"], []).append(str(n["batch"]))
    if selections:
        lines += ["Networks: " + "; ".join(f"batch {', '.join(b)}: `{s}`" for s, b in selections.items()) + ".", ""]
    search = result.get("search")
    if search:
        lines += [f"Short FBNet search (`examples/fbnet_search/smoke.yaml` on the GPU): predicted "
                  f"{_num(search.get('predicted_latency_ms'))} ms, measured {_num(search.get('measured_latency_ms'))} "
                  f"ms for the found network, top-1 {_pct(search.get('accuracy'))}.", ""]
    drifts = [d for d in [(result.get("blocks") or {}).get("drift"), *[n.get("drift") for n in result["networks"]],
                          (search or {}).get("measured_drift")] if d]
    if drifts:
        worst = max(drifts, key=lambda d: abs(d["ratio"] - 1))
        lines += [f"Drift probe: largest change since profiling {100 * (worst['ratio'] - 1):+.1f}% "
                  f"(noise ±{100 * worst['noise']:.1f}%){'; drifted' if worst['drifted'] else ''}.", ""]
    return lines


def render(results_dir: Path = RESULTS) -> str:
    """The ``## GPU`` section from every ``*.json`` in ``results_dir`` (a note saying how to fill it if none)."""
    files = sorted(Path(results_dir).glob("*.json"))
    lines = [HEADING, "", "Measured by `bash benchmarks/gpu_check.sh` on one GPU (profile on CUDA, reduced block "
             "test set, zoo networks at batch 1, 32 and 128, a short search), collected into `docs/gpu/*.json`; "
             "do not edit by hand, rerun the script.", ""]
    if not files:
        return "\n".join(lines + ["No GPU results yet: run `bash benchmarks/gpu_check.sh` on a machine with a CUDA "
                                  "GPU (under 8 minutes).", ""])
    for path in files:
        lines += _device_section(_read(path))
    return "\n".join(lines)


def update(document: Path, results_dir: Path = RESULTS) -> None:
    """Replace the GPU section of ``document`` (up to the next ``## `` heading), or add it before ``## Data``."""
    text = document.read_text(encoding="utf-8")
    section = render(results_dir).rstrip("\n") + "\n\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    elif "\n## Data\n" in text:
        text = text.replace("\n## Data\n", "\n" + section + "## Data\n", 1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    document.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    collect_parser = commands.add_parser("collect", help="collect a gpu_check.sh run into OUTPUT/<device>.json")
    collect_parser.add_argument("run_dir", type=Path)
    collect_parser.add_argument("--output", type=Path, default=RESULTS, help="the results directory")
    collect_parser.add_argument("--seconds", type=float, default=None, help="how long the whole check took")
    update_parser = commands.add_parser("update", help="re-render the GPU section of a BENCHMARKS.md")
    update_parser.add_argument("document", type=Path)
    update_parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "collect":
        result = collect(args.run_dir, args.seconds)
        args.output.mkdir(parents=True, exist_ok=True)
        path = args.output / f"{_slug(result['device'])}.json"
        from nni_latency.files.fileio import atomic_write_json

        atomic_write_json(path, result)
        print(f"wrote {path}")
    else:
        update(args.document, args.results)
        print(f"updated the {HEADING} section of {args.document}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
