"""Typed gRPC client for the OVR-ALPR model repository (used by edge clients, tools, tests)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from alpr_common.secrets import secret_from_env
from ensemble.contracts import (
    ALPR,
    ALT_OUTPUTS,
    BOXES,
    CLASSES,
    COCO_VEHICLE_CLASSES,
    COUNT,
    IMAGE,
    MAX_TEXT,
    PLATE_ALT_CONFIDENCES,
    PLATE_ALT_TEXT,
    PLATE_BOXES,
    PLATE_CHAR_CONFIDENCES,
    PLATE_CONFIDENCE,
    PLATE_COUNT,
    PLATE_DETECTOR,
    PLATE_IMAGE,
    PLATE_LOCATOR,
    PLATE_OCR,
    PLATE_SCORES,
    PLATE_TEXT,
    SCORES,
    SOURCE_SIZE,
    VEHICLE_DETECTOR,
    Box,
    Detection,
    PlateRead,
)
from ensemble.ops.launcher import ACCESS_KEY_ENV, ACCESS_KEY_HEADER
from ensemble.preprocess import letterbox

from .shm import SystemShmInput


class InferenceError(RuntimeError):
    """The server refused or failed a request; ``str()`` carries the server's message."""


# Triton checks gRPC restricted-protocol headers under a "triton-grpc-protocol-" prefix.
GRPC_ACCESS_HEADER = f"triton-grpc-protocol-{ACCESS_KEY_HEADER}"
UNAVAILABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")
log = logging.getLogger("ovr_alpr.triton")


class PlateText(NamedTuple):
    """One plate crop's read (``plate_ocr``): what a track votes with. A named tuple, so
    ``text, confidence, chars = read`` works as it did for the plain tuple."""

    text: str
    confidence: float
    char_confidences: tuple[float, ...]


@dataclass(frozen=True)
class PlateBoxes:
    """``plate_detector``'s candidates in one image: xyxy boxes float32 [K, 4] in the
    image's pixels and their detector scores float32 [K]."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        k = len(self.scores)
        if self.boxes.shape != (k, 4) or self.scores.shape != (k,):
            raise ValueError(
                f"PlateBoxes: boxes [K, 4] and scores [K], got {list(self.boxes.shape)} and "
                f"{list(self.scores.shape)}"
            )

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class TritonEndpoint:
    """Where the server is. ``fallbacks``: other servers tried in order when the active
    one stops answering (health-checked before switching)."""

    url: str = "localhost:8001"
    timeout_s: float = 10.0
    fallbacks: tuple[str, ...] = ()

    @property
    def urls(self) -> list[str]:
        return [self.url, *[u for u in self.fallbacks if u != self.url]]


def access_headers() -> dict[str, str]:
    """The access-key header when ``OVR_ALPR_TRITON_KEY`` is set (never logged)."""
    key = secret_from_env(ACCESS_KEY_ENV, "Triton access key", required=False)
    return {GRPC_ACCESS_HEADER: key} if key else {}


def _bytes_tensor(name: str, payloads: Sequence[bytes]) -> grpcclient.InferInput:
    arr = np.array([[p] for p in payloads], dtype=object)
    t = grpcclient.InferInput(name, list(arr.shape), "BYTES")
    t.set_data_from_numpy(arr)
    return t


def _tensor(name: str, arr: np.ndarray, dtype: str) -> grpcclient.InferInput:
    t = grpcclient.InferInput(name, list(arr.shape), dtype)
    t.set_data_from_numpy(arr)
    return t


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class _ReadOutputs:
    """The recogniser's output tensors of one result, converted once."""

    texts: np.ndarray
    confs: np.ndarray
    chars: np.ndarray
    alt_texts: np.ndarray | None  # optional runner-up outputs (PLATE_ALT_*)
    alt_confs: np.ndarray | None

    @classmethod
    def of(cls, result: grpcclient.InferResult) -> _ReadOutputs:
        return cls(
            result.as_numpy(PLATE_TEXT), result.as_numpy(PLATE_CONFIDENCE),
            result.as_numpy(PLATE_CHAR_CONFIDENCES), result.as_numpy(PLATE_ALT_TEXT),
            result.as_numpy(PLATE_ALT_CONFIDENCES),
        )  # fmt: skip

    def read(self, i: int, k: int, box: Box, det_score: float) -> PlateRead:
        """Candidate ``k`` of image ``i``, with its runner-ups when they were requested
        and line up with the text."""
        text = _text(self.texts[i][k])
        n = min(len(text), MAX_TEXT)
        alts = ""
        ac: tuple[float, ...] = ()
        if self.alt_texts is not None and self.alt_confs is not None:
            got = _text(self.alt_texts[i][k])
            if len(got) == len(text) <= MAX_TEXT:  # else unusable: ignore
                alts, ac = got, tuple(float(c) for c in self.alt_confs[i][k][: len(got)])
        chars = tuple(float(c) for c in self.chars[i][k][:n])
        return PlateRead(box, det_score, text, float(self.confs[i][k]), chars, alts, ac)


