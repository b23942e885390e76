"""The YOLO plate detector engine: input sizing, box geometry, refinement of YOLO boxes
into text lines (fake networks), the provisioned ONNX on rendered and real plates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from synth import render_vehicle

from ensemble import text_det
from ensemble.contracts import MAX_PLATES, Box
from ensemble.engines import (
    REFINE_PARAMS,
    PlateProposer,
    YoloPlateProposer,
    expand_box,
    yolo_size,
)
from ensemble.ops.onnx_tools import validate_yolo_onnx
from ensemble.text_det import box_quads


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((100, 200), 320),  # small vehicle crop: not blown up past min_size
        ((432, 576), 576),  # a photo: its long side, a multiple of 32
        ((430, 577), 608),  # rounded up
        ((720, 1280), 640),  # a frame: capped at max_size
        ((640, 320), 640),  # portrait: the long side counts
    ],
)
def test_yolo_size(hw: tuple[int, int], expected: int) -> None:
    assert yolo_size(*hw, min_size=320, max_size=640) == expected


@pytest.mark.parametrize(
    ("box", "margin", "expected"),
    [
        ((100, 50, 200, 70), (0.1, 0.25), (90, 45, 210, 75)),
        ((0, 0, 50, 20), (0.1, 0.5), (0, 0, 55, 30)),  # clipped at the top-left
        ((280, 180, 300, 200), (0.5, 0.5), (270, 170, 300, 200)),  # and bottom-right
    ],
)
def test_expand_box(
    box: tuple[int, ...], margin: tuple[float, float], expected: tuple[int, ...]
) -> None:
    got = expand_box(np.array(box, np.float32), (200, 300), *margin)
    assert tuple(int(v) for v in got) == expected


def test_box_quads_clockwise_from_top_left() -> None:
    q = box_quads(np.array([[1, 2, 3, 4]], np.float32))
    assert q.tolist() == [[[1, 2], [3, 2], [3, 4], [1, 4]]]
    assert box_quads(np.zeros((0, 4), np.float32)).shape == (0, 4, 2)


def test_proposals_shift_rescore_concat() -> None:
    a = text_det.Proposals.single(box_quads(np.array([[0, 0, 10, 5]], np.float32)), [0.9])
    b = a.shifted(100, 50).rescored(0.4)
    assert b.quads[0].tolist() == [[100, 50], [110, 50], [110, 55], [100, 55]]
    assert (b.lines[0] == b.quads[0]).all() and b.scores.tolist() == pytest.approx([0.4])
    both = text_det.Proposals.concat([a, b])
    assert len(both) == 2 and both.first(1).scores.tolist() == pytest.approx([0.9])
    assert len(text_det.Proposals.concat([])) == 0


def yolo_raw(boxes: Sequence[tuple[float, float, float, float, float]], size: int) -> np.ndarray:
    """A single-class YOLO output [5, anchors] holding ``boxes`` (cx, cy, w, h, score) in
    network-input pixels."""
    raw = np.zeros((5, 64), np.float32)
    raw[:4] = size / 2
    for k, (cx, cy, w, h, s) in enumerate(boxes):
        raw[:, k] = (cx, cy, w, h, s)
    return raw


class FakeNet:
    """A YOLO network returning the same boxes for every image of a batch."""

    def __init__(self, boxes: Sequence[tuple[float, float, float, float, float]]) -> None:
        self.boxes = boxes
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.shapes.append(x.shape)
        return np.stack([yolo_raw(self.boxes, x.shape[2])] * len(x))


class FakeLines:
    """A text-line detector that finds one line in the middle third of each crop, or
    nothing in crops narrower than ``min_width``."""

    def __init__(self, min_width: int = 0) -> None:
        self.min_width = min_width
        self.crops: list[tuple[int, int]] = []

    def propose_many(self, images_bgr: Sequence[np.ndarray]) -> list[text_det.Proposals]:
        out = []
        for im in images_bgr:
            h, w = im.shape[:2]
            self.crops.append((h, w))
            if w < self.min_width:
                out.append(text_det.Proposals.single(np.zeros((0, 4, 2)), np.zeros((0,))))
                continue
            line = box_quads(np.array([[w / 4, h / 3, 3 * w / 4, 2 * h / 3]], np.float32))
            out.append(text_det.Proposals.single(line, [0.99]))
        return out


def test_yolo_boxes_map_to_source_pixels() -> None:
    # a 640x640 fixed net; a 1280x640 frame is letterboxed at scale 0.5 with 160 px of
    # padding above and below
    net = FakeNet([(320, 320, 100, 40, 0.9), (100, 200, 60, 20, 0.5), (10, 10, 5, 5, 0.1)])
    prop = YoloPlateProposer(None, net=net)
    (p,) = prop.propose_many([np.zeros((640, 1280, 3), np.uint8)])
    boxes = text_det.quad_to_box(p.quads)
    np.testing.assert_allclose(boxes, [[540, 280, 740, 360], [140, 60, 260, 100]], atol=1e-3)
    assert p.scores.tolist() == pytest.approx([0.9, 0.5])  # 0.1 is under the threshold
    assert (p.rows == 1).all() and net.shapes == [(1, 3, 640, 640)]


def test_refined_lines_come_first_in_image_coordinates() -> None:
    net = FakeNet([(320, 320, 100, 40, 0.9)])
    lines = FakeLines()
    prop = YoloPlateProposer(None, net=net, refine=lines, margin=(0.0, 0.0), keep_box=True)
    (p,) = prop.propose_many([np.zeros((640, 640, 3), np.uint8)])
    assert lines.crops == [(40, 100)]  # the YOLO box, cut out
    boxes = text_det.quad_to_box(p.quads)
    # the line found in the crop, shifted to the image, scored as its plate box; then
    # the box itself
    np.testing.assert_allclose(
        boxes, [[295, 313.3333, 345, 326.6667], [270, 300, 370, 340]], atol=1e-3
    )
    assert p.scores.tolist() == pytest.approx([0.9, 0.9])


def test_box_is_read_where_no_line_is_found() -> None:
    net = FakeNet([(320, 320, 100, 40, 0.9), (100, 100, 30, 10, 0.8)])
    prop = YoloPlateProposer(None, net=net, refine=FakeLines(min_width=50), margin=(0.0, 0.0))
    (p,) = prop.propose_many([np.zeros((640, 640, 3), np.uint8)])
    boxes = text_det.quad_to_box(p.quads)
    # first plate: its line only (keep_box off); second: no line, so its own box
    np.testing.assert_allclose(
        boxes, [[295, 313.3333, 345, 326.6667], [85, 95, 115, 105]], atol=1e-3
    )


class LeftCutLines(FakeLines):
    """Finds a line running into the left side of a crop narrower than 120 px (part of
    a long plate), and the whole line, in its middle, in a wider crop."""

    def propose_many(self, images_bgr: Sequence[np.ndarray]) -> list[text_det.Proposals]:
        out = []
        for im in images_bgr:
            h, w = im.shape[:2]
            self.crops.append((h, w))
            x1 = 0 if w < 120 else w / 6
            line = box_quads(np.array([[x1, h / 3, w - w / 6, 2 * h / 3]], np.float32))
            out.append(text_det.Proposals.single(line, [0.99]))
        return out


@pytest.mark.parametrize(
    ("cx", "crops", "x1"),
    [
        (320, [(40, 100), (40, 150)], 245),  # grown by half its width on the left
        (50, [(40, 100)], 0),  # at the image's left edge: nothing to grow into
    ],
)
def test_a_line_cut_by_its_region_is_looked_for_again_wider(
    cx: float, crops: list[tuple[int, int]], x1: float
) -> None:
    net = FakeNet([(cx, 320, 100, 40, 0.9)])
    lines = LeftCutLines()
    prop = YoloPlateProposer(None, net=net, refine=lines, margin=(0.0, 0.0))
    (p,) = prop.propose_many([np.zeros((640, 640, 3), np.uint8)])
    assert lines.crops == crops
    assert len(p) == 1 and text_det.quad_to_box(p.quads)[0][0] == pytest.approx(x1)


@pytest.mark.parametrize(
    ("boxes", "hw", "fallback_used"),
    [
        ([], (480, 640), True),  # a crop or photo where YOLO sees no plate
        ([], (720, 1280), False),  # a camera frame: empty frames stay cheap
        ([(320, 240, 100, 40, 0.9)], (480, 640), False),  # YOLO found one
    ],
)
def test_fallback_reads_small_images_yolo_found_nothing_in(
    boxes: list[tuple[float, float, float, float, float]], hw: tuple[int, int], fallback_used: bool
) -> None:
    fallback = FakeLines()
    prop = YoloPlateProposer(
        None, net=FakeNet(boxes), refine=FakeLines(), fallback=fallback, fallback_max_side=1024
    )
    (p,) = prop.propose_many([np.zeros((*hw, 3), np.uint8)])
    assert (fallback.crops == [hw]) is fallback_used
    assert len(p) == (1 if fallback_used or boxes else 0)


def test_at_most_max_plates_candidates() -> None:
    net = FakeNet([(40 + 60 * k, 100, 40, 16, 0.9 - 0.01 * k) for k in range(9)])
    prop = YoloPlateProposer(None, net=net, refine=FakeLines(), keep_box=True)
    (p,) = prop.propose_many([np.zeros((640, 640, 3), np.uint8)])
    assert len(p) == MAX_PLATES


# --- the provisioned model ------------------------------------------------------------
@pytest.fixture(scope="module")
def yolo_plate(weights: Path) -> Path:
    path = weights / "plate_detector/1/yolo_plate.onnx"
    if not path.is_file():
        pytest.skip("YOLO plate model not provisioned (alpr-models fetch --no-plate-yolo?)")
    return path


def test_provisioned_model_is_a_dynamic_single_class_yolo(yolo_plate: Path) -> None:
    assert validate_yolo_onnx(yolo_plate) == (0, 1)


def test_rendered_plate_on_a_car_is_found_and_refined(yolo_plate: Path, weights: Path) -> None:
    car, (x, y, w, h) = render_vehicle("AB123CD")
    refine = PlateProposer(weights / "plate_detector/1/ppocr_det.onnx", params=REFINE_PARAMS)
    prop = YoloPlateProposer(yolo_plate, refine=refine)
    (p,) = prop.propose_many([car])
    assert len(p)
    yolo_box = prop.locate([car])[0][0][0]
    best = Box(*text_det.quad_to_box(p.quads[:1])[0])
    plate = Box(x, y, x + w, y + h)
    assert Box(*yolo_box).iou(plate) > 0.5
    # the refined line lies inside the plate and is tighter than the YOLO box
    assert plate.iou(best) > 0.3 and best.height <= (yolo_box[3] - yolo_box[1]) + 1


def test_real_photographs_plates_found(yolo_plate: Path, openalpr_eu: Path) -> None:
    import cv2

    from edge_client.tools.evaluate import load_labels

    prop = YoloPlateProposer(yolo_plate)
    labels = load_labels(openalpr_eu)[::6]
    found = 0
    for label in labels:
        image = cv2.imread(str(openalpr_eu / label.image))
        (boxes, _), = prop.locate([image])  # fmt: skip
        # YOLO boxes include the plate's frame: the label must lie (mostly) inside one
        found += any(Box(*b).iou(label.box) >= 0.3 for b in boxes)
    assert found >= len(labels) - 1


# --- the EU band -------------------------------------------------------------------------
BAND_BLUE, WHITE_BG, BODY = (160, 60, 20), (235, 235, 235), (140, 60, 40)  # BGR


def line_image(band: int = 0, background: tuple[int, int, int] = WHITE_BG, margin: int = 0,
               width: int = 200) -> np.ndarray:  # fmt: skip
    """A rectified 48-row text line: ``band`` blue columns at the left (with two white
    'country code' strokes), dark glyph strokes, ``margin`` rows of blue car body above
    and below."""
    img = np.full((48, width, 3), background, np.uint8)
    img[:, :band] = BAND_BLUE
    if band:
        img[20:28, band // 3 : band // 3 + 3] = 255
    for x in range(band + 10, width - 10, 16):
        img[12:36, x : x + 4] = 20
    img[:margin], img[48 - margin :] = BODY, BODY
    return img


@pytest.mark.parametrize(
    ("image", "cut"),
    [
        (line_image(band=30), 30),  # band removed
        (line_image(band=30, margin=6), 30),  # the car around the plate does not count
        (line_image(), 0),  # no band
        (line_image(band=80), 0),  # too wide to be a band
        (line_image(band=30, background=BAND_BLUE), 0),  # a plate blue all over
        (np.full((48, 200, 3), 128, np.uint8), 0),  # grey
    ],
)
def test_trim_band(image: np.ndarray, cut: int) -> None:
    from ensemble.preprocess import trim_band

    out = trim_band(image)
    assert out.shape[1] == image.shape[1] - cut
    assert (out == image[:, cut:]).all()


# --- engine selection (model config + environment) -------------------------------------
@pytest.mark.parametrize(
    ("engine", "env", "refine", "expected"),
    [
        ("auto", None, "ppocr", ("YoloPlateProposer", True)),
        ("auto", None, "none", ("YoloPlateProposer", False)),
        ("ppocr", None, "ppocr", ("PlateProposer", False)),
        ("auto", "ppocr", "ppocr", ("PlateProposer", False)),  # the environment wins
        ("ppocr", "yolo", "ppocr", ("YoloPlateProposer", True)),
    ],
)
def test_plate_detector_engine_choice(
    yolo_plate: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: str,
    env: str | None,
    refine: str,
    expected: tuple[str, bool],
) -> None:
    from ensemble.serving import build_plate_detector

    if env:
        monkeypatch.setenv("OVR_ALPR_PLATE_ENGINE", env)
    else:
        monkeypatch.delenv("OVR_ALPR_PLATE_ENGINE", raising=False)
    params = {"engine": engine, "refine": refine, "intra_op_threads": "1"}
    config = {"parameters": {k: {"string_value": v} for k, v in params.items()}}
    args = {"model_repository": str(yolo_plate.parent.parent), "model_version": "1"}
    proposer = build_plate_detector(args, config).proposer
    refined = getattr(proposer, "refine", None) is not None
    assert (type(proposer).__name__, refined) == expected


def test_plate_detector_unknown_engine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from ensemble.serving import build_plate_detector

    monkeypatch.setenv("OVR_ALPR_PLATE_ENGINE", "tesseract")
    with pytest.raises(ValueError, match="auto, yolo or ppocr"):
        build_plate_detector({"model_repository": "/nonexistent", "model_version": "1"}, {})


@pytest.mark.parametrize(("side", "fallback"), [("1024", True), ("0", False), (None, False)])
def test_plate_detector_fallback_setting(
    yolo_plate: Path, monkeypatch: pytest.MonkeyPatch, side: str, fallback: bool
) -> None:
    from ensemble.serving import build_plate_detector

    monkeypatch.delenv("OVR_ALPR_PLATE_ENGINE", raising=False)
    config = {"parameters": {"fallback_max_side": {"string_value": side}} if side else {}}
    args = {"model_repository": str(yolo_plate.parent.parent), "model_version": "1"}
    proposer = build_plate_detector(args, config).proposer
    assert isinstance(proposer, YoloPlateProposer)
    assert (proposer.fallback is not None) is fallback
    if fallback:  # the refiner and the fallback share one PP-OCR session
        assert isinstance(proposer.refine, PlateProposer)
        assert isinstance(proposer.fallback, PlateProposer)
        assert proposer.refine.sess is proposer.fallback.sess
