"""YOLO output decoding and NMS on hand-built raw outputs."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.contracts import InputError
from ensemble.yolo import pad_detections, yolo_input, yolo_postprocess


def raw_with(
    boxes: list[tuple[float, float, float, float, int, float]], classes: int = 80
) -> np.ndarray:
    """Build a [4 + classes, anchors] output: (cx, cy, w, h, class, score) per anchor."""
    raw = np.zeros((4 + classes, max(1, len(boxes))), np.float32)
    for a, (cx, cy, w, h, c, s) in enumerate(boxes):
        raw[:4, a] = (cx, cy, w, h)
        raw[4 + c, a] = s
    return raw


CASES = [
    ("one car", [(100, 100, 50, 40, 2, 0.9)], [2], 1),
    ("person dropped", [(100, 100, 50, 40, 0, 0.9)], [2], 0),
    ("below threshold", [(100, 100, 50, 40, 2, 0.1)], [2], 0),
    ("duplicate suppressed", [(100, 100, 50, 40, 2, 0.9), (101, 100, 50, 40, 2, 0.8)], [2], 1),
    (
        "car+truck same box, agnostic",
        [(100, 100, 50, 40, 2, 0.9), (100, 100, 50, 40, 7, 0.6)],
        [2],
        1,
    ),
    ("two far cars", [(100, 100, 50, 40, 2, 0.9), (400, 300, 50, 40, 3, 0.8)], [2, 3], 2),
]


@pytest.mark.parametrize(
    ("name", "anchors", "expect_classes", "count"), CASES, ids=[c[0] for c in CASES]
)
def test_postprocess_table(name: str, anchors: list, expect_classes: list[int], count: int) -> None:
    boxes, scores, classes = yolo_postprocess(
        raw_with(anchors), keep_classes=[2, 3, 5, 7], score_threshold=0.25,
        iou_threshold=0.45, max_detections=100,
    )  # fmt: skip
    assert len(boxes) == len(scores) == len(classes) == count
    assert sorted(set(classes.tolist())) == sorted(set(expect_classes[:count]))
    assert (np.diff(scores) <= 0).all()
    if count:
        cx, cy, w, h = anchors[0][:4]
        assert np.allclose(boxes[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def test_class_aware_keeps_both_classes() -> None:
    raw = raw_with([(100, 100, 50, 40, 2, 0.9), (100, 100, 50, 40, 7, 0.6)])
    _, _, classes = yolo_postprocess(
        raw, keep_classes=[2, 7], score_threshold=0.25, iou_threshold=0.45,
        max_detections=100, agnostic=False,
    )  # fmt: skip
    assert sorted(classes.tolist()) == [2, 7]


def test_max_detections_and_padding() -> None:
    anchors = [(50 + 60 * i, 50, 40, 40, 2, 0.5 + i / 100) for i in range(10)]
    boxes, scores, classes = yolo_postprocess(
        raw_with(anchors),
        keep_classes=None,
        score_threshold=0.25,
        iou_threshold=0.45,
        max_detections=4,
    )
    assert len(boxes) == 4
    pb, _, pc, n = pad_detections(boxes, scores, classes, 6)
    assert pb.shape == (6, 4) and n.tolist() == [4] and pc[4:].tolist() == [-1, -1]


@pytest.mark.parametrize("shape", [(84,), (3, 10), (2, 2, 2)])
def test_postprocess_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match="YOLO output"):
        yolo_postprocess(np.zeros(shape, np.float32), keep_classes=None, score_threshold=0.2,
                         iou_threshold=0.5, max_detections=10)  # fmt: skip


def test_yolo_input_layout() -> None:
    x = yolo_input(np.full((2, 8, 8, 3), 255, np.uint8))
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32 and x.max() == 1.0
    with pytest.raises(InputError, match=r"\[B, H, W, 3\]"):
        yolo_input(np.zeros((8, 8, 3), np.uint8))
