"""``plate_locator`` (the YOLO plate model alone, on letterboxed frames) against the real
server: boxes come back in source-frame pixels for any frame size and aspect, bad tensors
are refused per request while the server keeps serving, and frames of two cameras share
executions (Triton's own metrics)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from alpr_common.geometry import iou
from edge_client.triton_client import AlprClient
from ensemble.contracts import BOXES, COUNT, IMAGE, LOCATOR_SIZE, PLATE_LOCATOR, SOURCE_SIZE
from ensemble.ops.server_process import TritonProcess, inference_counts
from ensemble.preprocess import letterbox

pytestmark = pytest.mark.server


DEMO_FRAME, DEMO_BOX = 30, (745.0, 368.0, 1051.0, 441.0)  # plate 0 of the demo video


@pytest.fixture(scope="module")
def demo_frame(demo: tuple[Path, dict]) -> np.ndarray:
    video, truth = demo
    assert truth["plates"][0]["boxes"][str(DEMO_FRAME)] == list(DEMO_BOX)
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, DEMO_FRAME)
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame


def transformed(
    frame: np.ndarray, canvas_hw: tuple[int, int], scale: float, offset: tuple[int, int]
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """``frame`` scaled by ``scale`` and pasted at ``offset`` (x, y, may be negative: a
    crop) into a grey ``canvas_hw`` frame; returns it and the demo plate's box in it."""
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((*canvas_hw, 3), 60, np.uint8)
    ox, oy = offset
    sh, sw = small.shape[:2]
    x0, y0 = max(0, ox), max(0, oy)
    x1, y1 = min(canvas_hw[1], ox + sw), min(canvas_hw[0], oy + sh)
    canvas[y0:y1, x0:x1] = small[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    bx = tuple(v * scale + (ox if i % 2 == 0 else oy) for i, v in enumerate(DEMO_BOX))
    return canvas, bx  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("canvas_hw", "scale", "offset"),
    [
        ((720, 1280), 1.0, (0, 0)),  # the camera's own 16:9 frame
        ((1080, 1920), 1.5, (0, 0)),  # full HD
        ((960, 1280), 1.0, (0, 120)),  # 4:3, letterboxed vertically by the camera
        ((1280, 720), 0.5625, (0, 400)),  # portrait (a rotated camera)
        ((416, 416), 1.0, (-700, -250)),  # a crop at the model's own side: no padding
    ],
)
def test_boxes_are_in_source_pixels(
    triton: TritonProcess,
    demo_frame: np.ndarray,
    canvas_hw: tuple[int, int],
    scale: float,
    offset: tuple[int, int],
) -> None:
    frame, truth = transformed(demo_frame, canvas_hw, scale, offset)
    client = AlprClient(triton.grpc_url)
    try:
        assert client.input_side(PLATE_LOCATOR) == LOCATOR_SIZE
        (found,) = client.locate_plates([frame])
    finally:
        client.close()
    assert len(found) >= 1, f"no plate found in a {canvas_hw} frame"
    best = max(iou(tuple(map(float, b)), truth) for b in found.boxes)
    assert best >= 0.5, (found.boxes.tolist(), truth)
    h, w = canvas_hw
    assert (found.boxes[:, [0, 2]] >= -1).all() and (found.boxes[:, [0, 2]] <= w + 1).all()
    assert (found.boxes[:, [1, 3]] >= -1).all() and (found.boxes[:, [1, 3]] <= h + 1).all()
    assert ((found.scores > 0) & (found.scores <= 1)).all()


def test_an_empty_frame_has_no_plate(triton: TritonProcess) -> None:
    client = AlprClient(triton.grpc_url)
    try:
        (found,) = client.locate_plates([np.full((720, 1280, 3), 60, np.uint8)])
    finally:
        client.close()
    assert len(found) == 0


def _infer(url: str, image: np.ndarray, sizes: np.ndarray | None) -> np.ndarray:
    c = grpcclient.InferenceServerClient(url)
    try:
        dtype = {np.uint8: "UINT8", np.float32: "FP32"}[image.dtype.type]
        inputs = [grpcclient.InferInput(IMAGE, list(image.shape), dtype)]
        inputs[0].set_data_from_numpy(image)
        if sizes is not None:
            inputs.append(grpcclient.InferInput(SOURCE_SIZE, list(sizes.shape), "INT32"))
            inputs[1].set_data_from_numpy(sizes)
        res = c.infer(PLATE_LOCATOR, inputs)
        counts: np.ndarray = res.as_numpy(COUNT)
        assert res.as_numpy(BOXES) is not None
        return counts
    finally:
        c.close()


S = LOCATOR_SIZE
GOOD = np.zeros((1, S, S, 3), np.uint8)


