"""Against a real tritonserver serving model_repository/ (session fixture `triton`)."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import TritonProcess
from synth import jpeg, png, render_plate, render_vehicle, with_declared_size
from tritonclient.utils import InferenceServerException

from edge_client.triton_client import AlprClient, InferenceError
from ensemble.contracts import Box
from ensemble.plates import best_plate

pytestmark = pytest.mark.server

PLATES = ["AB123CD", "KA01MJ2024", "7ABC123", "M5XSX", "XY99ZZQ", "BX4821T"]


@pytest.fixture(scope="module")
def client(triton: TritonProcess) -> AlprClient:
    return AlprClient(triton.grpc_url)


def assert_serving(client: AlprClient) -> None:
    """The server is alive and the next good request succeeds."""
    img, _ = render_vehicle("GOOD123")
    assert best_plate(client.read_plates([jpeg(img)])[0]).text == "GOOD123"  # type: ignore[union-attr]


# --- every model and the ensemble ---------------------------------------------------
def test_models_ready(triton: TritonProcess) -> None:
    c = grpcclient.InferenceServerClient(triton.grpc_url)
    for name in ("vehicle_detector", "plate_detector", "plate_ocr", "alpr"):
        assert c.is_model_ready(name), name


@pytest.mark.parametrize("text", PLATES)
def test_rendered_plate_reads_exactly_through_alpr(client: AlprClient, text: str) -> None:
    img, (x, y, w, h) = render_vehicle(text)
    reads = client.read_plates([jpeg(img)])[0]
    best = best_plate(reads)
    assert best is not None and best.text == text
    assert best.box.iou(Box(x, y, x + w, y + h)) > 0.5
    assert 0.9 <= best.confidence <= 1.0 and len(best.char_confidences) == len(text)
    assert all(0.0 <= c <= 1.0 for c in best.char_confidences)


def test_plate_ocr_reads_plate_crops_batched(client: AlprClient) -> None:
    crops = [jpeg(render_plate(t)) for t in PLATES] + [png(render_plate("PNG42"))]
    reads = client.read_plate_crops(crops)
    assert [r[0] for r in reads] == [*PLATES, "PNG42"]


def test_plate_detector_alone_returns_crops(triton: TritonProcess) -> None:
    img, (x, y, w, h) = render_vehicle("AB123CD")
    c = grpcclient.InferenceServerClient(triton.grpc_url)
    inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[jpeg(img)]], dtype=object))
    res = c.infer("plate_detector", [inp])
    n = int(res.as_numpy("PLATE_COUNT")[0, 0])
    assert n >= 1
    assert res.as_numpy("PLATE_CROPS").shape == (1, 8, 48, 320, 3)
    assert Box(*res.as_numpy("PLATE_BOXES")[0, 0]).iou(Box(x, y, x + w, y + h)) > 0.5


def test_vehicle_detector_finds_car_in_frame_coordinates(
    client: AlprClient, openalpr_eu: Path
) -> None:
    frame = cv2.imread(str(openalpr_eu / "eu1.jpg"))
    big = cv2.resize(frame, None, fx=2.0, fy=2.0)
    small, large = client.detect_vehicles([frame, big])
    assert small and small[0].label in {"car", "truck", "bus", "motorcycle"}
    h, w = frame.shape[:2]
    for d in small:
        assert 0 <= d.box.x1 < d.box.x2 <= w and 0 <= d.box.y1 < d.box.y2 <= h
        assert 0.25 <= d.score <= 1.0
    # the same scene at twice the size: boxes scale with it (source-pixel coordinates)
    assert large[0].box.x2 == pytest.approx(2 * small[0].box.x2, rel=0.05)


def test_vehicle_detector_empty_scene(client: AlprClient) -> None:
    assert client.detect_vehicles([np.full((720, 1280, 3), 127, np.uint8)]) == [[]]


# --- bad input: a clear per-request error, then the server keeps serving ------------
_GOOD = jpeg(render_vehicle("AB123CD")[0])
BAD_IMAGES = {
    "empty": (b"", "empty image"),
    "garbage": (b"\x00\x01garbage" * 10, "unsupported or corrupt"),
    "truncated-jpeg": (_GOOD[: len(_GOOD) // 3], "truncated JPEG"),
    "truncated-png": (png(render_plate("X"))[:-40], "truncated PNG"),
    "bomb-60000x60000": (with_declared_size(_GOOD, 60000, 60000), "60000x60000"),
    "random-bytes": (np.random.default_rng(1).bytes(20000), "unsupported or corrupt"),
}


@pytest.mark.parametrize("model", ["alpr", "plate_detector"])
@pytest.mark.parametrize("case", list(BAD_IMAGES), ids=list(BAD_IMAGES))
def test_bad_image_bytes_get_clear_error(
    triton: TritonProcess, client: AlprClient, model: str, case: str
) -> None:
    data, message = BAD_IMAGES[case]
    c = grpcclient.InferenceServerClient(triton.grpc_url)
    inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[data]], dtype=object))
    with pytest.raises(InferenceServerException, match=message):
        c.infer(model, [inp])
    assert_serving(client)


@pytest.mark.parametrize("case", ["empty", "truncated-jpeg", "bomb-60000x60000"])
def test_bad_plate_crop_gets_clear_error(client: AlprClient, case: str) -> None:
    data, message = BAD_IMAGES[case]
    with pytest.raises(InferenceError, match=message):
        client.read_plate_crops([data])
    assert client.read_plate_crops([jpeg(render_plate("AB123CD"))])[0][0] == "AB123CD"


def _raw(triton: TritonProcess, model: str, name: str, arr: np.ndarray, dtype: str) -> None:
    c = grpcclient.InferenceServerClient(triton.grpc_url)
    inp = grpcclient.InferInput(name, list(arr.shape), dtype)
    inp.set_data_from_numpy(arr)
    c.infer(model, [inp])


WRONG_TENSORS = [
    ("vehicle_detector", "IMAGE", np.zeros((1, 640, 640, 3), np.float32), "FP32", "data-type"),
    ("vehicle_detector", "IMAGE", np.zeros((1, 320, 320, 3), np.uint8), "UINT8", "shape"),
    (
        "vehicle_detector",
        "IMAGE",
        np.zeros((0, 640, 640, 3), np.uint8),
        "UINT8",
        "byte size mismatch",
    ),
    ("vehicle_detector", "IMAGE", np.zeros((17, 640, 640, 3), np.uint8), "UINT8", "batch"),
    ("vehicle_detector", "NOPE", np.zeros((1, 640, 640, 3), np.uint8), "UINT8", "NOPE"),
    ("alpr", "IMAGE", np.zeros((1, 1), np.int32), "INT32", "data-type"),
    ("alpr", "IMAGE", np.array([[b"a", b"b"]], dtype=object), "BYTES", "shape"),
    ("plate_ocr", "PLATE_COUNT", np.zeros((1, 1), np.int32), "INT32", "PLATE_IMAGE or PLATE_CROPS"),
]


@pytest.mark.parametrize(("model", "name", "arr", "dtype", "message"), WRONG_TENSORS,
                         ids=[f"{m}-{n}-{a.dtype}-{a.shape[0]}"
                              for m, n, a, _, _ in WRONG_TENSORS])  # fmt: skip
def test_wrong_dtype_shape_or_name_rejected(
    triton: TritonProcess,
    client: AlprClient,
    model: str,
    name: str,
    arr: np.ndarray,
    dtype: str,
    message: str,
) -> None:
    with pytest.raises(InferenceServerException, match=message):
        _raw(triton, model, name, arr, dtype)
    assert_serving(client)


def test_vehicle_detector_rejects_absurd_source_size(triton: TritonProcess) -> None:
    c = grpcclient.InferenceServerClient(triton.grpc_url)
    img = grpcclient.InferInput("IMAGE", [1, 640, 640, 3], "UINT8")
    img.set_data_from_numpy(np.zeros((1, 640, 640, 3), np.uint8))
    size = grpcclient.InferInput("SOURCE_SIZE", [1, 2], "INT32")
    size.set_data_from_numpy(np.array([[60000, 60000]], np.int32))
    with pytest.raises(InferenceServerException, match="SOURCE_SIZE"):
        c.infer("vehicle_detector", [img, size])


def test_bad_request_in_a_dynamic_batch_fails_alone(triton: TritonProcess) -> None:
    """Concurrent requests share dynamic batches; only the bad ones fail."""
    texts = ["AB123CD", "XY99ZZQ", "BX4821T", "M5XSX"]
    payloads: list[tuple[str, bytes]] = []
    for i in range(24):
        if i % 4 == 1:
            payloads.append(("bad", BAD_IMAGES["truncated-jpeg"][0]))
        else:
            t = texts[i % 4]
            payloads.append((t, jpeg(render_vehicle(t)[0])))

    def one(item: tuple[str, bytes]) -> str:
        c = AlprClient(triton.grpc_url)
        try:
            best = best_plate(c.read_plates([item[1]])[0])
            return best.text if best else ""
        except InferenceError as exc:
            return f"error: {exc}"
        finally:
            c.close()

    stats0 = _exec_stats(triton, "plate_detector")
    with cf.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, payloads))
    for (want, _), got in zip(payloads, results, strict=True):
        if want == "bad":
            assert got.startswith("error:") and "truncated JPEG" in got
        else:
            assert got == want
    inferences, executions = (
        a - b for a, b in zip(_exec_stats(triton, "plate_detector"), stats0, strict=True)
    )
    assert inferences == len(payloads)
    assert executions < inferences, "requests should have been batched together"


def _exec_stats(triton: TritonProcess, model: str) -> tuple[int, int]:
    c = grpcclient.InferenceServerClient(triton.grpc_url)
    s = c.get_inference_statistics(model).model_stats[0]
    return int(s.inference_count), int(s.execution_count)


# --- real photographs (../shared/data/openalpr-eu) -----------------------------------
def _label(txt: Path) -> tuple[str, Box, str]:
    name, x, y, w, h, plate = txt.read_text().strip().split("\t")
    x0, y0 = float(x), float(y)
    return name, Box(x0, y0, x0 + float(w), y0 + float(h)), plate.strip()


def _loose(s: str) -> str:
    return s.translate(str.maketrans("OI", "01"))


@pytest.mark.data
def test_real_photographs_found_and_read(triton: TritonProcess, openalpr_eu: Path) -> None:
    labels = [_label(t) for t in sorted(openalpr_eu.glob("*.txt"))]
    assert len(labels) >= 100

    def one(label: tuple[str, Box, str]) -> tuple[bool, bool, bool]:
        name, box, plate = label
        c = AlprClient(triton.grpc_url)
        try:
            reads = c.read_plates([(openalpr_eu / name).read_bytes()])[0]
        finally:
            c.close()
        found = any(r.box.iou(box) >= 0.5 for r in reads)
        best = best_plate(reads)
        text = best.text if best else ""
        return found, text == plate, _loose(text) == _loose(plate)

    with cf.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, labels))
    n = len(results)
    recall = sum(r[0] for r in results) / n
    exact = sum(r[1] for r in results) / n
    loose = sum(r[2] for r in results) / n
    print(
        f"openalpr-eu via alpr ensemble: recall={recall:.3f} exact={exact:.3f} "
        f"O0/I1-loose={loose:.3f}"
    )
    # The raw ensemble on whole photos, no formats (the full client path with formats is
    # test_evaluate's smoke test); measured with the YOLO + PP-OCR-lines engine: recall
    # 0.99, exact 0.815, loose 0.963 (PP-OCR proposer alone: 0.98, 0.82, 0.96).
    assert recall >= 0.95
    assert exact >= 0.75
    assert loose >= 0.90


def test_vehicle_detector_through_system_shared_memory(triton: TritonProcess) -> None:
    """The same-host path: frames in a registered shm region give the gRPC results."""
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (480, 640, 3), np.uint8) for _ in range(2)]
    img, _ = render_vehicle("AB123CD")
    frames.append(img)
    plain = AlprClient(triton.grpc_url)
    shared = AlprClient(triton.grpc_url, shared_memory=True)
    try:
        for _ in range(2):  # the region is reused across calls
            assert shared.detect_vehicles(frames) == plain.detect_vehicles(frames)
        names = shared.shm_regions
        assert len(names) == 1 and names[0] in _regions(shared)  # one request at a time
    finally:
        names = shared.shm_regions
        shared.close()
    assert names and not set(names) & _regions(plain)


def _regions(client: AlprClient) -> set[str]:
    regions = client.client.get_system_shared_memory_status(as_json=True).get("regions", {})
    return set(regions) if isinstance(regions, dict) else {r["name"] for r in regions}
