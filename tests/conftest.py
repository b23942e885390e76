"""Shared fixtures: a real tritonserver on free ports, model paths, the shared data set."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = REPO / "model_repository"
SHARED_DATA = REPO.parent / "shared" / "data" / "openalpr-eu"
sys.path.insert(0, str(Path(__file__).resolve().parent))

REQUIRED_WEIGHTS = [
    MODEL_REPOSITORY / "vehicle_detector/1/model.onnx",
    MODEL_REPOSITORY / "plate_detector/1/ppocr_det.onnx",
    MODEL_REPOSITORY / "plate_ocr/1/ppocr_rec.onnx",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def weights() -> Path:
    missing = [str(p.relative_to(REPO)) for p in REQUIRED_WEIGHTS if not p.is_file()]
    if missing:
        pytest.fail(f"model weights missing ({', '.join(missing)}): run `alpr-models fetch` first")
    return MODEL_REPOSITORY


@pytest.fixture(scope="session")
def openalpr_eu() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} absent (development data set not available)")
    return SHARED_DATA


class TritonProcess:
    def __init__(self, grpc_url: str, http_url: str, proc: subprocess.Popen[bytes], log: Path):
        self.grpc_url, self.http_url, self.proc, self.log = grpc_url, http_url, proc, log

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False


def start_triton(repository: Path, log: Path, timeout_s: float = 180) -> TritonProcess:
    exe = shutil.which("tritonserver", path=str(Path(sys.executable).parent)) or "tritonserver"
    http, grpc, metrics = free_port(), free_port(), free_port()
    cmd = [
        exe, "--model-repository", str(repository), "--http-port", str(http),
        "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--log-verbose", "0",
    ]  # fmt: skip
    out = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    server = TritonProcess(f"127.0.0.1:{grpc}", f"http://127.0.0.1:{http}", proc, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"tritonserver exited early:\n{log.read_text()[-3000:]}")
        if server.ready():
            return server
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"tritonserver not ready after {timeout_s}s:\n{log.read_text()[-3000:]}")


def stop_triton(server: TritonProcess) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def triton(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """A real tritonserver serving the repository's model_repository/ on free ports."""
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = start_triton(weights, log)
    yield server
    stop_triton(server)
