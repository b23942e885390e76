"""Two cameras, one vehicle record, every part real: a plate camera and an overview camera
(`read_plates: false`) watch the same real car (an openalpr-eu photograph panned across
the frame), two `edge-client` processes run at once against one tritonserver and one
redis-server, and `alpr-gate` merges their events into one record with the plate, the
vehicle class and colour from the overview camera, and the direction from the counting
line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_client.zones.colour import COLOURS
from ensemble.ops.server_process import TritonProcess, free_port
from gate.process import start_gate
from tests.gate_browser import wait_for
from tests.redis_server import start_redis
from tests.test_edge_e2e import panning_video

pytestmark = [pytest.mark.server, pytest.mark.data, pytest.mark.timeout(400)]
EDGE = str(Path(sys.executable).parent / "edge-client")
ZONE = {  # the whole frame; the car moves right across a vertical line: entry
    "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
    "line": [[0.5, 0], [0.5, 1]],
    "entry": "right",
    "idle_every": 1,
    "crop_detection": False,
}


def camera(video: Path, tmp: Path, *, read_plates: bool) -> dict[str, Any]:
    return {
        "source": str(video), "mode": "vehicles", "regions": ["uk", "eu"],
        "read_plates": read_plates, "zone": ZONE,
        "thresholds": {"detection": 0.3, "min_box_px": 48, "stable_frames": 3,
                       "read_confidence": 0.9, "max_retries": 2},
        "tracking": {"high_score": 0.4, "low_score": 0.2, "match_iou": 0.3, "lost_frames": 10},
        "sinks": [{"type": "redis_stream", "stream": "alpr:events"},
                  {"type": "jsonl", "path": str(tmp / "{camera}.jsonl")}],
    }  # fmt: skip


def test_plate_and_overview_cameras_make_one_record(
    triton: TritonProcess, openalpr_eu: Path, tmp_path: Path
) -> None:
    video = panning_video(openalpr_eu / "eu1.jpg", tmp_path / "pan.mp4")
    redis = start_redis(tmp_path)
    edge_cfg = tmp_path / "edge.yaml"
    edge_cfg.write_text(yaml.safe_dump({
        "triton": {"urls": [triton.grpc_url]}, "redis": {"url": redis.url},
        "output_dir": str(tmp_path / "out"),
        "cameras": {"rear": camera(video, tmp_path, read_plates=True),
                    "front": camera(video, tmp_path, read_plates=False)},
    }))  # fmt: skip
    gate_cfg = tmp_path / "gate.yaml"
    gate_cfg.write_text(yaml.safe_dump({
        "redis": {"url": redis.url},
        "database": {"url": f"sqlite:///{tmp_path / 'history.db'}"},
        "crops_dir": str(tmp_path / "crops"),
        "http": {"port": free_port()},
        "gates": {"north": {
            "plate_camera": "rear", "overview_camera": "front", "merge_window_s": 10,
            "lists": {"allow": [{"plate": "M5XSX", "label": "resident"}]},
            "publish": [{"type": "jsonl", "path": str(tmp_path / "decisions.jsonl")}],
        }},
    }))  # fmt: skip
    gate = start_gate(gate_cfg, tmp_path / "gate.log")
    try:
        clients = [
            subprocess.Popen(
                [EDGE, "--camera", cam, "--config", str(edge_cfg), "--fresh"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for cam in ("rear", "front")
        ]
        for c in clients:
            _, err = c.communicate(timeout=300)
            assert c.returncode == 0, err[-3000:]
        front = [json.loads(x) for x in (tmp_path / "front.jsonl").read_text().splitlines()]
        assert front and all(e["kind"] == "vehicle" and e["plate"] == "" for e in front)

        def record() -> dict[str, Any] | None:
            items = gate.get("/api/records?gate=north")["items"]
            done = [r for r in items if r["plate"] and r["overview_camera"]]
            return done[0] if done else None

        rec = wait_for(record, 30, "a merged record")
        assert (rec["plate"], rec["decision"], rec["list_label"]) == ("M5XSX", "allow", "resident")
        assert (rec["plate_camera"], rec["overview_camera"]) == ("rear", "front")
        assert rec["vehicle_class"] in {"car", "truck"}
        assert rec["color"] in COLOURS
        assert rec["direction"] == "entry"
        assert rec["dwell_s"] > 0
        assert rec["overview_crop_url"] and rec["crop_url"]
        records = gate.get("/api/records?gate=north")["items"]
        assert sum(r["plate"] == "M5XSX" for r in records) == 1  # one vehicle, one record
        decisions = (tmp_path / "decisions.jsonl").read_text().splitlines()
        assert [json.loads(x)["decision"] for x in decisions] == ["allow"]
    finally:
        gate.stop()
        redis.stop()
