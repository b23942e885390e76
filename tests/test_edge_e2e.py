"""edge-client end to end: real tritonserver, real redis-server, real models, demo video.

The client runs as a subprocess exactly as a user runs it (`edge-client --camera demo`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import TritonProcess
from redis_server import RedisProc, start_redis

pytestmark = pytest.mark.server
EDGE = str(Path(sys.executable).parent / "edge-client")
MAX_RETRIES = 2


@pytest.fixture(scope="module")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProc]:
    proc = start_redis(tmp_path_factory.mktemp("redis"))
    yield proc
    proc.stop()


def write_config(tmp: Path, triton_url: str, redis_url: str, video: Path) -> Path:
    cfg = {
        "triton": {"urls": [triton_url]},
        "redis": {"url": redis_url},
        "output_dir": str(tmp / "out"),
        "status_interval_s": 2,
        "cameras": {
            "demo": {
                "source": str(video),
                "mode": "plates",
                "regions": ["uk", "eu", "us", "br"],
                "thresholds": {"detection": 0.5, "min_box_px": 20, "stable_frames": 3,
                               "read_confidence": 0.9, "max_retries": MAX_RETRIES},
                "tracking": {"high_score": 0.5, "low_score": 0.3, "match_iou": 0.1,
                             "lost_frames": 10},
                "dedup_window_s": 30,
                "sinks": [{"type": "jsonl", "path": str(tmp / "events.jsonl")}],
            }
        },
    }  # fmt: skip
    path = tmp / "edge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_edge(config: Path, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGE, "--camera", "demo", "--config", str(config), *extra],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def events(tmp: Path) -> list[dict]:
    path = tmp / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_demo_video_one_event_per_plate(
    triton: TritonProcess, redis_proc: RedisProc, demo: tuple[Path, dict], tmp_path: Path
) -> None:
    video, truth = demo
    config = write_config(tmp_path, triton.grpc_url, redis_proc.url, video)
    done = run_edge(config, "--fresh", "--summary", str(tmp_path / "summary.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    got = events(tmp_path)
    want = sorted(p["plate"] for p in truth["plates"])
    assert sorted(e["plate"] for e in got) == want, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    # read once per track: OCR calls within the number of tracks plus the retry budget
    assert summary["reads"] <= summary["tracks"] + MAX_RETRIES
    assert summary["reads"] < summary["frames"] / 10
    for e in got:
        assert e["camera"] == "demo" and 0.0 < e["confidence"] <= 1.0
        assert e["first_seen"] <= e["last_seen"] and e["latency_ms"] >= 0
        assert Path(e["crop_path"]).is_file()
        truth_plate = next(p for p in truth["plates"] if p["plate"] == e["plate"])
        assert truth_plate["first_frame"] <= e["frame"] <= truth_plate["last_frame"]
    # the track cache knows every reported track, through the alpr-cache CLI
    cache = subprocess.run(
        [str(Path(sys.executable).parent / "alpr-cache"), "--redis", redis_proc.url, "stats",
         "demo", "--json"], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert cache.returncode == 0, cache.stderr
    (stats,) = json.loads(cache.stdout)
    assert stats["camera"] == "demo" and stats["status"]["read"] == len(want)


def test_restart_halfway_reports_nothing_twice(
    triton: TritonProcess, redis_proc: RedisProc, demo: tuple[Path, dict], tmp_path: Path
) -> None:
    video, truth = demo
    config = write_config(tmp_path, triton.grpc_url, redis_proc.url, video)
    proc = subprocess.Popen(
        [EDGE, "--camera", "demo", "--config", str(config), "--fresh"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(events(tmp_path)) < 2 and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # a crash, not a polite stop
    proc.wait(30)
    first = [e["plate"] for e in events(tmp_path)]
    assert 2 <= len(first) < len(truth["plates"]), "the client should be stopped halfway"
    done = run_edge(config)  # same camera, same Redis: resumes
    assert done.returncode == 0, done.stderr[-3000:]
    plates = [e["plate"] for e in events(tmp_path)]
    assert sorted(plates) == sorted(p["plate"] for p in truth["plates"])
    assert len(plates) == len(set(plates)), f"reported twice: {plates}"
    done = run_edge(config)  # and once more after a clean end: nothing new
    assert done.returncode == 0
    assert len(events(tmp_path)) == len(plates)


def test_invalid_config_names_key_and_value(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  demo:\n    source: x.mp4\n    process_every: 0\n    colour: red\n")
    done = run_edge(bad, timeout=60)
    assert done.returncode == 2
    assert "cameras.demo.process_every" in done.stderr and "0" in done.stderr
    assert "cameras.demo.colour" in done.stderr and "Extra inputs" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_triton_is_a_clear_error(tmp_path: Path, demo: tuple[Path, dict]) -> None:
    config = write_config(tmp_path, "127.0.0.1:9", "redis://127.0.0.1:9/0", demo[0])
    done = run_edge(config, "--wait-triton", "2", timeout=60)
    assert done.returncode == 3
    assert "Triton is not reachable at 127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_redis_still_reports_once(
    triton: TritonProcess, demo: tuple[Path, dict], tmp_path: Path
) -> None:
    video, truth = demo
    config = write_config(tmp_path, triton.grpc_url, "redis://127.0.0.1:9/0", video)
    done = run_edge(config)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Redis at redis://127.0.0.1:9/0 is unreachable" in done.stderr
    assert "Traceback" not in done.stderr
    plates = [e["plate"] for e in events(tmp_path)]
    assert sorted(plates) == sorted(p["plate"] for p in truth["plates"])


@pytest.mark.parametrize("env", [{}])
def test_cache_cli_unreachable(env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "alpr-cache"), "--redis", "redis://127.0.0.1:9/0",
         "stats"],
        capture_output=True, text=True, timeout=30, env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr


def panning_video(photo: Path, out: Path, frames: int = 45) -> Path:
    """A real car photograph sliding across a road-grey 1280x720 frame (vehicles mode)."""
    import cv2
    import numpy as np

    car = cv2.imread(str(photo))
    scale = 560 / car.shape[1]
    car = cv2.resize(car, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = car.shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 15, (1280, 720))
    for i in range(frames):
        frame = np.full((720, 1280, 3), 96, np.uint8)
        x = 40 + i * (1280 - w - 80) // frames
        frame[(720 - h) // 2 : (720 - h) // 2 + h, x : x + w] = car
        writer.write(frame)
    writer.release()
    return out


@pytest.mark.data
def test_vehicles_mode_reads_a_real_car_once(
    triton: TritonProcess, redis_proc: RedisProc, openalpr_eu: Path, tmp_path: Path
) -> None:
    video = panning_video(openalpr_eu / "eu1.jpg", tmp_path / "pan.mp4")
    config = write_config(tmp_path, triton.grpc_url, redis_proc.url, video)
    doc = yaml.safe_load(config.read_text())
    cam = doc["cameras"]["demo"]
    cam.update(mode="vehicles", regions=["uk", "eu"])
    cam["thresholds"].update(min_box_px=48, detection=0.3)
    cam["tracking"].update(high_score=0.4, low_score=0.2, match_iou=0.3)
    config.write_text(yaml.safe_dump(doc))
    done = run_edge(config, "--fresh", "--summary", str(tmp_path / "summary.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    plates = [e["plate"] for e in events(tmp_path)]
    assert plates.count("M5XSX") == 1, (plates, done.stderr[-2000:])
    car = next(e for e in events(tmp_path) if e["plate"] == "M5XSX")
    assert car["vehicle_class"] in {"car", "truck"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["reads"] <= summary["tracks"] + MAX_RETRIES
