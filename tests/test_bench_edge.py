"""Smoke run of scripts/bench_edge.py against the session's tritonserver: tiny sizes,
correctness only (plates read, no duplicates, counters consistent), never time."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ensemble.ops.server_process import TritonProcess
from tests.redis_server import RedisProc, redis_factory

__all__ = ["redis_factory"]  # the fixture

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "bench" / "results" / "edge.json"


def test_bench_edge_smoke(
    triton: TritonProcess, redis_factory: Callable[..., RedisProc], tmp_path: Path
) -> None:
    redis = redis_factory()
    out = tmp_path / "edge.json"
    cmd = [sys.executable, str(REPO / "scripts" / "bench_edge.py"), "--smoke", "--out", str(out),
           "--triton-url", triton.grpc_url, "--metrics-url", triton.metrics_url,
           "--redis-url", redis.url]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=900, cwd=REPO)
    res = json.loads(out.read_text())
    committed = json.loads(COMMITTED.read_text())
    assert set(res) == set(committed), "bench/results/edge.json has other fields: re-run it"
    # the demo's 6 plates, once each, on both paths; per-frame reading costs far more OCR
    for run in (res["plates"], res["plates_before"]):
        assert (run["correct"], run["wrong"], run["duplicates"]) == (6, 0, 0), run
    assert res["accuracy_per_track"] == res["accuracy_per_track_before"] == 1.0
    assert res["ocr_calls_per_frame_over_per_track"] >= 20
    cpu = res["cpu_ms_per_frame"]  # the edge client's own loop CPU; no server of its own here
    assert cpu["model_ceiling"] > 0 and cpu["plates_edge"] > 0 and cpu["plates_before_edge"] > 0
    assert cpu["plates_server"] is None and cpu["plates_before_server"] is None
    for key in ("plates_fps", "plates_fps_before", "model_ceiling_fps", "fps_over_model_ceiling",
                "model_ceiling_instances_fps", "fps_over_model_ceiling_instances"):  # fmt: skip
        assert math.isfinite(res[key]) and res[key] > 0, key
    # the second ceiling runs the network as the server does: one session per instance
    assert res["model_ceiling"]["sessions"] == 1
    assert res["model_ceiling_instances"]["sessions"] == 2  # plate_locator's instance_group
    assert res["cameras8_over_model_ceiling"] is None  # the smoke runs 1 and 2 cameras
    # N cameras at once: every camera reports all plates; Triton's counters cover the run
    assert set(res["cameras"]) == {"1", "2"}
    for n, cam in res["cameras"].items():
        assert cam["all_correct"], (n, cam)
        assert len(cam["per_camera_fps"]) == int(n)
        assert 0 < cam["locator_executions"] <= cam["locator_inferences"]
        assert cam["average_batch"] >= 1.0
    if res["clip"] is not None:  # ../shared/data present
        assert res["clip"]["photos"] == 3
        assert 0.0 <= res["clip"]["accuracy_per_track"] <= 1.0
