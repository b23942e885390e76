"""Faults with real processes: the server is killed and restarted, Redis stops and returns.

Bounded in time: each test processes the 21 s demo video once (about 35 s on 2 cores).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import MODEL_REPOSITORY, start_triton
from redis_server import start_redis
from test_edge_e2e import EDGE, events, write_config

from ensemble.server_process import free_port

pytestmark = pytest.mark.server


def wait_events(tmp: Path, n: int, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(events(tmp)) < n and proc.poll() is None:
        time.sleep(0.2)
    assert len(events(tmp)) >= n, "the client should have reported by now"


def test_tritonserver_killed_and_restarted(
    weights: Path, demo: tuple[Path, dict], tmp_path: Path
) -> None:
    video, truth = demo
    ports = (free_port(), free_port(), free_port())
    server = start_triton(MODEL_REPOSITORY, tmp_path / "triton.log", ports=ports)
    redis_proc = start_redis(tmp_path / "redis")
    config = write_config(tmp_path, server.grpc_url, redis_proc.url, video)
    proc = subprocess.Popen(
        [EDGE, "--camera", "demo", "--config", str(config), "--fresh", "--summary",
         str(tmp_path / "summary.json")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        wait_events(tmp_path, 2, proc)
        server.proc.send_signal(signal.SIGKILL)  # the server dies mid-run
        server.proc.wait(10)
        time.sleep(3)  # the client keeps decoding and backing off meanwhile
        assert proc.poll() is None, "the client must survive the outage"
        server = start_triton(MODEL_REPOSITORY, tmp_path / "triton.log", ports=ports)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
        redis_proc.stop()
    assert proc.returncode == 0, out[-3000:]
    plates = [e["plate"] for e in events(tmp_path)]
    assert sorted(plates) == sorted(p["plate"] for p in truth["plates"]), out[-3000:]
    assert len(plates) == len(set(plates))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["detect_failures"] >= 1 and "detection failed" in out


def test_redis_stopped_and_restarted(
    triton,
    demo: tuple[Path, dict],
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    video, truth = demo
    redis_proc = start_redis(tmp_path / "redis")
    config = write_config(tmp_path, triton.grpc_url, redis_proc.url, video)
    proc = subprocess.Popen(
        [EDGE, "--camera", "demo", "--config", str(config), "--fresh"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_events(tmp_path, 1, proc)
        redis_proc.stop()
        wait_events(tmp_path, 3, proc)  # reports go on from the local buffer
        redis_proc.start()
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
        plates = [e["plate"] for e in events(tmp_path)]
        assert sorted(plates) == sorted(p["plate"] for p in truth["plates"]), out[-3000:]
        assert len(plates) == len(set(plates))
        # a second client on the same Redis after reconciliation reports nothing again
        done = subprocess.run(
            [EDGE, "--camera", "demo", "--config", str(config)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0 and len(events(tmp_path)) == len(plates)
    finally:
        if proc.poll() is None:
            proc.kill()
        redis_proc.stop()
