"""Frame-level detection through Triton, one adapter per camera mode.

``vehicles``: letterboxed frames to ``vehicle_detector``; ``plates``: JPEG frames to
``plate_detector`` (a dedicated plate camera). Both return :class:`Detections` in frame
pixels; tracking happens locally afterwards.
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


class PlateFrameDetector:
    def __init__(self, client: AlprClient, jpeg_quality: int = 90) -> None:
        self.client, self.quality = client, jpeg_quality

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        payloads = [encode_jpeg(f, self.quality) for f in frames]
        out = []
        for found in self.client.detect_plates(payloads):
            n = len(found)
            out.append(
                Detections(
                    found.boxes.astype(np.float32), found.scores.astype(np.float32),
                    np.full((n,), PLATE_CLASS, np.int32), ("plate",) * n,
                )
            )  # fmt: skip
        return out
