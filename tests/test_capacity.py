"""scripts/capacity.py: the committed bench/results/capacity.json is what the script gives
on the committed benchmark results, its arithmetic holds, and bad results fail clearly."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "capacity.py"
RESULTS = REPO / "bench" / "results"
COMMITTED = RESULTS / "capacity.json"

_spec = importlib.util.spec_from_file_location("capacity", SCRIPT)
assert _spec and _spec.loader
capacity = importlib.util.module_from_spec(_spec)
sys.modules["capacity"] = capacity
_spec.loader.exec_module(capacity)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


def test_committed_result_is_what_the_script_gives(tmp_path: Path) -> None:
    out = tmp_path / "capacity.json"
    done = run("--out", str(out))
    assert done.returncode == 0, done.stderr
    fresh, committed = json.loads(out.read_text()), json.loads(COMMITTED.read_text())
    fresh.pop("command"), committed.pop("command")
    assert fresh == committed, "bench/results/capacity.json is stale: python scripts/capacity.py"
    # the markdown table: one row per scenario, its numbers as in the JSON
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(fresh["scenarios"])
    for row, s in zip(rows, fresh["scenarios"], strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == s["mode"] and int(cells[5]) == s["cameras_per_replica"]
        assert [int(c.replace(",", "")) for c in cells[6:]] == list(s["replicas"].values())
    assert fresh["formula"] in done.stdout and fresh["gpu"] is None


def test_committed_arithmetic() -> None:
    doc = json.loads(COMMITTED.read_text())
    inp = {k: v["value"] for k, v in doc["inputs"].items()}
    assert doc["scenarios"]
    for s in doc["scenarios"]:
        load = (s["fps"] * inp[f"c_detect_{s['mode']}"]
                + s["vehicles_per_min"] / 60 * inp["reads_per_track"] * inp["c_read"])  # fmt: skip
        assert s["load_core_s_per_s"] == pytest.approx(load, rel=1e-12)
        budget = inp["cores"] * inp["utilisation"]
        n = s["cameras_per_replica"]
        assert n * load <= budget * (1 + 1e-9) and (n + 1) * load > budget
        for cameras, replicas in s["replicas"].items():
            need = int(cameras) * load
            assert replicas >= inp["min_replicas"] and replicas * budget >= need * (1 - 1e-9)
            if replicas > inp["min_replicas"]:  # and no replica more than needed
                assert (replicas - 1) * budget < need
    # the inputs are the benchmark figures they name
    edge = json.loads((RESULTS / "edge.json").read_text())
    best = max(c["aggregate_fps"] for c in edge["cameras"].values())
    assert inp["c_detect_plates"] * best == pytest.approx(edge["machine"]["cpus"])
    server = json.loads((RESULTS / "server-plate-yolo.json").read_text())
    alpr = max(r["infer_per_s"] for r in server["rows"]
               if r["model"] == "alpr" and r["batching"] == "on")  # fmt: skip
    assert inp["c_read"] * alpr == pytest.approx(server["machine"]["cpu_count"])


@pytest.mark.parametrize(
    ("fn", "args", "expected"),
    [
        ("camera_load", (0.1, 0.2, 1.0, 5.0, 30.0), 0.6),  # 5 * 0.1 + 0.5 * 1 * 0.2
        ("camera_load", (0.1, 0.2, 2.0, 5.0, 0.0), 0.5),  # no traffic: detection only
        ("replicas_for", (100, 0.6, 2.0, 0.5, 2), 60),  # 60 core-s/s on 1 core each
        ("replicas_for", (1, 0.1, 2.0, 0.7, 2), 2),  # the minimum
        ("replicas_for", (10, 0.14, 2.0, 0.7, 1), 1),  # an exact fit is not one more
        ("replicas_for", (11, 0.14, 2.0, 0.7, 1), 2),
        ("cameras_per_replica", (0.1, 2.0, 0.7), 14),  # 1.4 / 0.1 is 13.999999999999998 in floats
        ("cameras_per_replica", (2.0, 2.0, 0.7), 0),  # one camera needs more than a replica
    ],
)
def test_model_arithmetic(fn: str, args: tuple[Any, ...], expected: float) -> None:
    assert getattr(capacity, fn)(*args) == pytest.approx(expected)


def _drop_cameras(d: dict[str, Any]) -> None:
    del d["cameras"]


def _zero_fps(d: dict[str, Any]) -> None:
    d["cameras"]["8"]["aggregate_fps"] = 0


def _text_fps(d: dict[str, Any]) -> None:
    d["model_ceiling_fps"] = "fast"


def _no_alpr(d: dict[str, Any]) -> None:
    d["rows"] = [r for r in d["rows"] if r["model"] != "alpr"]


# file -> how it is broken -> what the error names
BROKEN: dict[str, tuple[str, Callable[[dict[str, Any]], None] | None, str]] = {
    "edge.json missing": ("edge.json", None, "edge.json: not found"),
    "no cameras": ("edge.json", _drop_cameras, "missing cameras"),
    "zero fps": ("edge.json", _zero_fps, "cameras.8.aggregate_fps must be a positive"),
    "text instead of number": ("edge.json", _text_fps, "model_ceiling_fps is not a number"),
    "no alpr rows": ("server-plate-yolo.json", _no_alpr, "no error-free rows for alpr"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_bad_results_exit_2_naming_the_problem(tmp_path: Path, case: str) -> None:
    name, breaks, message = BROKEN[case]
    for f in RESULTS.glob("*.json"):
        shutil.copy(f, tmp_path / f.name)
    target = tmp_path / name
    if breaks is None:
        target.unlink()
    else:
        doc = json.loads(target.read_text())
        breaks(doc)
        target.write_text(json.dumps(doc))
    out = tmp_path / "out.json"
    done = run("--results", str(tmp_path), "--out", str(out))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [["--utilisation", "1.5"], ["--fps", "0"], ["--cameras", "0"], ["--cores", "-1"],
     ["--modes", "boats"], ["--min-replicas", "0"]],
)  # fmt: skip
def test_bad_arguments_exit_2(args: list[str]) -> None:
    done = run(*args, "--out", "-")
    assert done.returncode == 2 and "error:" in done.stderr


def test_other_fleet_settings_scale_as_the_formula_says() -> None:
    done = run("--out", "-", "--cores", "8", "--modes", "plates", "--fps", "5",
               "--vehicles-per-min", "10", "--cameras", "1000")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = [r for r in done.stdout.splitlines() if r.startswith("| plates")]
    base = json.loads(COMMITTED.read_text())
    (s,) = [x for x in base["scenarios"] if (x["mode"], x["vehicles_per_min"]) == ("plates", 10)]
    want = math.ceil(round(1000 * s["load_core_s_per_s"] / (8 * 0.7), 9))
    assert row.rstrip(" |").endswith(f"{want:,}")
