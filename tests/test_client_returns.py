"""Typed returns of the Triton client and the batch readers (fake clients, no server)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import pytest

from edge_client.detect import PLATE_CLASS, PlateFrameDetector
from edge_client.reader import NO_PLATE, alpr_batch_reader, plate_batch_reader
from edge_client.triton_client import AlprClient, PlateBoxes, PlateText
from ensemble.contracts import Box, PlateRead


def test_plate_text_reads_as_the_old_tuple() -> None:
    read = PlateText("AB123CD", 0.9, (0.9,) * 7)
    text, conf, chars = read
    assert (text, conf, chars) == (read.text, read.confidence, read.char_confidences)
    assert read[0] == "AB123CD" and NO_PLATE == ("", 0.0, ())


@pytest.mark.parametrize(
    ("boxes", "scores", "ok"),
    [((0, 4), (0,), True), ((2, 4), (2,), True), ((2, 4), (3,), False), ((2, 5), (2,), False),
     ((2,), (2,), False)],
)  # fmt: skip
def test_plate_boxes_are_validated(
    boxes: tuple[int, ...], scores: tuple[int, ...], ok: bool
) -> None:
    def make() -> PlateBoxes:
        return PlateBoxes(np.zeros(boxes, np.float32), np.zeros(scores, np.float32))

    if ok:
        assert len(make()) == scores[0]
    else:
        with pytest.raises(ValueError, match=r"PlateBoxes: boxes \[K, 4\] and scores \[K\]"):
            make()


class FakeClient:
    """Stands in for AlprClient: fixed answers per image."""

    def detect_plates(self, images: Sequence[bytes]) -> list[PlateBoxes]:
        box = np.array([[10, 20, 110, 50]], np.float64)
        return [PlateBoxes(box, np.array([0.8])) for _ in images]

    def read_plate_crops(self, plates: Sequence[bytes]) -> list[PlateText]:
        return [PlateText("AB123CD", 0.9, (0.9,) * 7) for _ in plates]

    def read_plates(
        self, images: Sequence[bytes], *, alternatives: bool = True
    ) -> list[list[PlateRead]]:
        read = PlateRead(Box(0, 0, 10, 5), 0.9, "XY99ZZQ", 0.8, (0.8,) * 7)
        return [[read] if i % 2 == 0 else [] for i in range(len(images))]


def test_plate_frame_detector_turns_plate_boxes_into_detections() -> None:
    frames = [np.zeros((64, 128, 3), np.uint8)] * 2
    dets = PlateFrameDetector(cast(AlprClient, FakeClient())).detect(frames)
    assert [len(d) for d in dets] == [1, 1]
    assert dets[0].boxes.dtype == np.float32 and dets[0].classes.tolist() == [PLATE_CLASS]
    assert dets[0].labels == ("plate",)


def test_batch_readers_return_plate_texts() -> None:
    client = cast(AlprClient, FakeClient())
    assert plate_batch_reader(client)([b"a"]) == [PlateText("AB123CD", 0.9, (0.9,) * 7)]
    got = alpr_batch_reader(client)([b"a", b"b"])
    assert all(isinstance(r, PlateText) for r in got)
    assert [r.text for r in got] == ["XY99ZZQ", ""] and got[1] == NO_PLATE
