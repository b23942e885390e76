"""Tensor contracts and result types shared by the models, the tests and the clients.

Tensor names and fixed shapes are defined once here; ``config.pbtxt`` files must agree
(``tests/test_model_configs.py`` checks that they do).
"""

from __future__ import annotations

from dataclasses import dataclass

from alpr_common.geometry import iou

# --- vehicle_detector -------------------------------------------------------------
DET_SIZE = 640  # fixed square input so frames from every camera batch together
MAX_DETECTIONS = 100  # fixed-size padded outputs; COUNT says how many are real
COCO_VEHICLE_CLASSES: dict[int, str] = {2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}

# --- plate_locator ------------------------------------------------------------------
LOCATOR_SIZE = 416  # default letterbox side (the config's IMAGE dims; 640 in the variant)

# --- plate_detector / plate_ocr / alpr ---------------------------------------------
MAX_PLATES = 8  # plate candidates per image (padded; PLATE_COUNT says how many)
REC_HEIGHT = 48  # PP-OCR recogniser input height
REC_WIDTH = 320  # fixed recogniser width: plates are at most ~6.7:1 at this size
MAX_TEXT = 24  # per-character confidence slots per plate (padded with 0)
PLATE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# --- model names ------------------------------------------------------------------
VEHICLE_DETECTOR = "vehicle_detector"
PLATE_DETECTOR = "plate_detector"
PLATE_OCR = "plate_ocr"
PLATE_LOCATOR = "plate_locator"  # the YOLO plate model alone, on letterboxed frames
ALPR = "alpr"  # the ensemble: plate_detector -> plate_ocr
VEHICLE_DETECTOR_NET = "vehicle_detector_net"  # a variant's bare network, called over BLS

# --- tensor names (each model's inputs and outputs; config.pbtxt uses exactly these) --
IMAGE = "IMAGE"  # vehicle_detector / plate_locator: uint8 [B, S, S, 3]; plate_detector/alpr: bytes
SOURCE_SIZE = "SOURCE_SIZE"  # int32 [B, 2]: height, width of the frame before letterboxing
BOXES = "BOXES"  # float32 [B, 100, 4] xyxy in source pixels
SCORES = "SCORES"  # float32 [B, 100]
CLASSES = "CLASSES"  # int32 [B, 100] COCO class ids
COUNT = "COUNT"  # int32 [B, 1]: real rows of BOXES / SCORES / CLASSES
PLATE_BOXES = "PLATE_BOXES"  # float32 [B, 8, 4] xyxy in the sent image's pixels
PLATE_SCORES = "PLATE_SCORES"  # float32 [B, 8] detector scores
PLATE_CROPS = "PLATE_CROPS"  # uint8 [B, 8, 48, 320, 3] rectified recogniser crops
PLATE_COUNT = "PLATE_COUNT"  # int32 [B, 1]: real plate candidates
PLATE_IMAGE = "PLATE_IMAGE"  # bytes [B, 1]: one encoded plate crop per row
PLATE_TEXT = "PLATE_TEXT"  # bytes [B, 8]
PLATE_CONFIDENCE = "PLATE_CONFIDENCE"  # float32 [B, 8]
PLATE_CHAR_CONFIDENCES = "PLATE_CHAR_CONFIDENCES"  # float32 [B, 8, 24], padded with 0
# Optional plate_ocr / alpr outputs (returned only to clients that request them): per
# character the recogniser's runner-up character (PLATE_ALT_TEXT, aligned with PLATE_TEXT)
# and its probability (PLATE_ALT_CONFIDENCES [8, 24], padded with 0).
PLATE_ALT_TEXT = "PLATE_ALT_TEXT"
PLATE_ALT_CONFIDENCES = "PLATE_ALT_CONFIDENCES"
ALT_OUTPUTS = (PLATE_ALT_TEXT, PLATE_ALT_CONFIDENCES)
ALPR_PLATE_CROPS = "plate_crops"  # the ensemble's internal tensor between its two steps
NET_INPUT = "images"  # the bare YOLO network (Ultralytics export names)
NET_OUTPUT = "output0"


@dataclass(frozen=True)
class ModelTensors:
    """One served model's input and output tensor names, in config order."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


PLATE_READ_OUTPUTS = (PLATE_TEXT, PLATE_CONFIDENCE, PLATE_CHAR_CONFIDENCES, *ALT_OUTPUTS)
MODEL_TENSORS: dict[str, ModelTensors] = {
    VEHICLE_DETECTOR: ModelTensors((IMAGE, SOURCE_SIZE), (BOXES, SCORES, CLASSES, COUNT)),
    PLATE_LOCATOR: ModelTensors((IMAGE, SOURCE_SIZE), (BOXES, SCORES, COUNT)),
    PLATE_DETECTOR: ModelTensors((IMAGE,), (PLATE_BOXES, PLATE_SCORES, PLATE_CROPS, PLATE_COUNT)),
    PLATE_OCR: ModelTensors((PLATE_CROPS, PLATE_COUNT, PLATE_IMAGE), PLATE_READ_OUTPUTS),
    ALPR: ModelTensors((IMAGE,), (PLATE_BOXES, PLATE_SCORES, PLATE_COUNT, *PLATE_READ_OUTPUTS)),
    VEHICLE_DETECTOR_NET: ModelTensors((NET_INPUT,), (NET_OUTPUT,)),
}

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
        return iou(self.xyxy, other.xyxy)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        """As the shared ``alpr_common.geometry.Box`` tuple."""
        return (self.x1, self.y1, self.x2, self.y2)


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
