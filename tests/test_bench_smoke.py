"""Smoke runs of the benchmarks in scripts/: tiny sizes, the session's server, correctness only.

Each test runs one benchmark as its command line does, with its smoke options (a few
images, one short round, ``--triton-url`` of the ``triton`` session fixture), writes the
JSON under ``tmp_path`` and checks it: the same fields as the committed
``bench/results/`` file of that benchmark (so a renamed field fails here), consistent
counts, finite values in range, the demo's plates read. Never a time or rate magnitude.
(scripts/bench_accuracy.py has its own: tests/test_bench_accuracy.py.)
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from collections.abc import Iterable, Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ensemble.ops.server_process import TritonProcess

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PHOTOS = REPO.parent / "shared" / "data" / "openalpr-eu"
DEMO_PLATES = 6  # plates of the synthetic demo video


def run_bench(script: str, *args: object, timeout_s: float = 300) -> None:
    cmd = [sys.executable, str(REPO / "scripts" / script), *map(str, args)]
    subprocess.run(cmd, check=True, timeout=timeout_s, cwd=REPO)


def shape(
    doc: Any, keyed: Iterable[str] = (), opaque: Iterable[str] = (), path: str = ""
) -> set[str]:
    """Every field path of ``doc`` (``a.b``, ``rows[].model``). Under a path matching a
    ``keyed`` pattern (a dict keyed by data: model, variant, set names) the keys read ``*``;
    below an ``opaque`` one (configuration copied into the result) nothing is listed."""
    keyed, opaque = tuple(keyed), tuple(opaque)
    if any(fnmatch(path, o) for o in opaque):
        return set()
    out: set[str] = set()
    if isinstance(doc, dict):
        star = any(fnmatch(path, k) for k in keyed)
        for key, value in doc.items():
            sub = f"{path}.{'*' if star else key}" if path else key
            out |= {sub} | shape(value, keyed, opaque, sub)
    elif isinstance(doc, list):
        for value in doc:
            out |= shape(value, keyed, opaque, f"{path}[]")
    return out


def assert_fields(
    got: dict[str, Any],
    committed: str,
    *,
    keyed: Iterable[str] = (),
    opaque: Iterable[str] = (),
    absent_here: Iterable[str] = (),
    new_since: Iterable[str] = (),
) -> None:
    """``got`` has the fields of the committed ``bench/results/<committed>`` (but those
    matching ``absent_here``: parts the smoke options leave out), and no others but
    ``new_since`` (fields the code added after that file was measured)."""
    want = shape(json.loads((RESULTS / committed).read_text()), keyed, opaque)
    have = shape(got, keyed, opaque)
    missing = {p for p in want - have if not any(fnmatch(p, a) for a in absent_here)}
    assert not missing, f"fields of {committed} the benchmark no longer writes: {sorted(missing)}"
    extra = have - want - set(new_since)
    assert not extra, f"fields missing from the committed {committed}: {sorted(extra)}"


def numbers(doc: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(doc, bool):
        return
    if isinstance(doc, int | float):
        yield path, float(doc)
    elif isinstance(doc, dict):
        for key, value in doc.items():
            yield from numbers(value, f"{path}.{key}")
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from numbers(value, f"{path}[{i}]")


def assert_finite(doc: Any) -> None:
    bad = [(p, v) for p, v in numbers(doc) if not math.isfinite(v)]
    assert not bad, f"non-finite values: {bad}"


def fraction(value: Any) -> bool:
    return isinstance(value, int | float) and 0.0 <= value <= 1.0


# --- scripts/bench_server.py ---------------------------------------------------------------
def test_bench_server_smoke(triton: TritonProcess, tmp_path: Path) -> None:
    out = tmp_path / "server.json"
    run_bench("bench_server.py", "--quick", "--concurrency", "1,2", "--batch-sizes", "1,2",
              "--triton-url", triton.grpc_url, "--out", out)  # fmt: skip
    res = json.loads(out.read_text())
    assert out.with_suffix(".md").read_text().startswith("# Triton server benchmark")
    # the session's server has no model control: no batching-off rows, no delay sweep
    assert_fields(
        res, "server.json", keyed=["inprocess_ceiling"], opaque=["settings.dynamic_batching"],
        absent_here=["delay_sweep[]*"],
    )  # fmt: skip
    assert_finite(res)
    settings = res["settings"]
    assert settings["managed_server"] is False and settings["model_control"] is False
    assert res["delay_sweep"] == [] and len(res["notes"]) == 1  # the model-control note
    assert {(r["model"], r["concurrency"]) for r in res["rows"]} == {
        (m, c) for m in ("vehicle_detector", "alpr") for c in (1, 2)
    }
    for row in res["rows"]:
        assert row["batching"] == "on" and row["transport"] == "grpc"
        assert row["errors"] == 0 and row["first_error"] is None  # good input: no errors
        assert row["infer_per_s"] == round(row["completed"] / settings["duration_s"], 2)
        lat = [row[k] for k in ("p50_ms", "p95_ms", "p99_ms")]
        assert lat == sorted(lat) if row["completed"] else lat == [None] * 3
    assert sum(r["completed"] for r in res["rows"]) > 0
    assert {(r["path"], r["batch"]) for r in res["inprocess"]} == {
        (p, b) for p in ("vehicle_detector", "alpr") for b in (1, 2)
    }
    assert all(r["calls"] > 0 and r["images_per_s"] > 0 for r in res["inprocess"])
    for name in ("vehicle_detector", "alpr"):
        rates = [r["images_per_s"] for r in res["inprocess"] if r["path"] == name]
        assert res["inprocess_ceiling"][name] == max(rates)
    assert res["batching_on_over_off_c8"] is None and res["best_queue_delay_us"] is None


# --- scripts/bench_plate_engines.py --------------------------------------------------------
def test_bench_plate_engines_smoke(tmp_path: Path) -> None:
    out = tmp_path / "plate_engines.json"
    run_bench("bench_plate_engines.py", "--frames", "4", "--photos", "3", "--out", out)
    res = json.loads(out.read_text())
    assert_fields(res, "plate_engines.json", absent_here=[] if PHOTOS.is_dir() else ["photos*"])
    assert_finite(res)
    sizes = {"frames": 4, "photos": 3}
    for kind in ("frames", "photos") if PHOTOS.is_dir() else ("frames",):
        for engine in ("yolo", "ppocr"):
            fig = res[kind][engine]
            assert fig["images"] == sizes[kind], (kind, engine)
            assert 0 < fig["ms_median"] <= fig["ms_p95"] and fig["candidates_per_image"] >= 0
        assert res[kind]["ms_ratio_yolo_over_ppocr"] > 0
    assert res["frames"]["yolo"]["candidates_per_image"] > 0  # the demo frames show plates
    if PHOTOS.is_dir():  # every photo shows a plate
        assert res["photos"]["yolo"]["candidates_per_image"] >= 1


# --- scripts/bench_engine_accuracy.py ------------------------------------------------------
def test_bench_engine_accuracy_smoke(
    triton: TritonProcess, openalpr_eu: Path, tmp_path: Path
) -> None:
    out = tmp_path / "accuracy-openalpr-eu.json"
    run_bench("bench_engine_accuracy.py", openalpr_eu, "--limit", "4", "--triton-url",
              triton.grpc_url, "--variants", "yolo_cascade", "yolo_full", "--out", out)  # fmt: skip
    res = json.loads(out.read_text())
    assert_fields(
        res, "accuracy-openalpr-eu.json", keyed=["variants", "ms_ratio_vs_default", "*sets"],
        absent_here=["*top_confusions[]*"],  # none when every photo reads right
    )  # fmt: skip
    assert_finite(res)
    assert res["variant"] == "yolo_cascade" and set(res["variants"]) == {
        "yolo_cascade",
        "yolo_full",
    }
    assert res["ms_ratio_vs_default"]["yolo_cascade"] == 1.0
    for name, fig in {"top": res, **res["variants"]}.items():
        assert fig["images"] == 4 and fig["limit"] == 4, name
        assert sum(fig["categories"].values()) == 4, name
        assert fig["categories"]["exact"] == round(fig["exact"] * 4), name
        for key in ("exact", "exact_o0_i1_equal", "detection_recall", "char_accuracy"):
            assert fraction(fig[key]), (name, key)
        assert fig["ms_per_image"] > 0, name
        assert fig["exact"] >= 0.75, name  # the default engine reads these (0.94 on all 108)
    assert res["cascade"] is True and res["variants"]["yolo_full"]["cascade"] is False


# --- scripts/bench_gate.py -----------------------------------------------------------------
def test_bench_gate_smoke(triton: TritonProcess, tmp_path: Path) -> None:
    out = tmp_path / "gate.json"
    run_bench("bench_gate.py", "--rounds", "1", "--variants", "zone_idle", "--triton-url",
              triton.grpc_url, "--out", out)  # fmt: skip
    res = json.loads(out.read_text())
    assert_fields(res, "gate.json", opaque=["gate_lists"])
    assert_finite(res)
    want = res["truth_plates"]
    assert len(want) == DEMO_PLATES
    (run,) = res["runs"]
    assert run["variant"] == "zone_idle" and run["events"] == DEMO_PLATES
    plates = [d["plate"] for d in run["decisions"]]
    assert sorted(plates) == want  # 6/6 read, each decided once: no duplicates
    assert run["correct_plates"] == want
    decided = {d["plate"]: d["decision"] for d in run["decisions"]}
    assert set(decided.values()) <= {"allow", "deny", "unknown"}
    for entry in res["gate_lists"]["deny"]:  # a deny-listed plate of the demo is denied
        plate = "".join(c for c in entry.get("plate", "") if c.isalnum())
        assert decided.get(plate, "deny") == "deny", plate
    assert all(d["latency_ms"] >= 0 for d in run["decisions"])
    assert run["frames_detected"] > 0 and run["idle_skipped"] >= 0 and run["fps"] > 0
    assert res["decisions"] == res["by_variant"]["zone_idle"]["n"] == DEMO_PLATES
    assert res["by_variant"]["every_frame"]["n"] == 0
    assert res["by_variant"]["zone_idle"]["detector_calls_mean"] == run["frames_detected"]
    assert res["detector_calls_zone_idle_over_every_frame"] is None  # one variant only
    assert 0 <= res["decision_latency_p50_ms"] <= res["decision_latency_p95_ms"]


# --- scripts/soak.py -----------------------------------------------------------------------
def test_soak_smoke(triton: TritonProcess, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run_bench("soak.py", "--cameras", "1", "--minutes", "0.5", "--interval", "5",
              "--triton-url", triton.grpc_url, "--triton-pid", triton.proc.pid,
              "--out", out)  # fmt: skip
    res = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    # soak.json (10 minutes, 4 cameras) predates these two fields: re-measure to drop them
    new = ["checks.events_expected", "samples[].frames_per_camera"]
    assert_fields(res, "soak.json", new_since=new)
    assert_finite(res)
    samples, checks = res["samples"], res["checks"]
    assert res["cameras"] == 1 and len(samples) >= 2
    assert checks["all_clients_alive"] is True
    assert all(s["clients_alive"] == 1 and s["rss_server_mb"] > 0 for s in samples)
    last = samples[-1]
    assert last["frames"] > 0 and sum(last["frames_per_camera"]) == last["frames"]
    assert checks["frames_total"] == last["frames"] and checks["dropped_total"] == last["dropped"]
    assert checks["events_total"] == last["events"] and last["reads"] >= 1
    # plates are read, at most one per plate shown (those fully shown + those on screen)
    assert 1 <= checks["events_total"] <= checks["events_expected"] + DEMO_PLATES
    assert checks["redis_keys_last"] == last["redis_keys"] <= checks["redis_keys_max"]
    assert checks["redis_keys_max"] == max(s["redis_keys"] for s in samples)
    for earlier, later in itertools.pairwise(samples):
        assert later["frames"] >= earlier["frames"] and later["events"] >= earlier["events"]
