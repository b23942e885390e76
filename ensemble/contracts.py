"""Tensor contracts and result types shared by the models, the tests and the clients.

Tensor names and fixed shapes are defined once here; ``config.pbtxt`` files must agree
(``tests/test_model_configs.py`` checks that they do).
"""

from __future__ import annotations

from dataclasses import dataclass

# --- vehicle_detector -------------------------------------------------------------
DET_SIZE = 640  # fixed square input so frames from every camera batch together
MAX_DETECTIONS = 100  # fixed-size padded outputs; COUNT says how many are real
COCO_VEHICLE_CLASSES: dict[int, str] = {2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}

# --- plate_detector / plate_ocr / alpr ---------------------------------------------
MAX_PLATES = 8  # plate candidates per image (padded; PLATE_COUNT says how many)
REC_HEIGHT = 48  # PP-OCR recogniser input height
REC_WIDTH = 320  # fixed recogniser width: plates are at most ~6.7:1 at this size
MAX_TEXT = 24  # per-character confidence slots per plate (padded with 0)
# Optional plate_ocr / alpr outputs (returned only to clients that request them): per
# character the recogniser's runner-up character (PLATE_ALT_TEXT, aligned with PLATE_TEXT)
# and its probability (PLATE_ALT_CONFIDENCES [8, 24], padded with 0).
ALT_OUTPUTS = ("PLATE_ALT_TEXT", "PLATE_ALT_CONFIDENCES")
PLATE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# --- input limits (bad input gets an error, not an OOM) ----------------------------
MAX_ENCODED_BYTES = 16 * 1024 * 1024
MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = 40_000_000


class InputError(ValueError):
    """A request's input is unusable; the message is returned to that client only."""


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixel coordinates of the image the client sent."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float
    class_id: int
    label: str


@dataclass(frozen=True)
class PlateRead:
    """One plate candidate read by the ``alpr`` ensemble. ``alternatives`` /
    ``alt_confidences``: each character's runner-up and its probability (empty when the
    client did not ask for them)."""

    box: Box
    det_score: float
    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    alternatives: str = ""
    alt_confidences: tuple[float, ...] = ()
