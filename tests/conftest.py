"""Shared fixtures: a real tritonserver on free ports, model paths, the shared data set."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ensemble.ops.server_process import TritonProcess, free_port, start_triton

__all__ = ["TritonProcess", "free_port", "start_triton", "stop_triton"]

REPO = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = REPO / "model_repository"
SHARED_DATA = REPO.parent / "shared" / "data" / "openalpr-eu"
sys.path.insert(0, str(Path(__file__).resolve().parent))

REQUIRED_WEIGHTS = [
    MODEL_REPOSITORY / "vehicle_detector/1/model.onnx",
    MODEL_REPOSITORY / "plate_detector/1/ppocr_det.onnx",
    MODEL_REPOSITORY / "plate_ocr/1/ppocr_rec.onnx",
    MODEL_REPOSITORY / "plate_ocr/1/plate_rec.onnx",
]


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


def stop_triton(server: TritonProcess) -> None:
    server.stop()


@pytest.fixture(scope="session")
def triton(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """A real tritonserver serving the repository's model_repository/ on free ports."""
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = start_triton(weights, log)
    yield server
    stop_triton(server)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The synthetic demo video (6 plates) and its ground truth."""
    import json

    from edge_client.tools.demo_video import generate

    video, truth = generate(tmp_path_factory.mktemp("demo"), font="hershey")
    return video, json.loads(truth.read_text())