def parse_plates(result: grpcclient.InferResult) -> list[list[PlateRead]]:
    """Turn an ``alpr`` (or plate_detector + plate_ocr) result into PlateReads per image;
    the optional runner-up outputs (``PLATE_ALT_*``) fill ``alternatives`` when present."""
    boxes = result.as_numpy(PLATE_BOXES)
    scores = result.as_numpy(PLATE_SCORES)
    counts = result.as_numpy(PLATE_COUNT)
    outputs = _ReadOutputs.of(result)
    return [
        [
            outputs.read(i, k, Box(*map(float, boxes[i][k])), float(scores[i][k]))
            for k in range(int(counts[i][0]))
        ]
        for i in range(len(counts))
    ]


def _letterbox_rgb(frame_bgr: np.ndarray, side: int, *, fast: bool = False) -> np.ndarray:
    """Letterbox a BGR frame to ``side`` and return it as RGB: the channels are swapped on
    the small result (resizing a reversed-stride view would copy the whole frame first)."""
    boxed, _ = letterbox(frame_bgr, side, fast=fast)
    return np.ascontiguousarray(boxed[..., ::-1])


class AlprClient:
    """Thin typed facade over ``tritonclient.grpc`` for the four served models."""

    def __init__(
        self, endpoint: TritonEndpoint | str = TritonEndpoint(), *, shared_memory: bool = False
    ) -> None:
        """``shared_memory``: send frames to ``vehicle_detector`` through a system
        shared-memory region (the server must run on the same host)."""
        self.endpoint = TritonEndpoint(endpoint) if isinstance(endpoint, str) else endpoint
        self.urls = self.endpoint.urls
        self.active = 0
        self.headers = access_headers()
        self.client = grpcclient.InferenceServerClient(self.urls[0])
        self.failovers = 0
        self._shm: SystemShmInput | None = None
        self._sides: dict[str, int] = {}  # model -> letterbox side (from its config)
        if shared_memory:
            self._shm = SystemShmInput(self.client)

    def close(self) -> None:
        if self._shm is not None:
            self._shm.close()
        self.client.close()

    @property
    def url(self) -> str:
        return self.urls[self.active]

    def ready(self) -> bool:
        try:
            return bool(self.client.is_server_ready(headers=self.headers, client_timeout=2.0))
        except InferenceServerException:
            return False

    def _failover(self) -> bool:
        """Switch to the next server (in configured order) that passes a health check."""
        for step in range(1, len(self.urls)):
            index = (self.active + step) % len(self.urls)
            candidate = grpcclient.InferenceServerClient(self.urls[index])
            try:
                ok = candidate.is_server_ready(headers=self.headers, client_timeout=1.0)
            except InferenceServerException:
                ok = False
            if ok:
                log.warning("Triton %s unavailable; failing over to %s", self.url, self.urls[index])
                self.client.close()
                self.client, self.active = candidate, index
                self.failovers += 1
                return True
            candidate.close()
        return False

    def _infer(
        self, model: str, inputs: list[grpcclient.InferInput], outputs: Sequence[str]
    ) -> grpcclient.InferResult:
        requested = [grpcclient.InferRequestedOutput(o) for o in outputs]
        for attempt in range(2):
            try:
                return self.client.infer(
                    model, inputs, outputs=requested, client_timeout=self.endpoint.timeout_s,
                    headers=self.headers,
                )  # fmt: skip
            except InferenceServerException as exc:
                down = str(exc.status()) in UNAVAILABLE
                # shared-memory inputs live on this host's server: no failover for them
                if attempt == 0 and down and self._shm is None and self._failover():
                    continue
                raise InferenceError(f"{model} at {self.url}: {exc.message()}") from exc
        raise AssertionError("unreachable")

    def detect_vehicles(self, frames_bgr: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Letterbox frames (any size) and detect vehicles; boxes in each frame's pixels."""
        side = self.input_side(VEHICLE_DETECTOR)
        boxed = np.stack([_letterbox_rgb(f, side) for f in frames_bgr])
        sizes = np.array([f.shape[:2] for f in frames_bgr], np.int32)
        image = self._shm.tensor(IMAGE, boxed) if self._shm else _tensor(IMAGE, boxed, "UINT8")
        res = self._infer(
            VEHICLE_DETECTOR,
            [image, _tensor(SOURCE_SIZE, sizes, "INT32")],
            [BOXES, SCORES, CLASSES, COUNT],
        )
        boxes, scores = res.as_numpy(BOXES), res.as_numpy(SCORES)
        classes, counts = res.as_numpy(CLASSES), res.as_numpy(COUNT)
        out = []
        for i in range(len(frames_bgr)):
            n = int(counts[i][0])
            out.append(
                [
                    Detection(
                        Box(*map(float, boxes[i][k])), float(scores[i][k]), int(classes[i][k]),
                        COCO_VEHICLE_CLASSES.get(int(classes[i][k]), str(int(classes[i][k]))),
                    )
                    for k in range(n)
                ]
            )  # fmt: skip
        return out

    def read_plates(
        self, images: Sequence[bytes], *, alternatives: bool = True
    ) -> list[list[PlateRead]]:
        """Run the ``alpr`` ensemble on encoded vehicle crops (or frames). With
        ``alternatives`` (default), also ask for each character's runner-up (optional
        outputs ``PLATE_ALT_TEXT`` / ``PLATE_ALT_CONFIDENCES``; turn it off for a server
        whose models predate them)."""
        outputs = [PLATE_BOXES, PLATE_SCORES, PLATE_COUNT, PLATE_TEXT, PLATE_CONFIDENCE,
                   PLATE_CHAR_CONFIDENCES]  # fmt: skip
        if alternatives:
            outputs += ALT_OUTPUTS
        res = self._infer(ALPR, [_bytes_tensor(IMAGE, images)], outputs)
        return parse_plates(res)

    def detect_plates(self, images: Sequence[bytes]) -> list[PlateBoxes]:
        """Run ``plate_detector`` on encoded frames: per image its plate boxes and scores."""
        res = self._infer(
            PLATE_DETECTOR, [_bytes_tensor(IMAGE, images)], [PLATE_BOXES, PLATE_SCORES, PLATE_COUNT]
        )
        boxes, scores = res.as_numpy(PLATE_BOXES), res.as_numpy(PLATE_SCORES)
        counts = res.as_numpy(PLATE_COUNT)
        return [
            PlateBoxes(boxes[i][: int(counts[i][0])], scores[i][: int(counts[i][0])])
            for i in range(len(images))
        ]

    def input_side(self, model: str) -> int:
        """The letterbox side ``model`` (``vehicle_detector``, ``plate_locator``) expects,
        read once from the server's model config (``IMAGE`` dims [S, S, 3])."""
        if model not in self._sides:
            try:
                cfg = self.client.get_model_config(model, headers=self.headers, as_json=True)
            except InferenceServerException as exc:
                raise InferenceError(f"{model} at {self.url}: {exc.message()}") from exc
            dims = next(
                (i.get("dims") for i in cfg["config"]["input"] if i.get("name") == IMAGE), None
            )
            if not dims or len(dims) != 3 or dims[0] != dims[1]:
                raise InferenceError(f"{model} at {self.url}: IMAGE dims {dims} are not [S, S, 3]")
            self._sides[model] = int(dims[0])
        return self._sides[model]

    def locate_plates(self, frames_bgr: Sequence[np.ndarray]) -> list[PlateBoxes]:
        """Letterbox frames (any size) to ``plate_locator``'s side and find plates: per frame
        its plate boxes in the frame's pixels and their scores (YOLO alone; no reading)."""
        side = self.input_side(PLATE_LOCATOR)
        boxed = np.stack([_letterbox_rgb(f, side, fast=True) for f in frames_bgr])
        sizes = np.array([f.shape[:2] for f in frames_bgr], np.int32)
        image = self._shm.tensor(IMAGE, boxed) if self._shm else _tensor(IMAGE, boxed, "UINT8")
        res = self._infer(PLATE_LOCATOR, [image, _tensor(SOURCE_SIZE, sizes, "INT32")],
                          [BOXES, SCORES, COUNT])  # fmt: skip
        boxes, scores, counts = res.as_numpy(BOXES), res.as_numpy(SCORES), res.as_numpy(COUNT)
        return [
            PlateBoxes(boxes[i][: int(counts[i][0])], scores[i][: int(counts[i][0])])
            for i in range(len(frames_bgr))
        ]

    def read_plate_crops(self, plates: Sequence[bytes]) -> list[PlateText]:
        """Read encoded plate crops directly with ``plate_ocr`` (dedicated plate cameras)."""
        return [
            PlateText(r.text, r.confidence, r.char_confidences)
            for r in self.read_plate_crop_reads(plates, alternatives=False)
        ]

    def read_plate_crop_reads(
        self, plates: Sequence[bytes], *, alternatives: bool = True
    ) -> list[PlateRead]:
        """Like :meth:`read_plate_crops`, as ``PlateRead``s (box: the whole crop, unknown:
        zeros) with each character's runner-up when ``alternatives``."""
        outputs = [PLATE_TEXT, PLATE_CONFIDENCE, PLATE_CHAR_CONFIDENCES]
        if alternatives:
            outputs += ALT_OUTPUTS
        res = self._infer(PLATE_OCR, [_bytes_tensor(PLATE_IMAGE, plates)], outputs)
        decoded = _ReadOutputs.of(res)
        return [decoded.read(i, 0, Box(0.0, 0.0, 0.0, 0.0), 1.0) for i in range(len(plates))]
