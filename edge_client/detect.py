"""Frame-level detection through Triton, one adapter per camera mode.

``vehicles``: letterboxed frames to ``vehicle_detector``; ``plates`` (a dedicated plate
camera): letterboxed frames to ``plate_locator`` (the YOLO plate model alone; the default
``plate_finder: locator``), or JPEG frames to the heavy ``plate_detector`` (YOLO + text-line
refinement + crops on every frame; ``plate_finder: detector``, the path before the locator).
All return :class:`Detections` in frame pixels; tracking happens locally afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ensemble.image_io import encode_jpeg

from .contracts import Detections
from .triton_client import AlprClient

PLATE_CLASS = -1  # class id used for plate tracks in `plates` mode


class FrameDetector(Protocol):
    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]: ...


class VehicleFrameDetector:
    def __init__(self, client: AlprClient) -> None:
        self.client = client

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for dets in self.client.detect_vehicles(frames):
            if not dets:
                out.append(Detections.empty())
                continue
            boxes = np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in dets], np.float32)
            scores = np.array([d.score for d in dets], np.float32)
            classes = np.array([d.class_id for d in dets], np.int32)
            out.append(Detections(boxes, scores, classes, tuple(d.label for d in dets)))
        return out


def _plate_detections(boxes: np.ndarray, scores: np.ndarray) -> Detections:
    n = len(scores)
    return Detections(
        boxes.astype(np.float32), scores.astype(np.float32),
        np.full((n,), PLATE_CLASS, np.int32), ("plate",) * n,
    )  # fmt: skip


class PlateLocatorDetector:
    """Frames to ``plate_locator``: letterboxed once on the client (same-host clients over
    system shared memory), plate boxes back in frame pixels."""

    def __init__(self, client: AlprClient) -> None:
        self.client = client

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        return [_plate_detections(f.boxes, f.scores) for f in self.client.locate_plates(frames)]


class PlateFrameDetector:
    def __init__(self, client: AlprClient, jpeg_quality: int = 90) -> None:
        self.client, self.quality = client, jpeg_quality

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        payloads = [encode_jpeg(f, self.quality) for f in frames]
        return [_plate_detections(f.boxes, f.scores) for f in self.client.detect_plates(payloads)]