@pytest.mark.parametrize(
    ("image", "sizes", "message"),
    [
        (np.zeros((1, S, S, 3), np.float32), None, "data type|dtype|FP32"),
        (np.zeros((1, 320, 320, 3), np.uint8), None, "shape|dims"),
        (GOOD, np.array([[0, 640]], np.int32), "SOURCE_SIZE"),
        (GOOD, np.array([[480, 0]], np.int32), "SOURCE_SIZE"),
        (GOOD, np.array([[100_000, 640]], np.int32), "SOURCE_SIZE"),
        (GOOD, np.array([[-5, -5]], np.int32), "SOURCE_SIZE"),
    ],
)
def test_bad_tensors_are_refused_and_the_server_keeps_serving(
    triton: TritonProcess, image: np.ndarray, sizes: np.ndarray | None, message: str
) -> None:
    with pytest.raises(InferenceServerException, match=re.compile(message, re.I)):
        _infer(triton.grpc_url, image, sizes)
    assert _infer(triton.grpc_url, GOOD, np.array([[480, 640]], np.int32)).tolist() == [[0]]


def test_frames_of_two_cameras_are_batched_together(
    triton: TritonProcess, demo_frame: np.ndarray
) -> None:
    """Two cameras (two connections) with frames pending at the same time, as when the
    server is the bottleneck: Triton's dynamic batcher runs frames of both in one
    execution, so executions < inferences for plate_locator."""
    side = LOCATOR_SIZE
    frames = [transformed(demo_frame, (720, 1280), 1.0, (40 * k, 0))[0] for k in range(2)]
    before = inference_counts(triton.metrics_url, PLATE_LOCATOR)
    done = threading.Semaphore(0)
    errors: list[object] = []
    clients = [grpcclient.InferenceServerClient(triton.grpc_url) for _ in frames]

    def callback(result: object, error: object) -> None:
        if error is not None:
            errors.append(error)
        done.release()

    try:
        for _ in range(12):
            for client, frame in zip(clients, frames, strict=True):
                boxed, _ = letterbox(frame[..., ::-1], side)
                inputs = [
                    grpcclient.InferInput(IMAGE, [1, side, side, 3], "UINT8"),
                    grpcclient.InferInput(SOURCE_SIZE, [1, 2], "INT32"),
                ]
                inputs[0].set_data_from_numpy(np.ascontiguousarray(boxed[None]))
                inputs[1].set_data_from_numpy(np.array([frame.shape[:2]], np.int32))
                client.async_infer(PLATE_LOCATOR, inputs, callback)
        for _ in range(24):
            assert done.acquire(timeout=120)
    finally:
        for client in clients:
            client.close()
    assert not errors, errors
    after = inference_counts(triton.metrics_url, PLATE_LOCATOR, at_least=before[0] + 24)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 24
    assert executions < inferences, (inferences, executions)


def test_requests_in_flight_at_once_each_use_their_own_shared_memory(
    triton: TritonProcess, demo_frame: np.ndarray
) -> None:
    """A camera detecting ahead (``runtime.detect_ahead``) has several requests in flight
    on one client: each leases its own registered region, so no frame is overwritten by
    the next one before the server reads it; every answer is its own frame's, and the
    regions are unregistered when the client closes."""
    offsets = [(40 * k, 30 * k) for k in range(6)]
    frames = [transformed(demo_frame, (720, 1280), 1.0, off) for off in offsets]
    shared = AlprClient(triton.grpc_url, shared_memory=True)
    plain = AlprClient(triton.grpc_url)
    found: dict[int, np.ndarray] = {}
    start = threading.Barrier(3)

    wrong: list[str] = []

    def camera(k: int) -> None:
        start.wait()
        for _ in range(4):
            for i in range(k, len(frames), 3):
                (got,) = shared.locate_plates([frames[i][0]])
                best = max(range(len(got)), key=lambda j: float(got.scores[j]), default=None)
                box = None if best is None else tuple(map(float, got.boxes[best]))
                if box is None or iou(box, frames[i][1]) < 0.5:
                    wrong.append(f"frame {i}: {box} is not {frames[i][1]}")
                found[i] = np.asarray(box)

    try:
        threads = [threading.Thread(target=camera, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not wrong, wrong
        assert sorted(found) == list(range(len(frames)))  # every thread ran to the end
        names = shared.shm_regions
        assert 1 <= len(names) <= 3 and set(names) <= _regions(plain)
        sizes = _region_sizes(plain)  # each sized for its request: one 416 px frame
        assert all(sizes[n] == LOCATOR_SIZE * LOCATOR_SIZE * 3 for n in names), sizes
    finally:
        shared.close()
    assert not set(names) & _regions(plain)
    plain.close()


def _regions(client: AlprClient) -> set[str]:
    return set(_region_sizes(client))


def _region_sizes(client: AlprClient) -> dict[str, int]:
    regions = client.client.get_system_shared_memory_status(as_json=True).get("regions", {})
    listed = regions.values() if isinstance(regions, dict) else regions
    return {r["name"]: int(r.get("byte_size", 0)) for r in listed}


def test_the_provisioned_locator_network_is_the_plate_detectors(weights: Path) -> None:
    """One YOLO plate network, installed for both models by ``alpr-models fetch``."""
    from ensemble.ops.provision import sha256_of

    a = weights / "plate_detector" / "1" / "yolo_plate.onnx"
    b = weights / "plate_locator" / "1" / "yolo_plate.onnx"
    assert sha256_of(a) == sha256_of(b)


def test_letterbox_side_matches_the_config() -> None:
    boxed, _ = letterbox(np.zeros((720, 1280, 3), np.uint8), LOCATOR_SIZE)
    assert boxed.shape == (LOCATOR_SIZE, LOCATOR_SIZE, 3)
