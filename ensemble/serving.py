"""Request handling shared by every Python-backend ``model.py``, testable without Triton.

A *service* turns one request's input tensors into items (validating them), runs all
items of a dynamic batch together, and returns fixed-shape outputs per item. ``serve``
does the Triton bookkeeping: one response per request in order, a per-request error for
bad input while the rest of the batch still succeeds, and a per-item retry when a
batched run fails so one poisoned item cannot fail its neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import text_det
from .contracts import (
    BOXES,
    CLASSES,
    COUNT,
    IMAGE,
    MAX_DETECTIONS,
    MAX_IMAGE_SIDE,
    MAX_PLATES,
    MAX_TEXT,
    MODEL_TENSORS,
    PLATE_ALT_CONFIDENCES,
    PLATE_ALT_TEXT,
    PLATE_BOXES,
    PLATE_CHAR_CONFIDENCES,
    PLATE_CONFIDENCE,
    PLATE_COUNT,
    PLATE_CROPS,
    PLATE_DETECTOR,
    PLATE_IMAGE,
    PLATE_LOCATOR,
    PLATE_OCR,
    PLATE_SCORES,
    PLATE_TEXT,
    REC_HEIGHT,
    REC_WIDTH,
    SCORES,
    SOURCE_SIZE,
    VEHICLE_DETECTOR,
    InputError,
    ModelTensors,
)
from .engines import (
    PlateProposer,
    RawNet,
    Reader,
    VehicleDetector,
    YoloPlateProposer,
    crops_for,
    session,
)
from .image_io import decode_image
from .params import (
    PlateDetectorParams,
    PlateLocatorParams,
    PlateOcrParams,
    RawNetParams,
    VehicleDetectorParams,
    load_params,
)
from .preprocess import rec_crop
from .registry import build_proposer, build_reader
from .yolo import pad_detections

log = logging.getLogger("ovr_alpr.serving")

Outputs = dict[str, np.ndarray]


class Service(Protocol):
    """What a Python-backend model needs from the ALPR logic."""

    def items(self, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
        """Validate one request; one item per batch row. Raise InputError when unusable."""

    def run(self, items: Sequence[Any]) -> list[Outputs]:
        """Run a batch of items; fixed-shape outputs (no batch dim) per item."""


@dataclass
class Reply:
    """One request's outcome: outputs with a batch dimension, or an error message."""

    outputs: Outputs | None = None
    error: str | None = None


def _stack(rows: Sequence[Outputs]) -> Outputs:
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def process(service: Service, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Reply]:
    """Validate every request, run the valid ones as one batch, map results back."""
    replies = [Reply() for _ in requests]
    spans: list[tuple[int, int, int]] = []  # (request index, start, stop) into all_items
    all_items: list[Any] = []
    for r, inputs in enumerate(requests):
        try:
            items = service.items(inputs)
        except InputError as exc:
            replies[r].error = str(exc)
            continue
        except Exception as exc:  # never let one request take down the batch
            log.exception("validation failed unexpectedly")
            replies[r].error = f"invalid request: {type(exc).__name__}: {exc}"
            continue
        spans.append((r, len(all_items), len(all_items) + len(items)))
        all_items += items
    if not all_items:
        return replies
    results: list[Outputs | Exception]
    try:
        results = list(service.run(all_items))
    except Exception:
        log.exception("batched run failed; retrying %d items one by one", len(all_items))
        results = []
        for item in all_items:
            try:
                results.append(service.run([item])[0])
            except Exception as exc:
                results.append(exc)
    for r, start, stop in spans:
        mine = results[start:stop]
        bad = next((x for x in mine if isinstance(x, Exception)), None)
        if bad is not None:
            replies[r].error = f"inference failed: {type(bad).__name__}: {bad}"
        else:
            replies[r].outputs = _stack([x for x in mine if not isinstance(x, Exception)])
    return replies


def _rows(arr: np.ndarray | None, name: str) -> np.ndarray:
    if arr is None:
        raise InputError(f"missing input {name}")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise InputError(f"input {name} is empty (shape {arr.shape})")
    return arr


def _bytes_of(value: Any, name: str) -> bytes:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    if isinstance(value, str):
        value = value.encode("latin-1")
    if not isinstance(value, bytes | bytearray):
        raise InputError(f"{name} must be encoded image bytes, got {type(value).__name__}")
    return bytes(value)


# ---------------------------------------------------------------------------------------
class VehicleDetectorService:
    """IMAGE uint8 [B, S, S, 3] letterboxed RGB (S: the config's dims; + SOURCE_SIZE int32
    [B, 2] h,w) -> boxes in source pixels."""

    def __init__(self, detector: VehicleDetector) -> None:
        self.detector = detector

    def items(self, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
        images = _rows(inputs.get(IMAGE), IMAGE)
        size = self.detector.input_size
        if images.dtype != np.uint8 or images.shape[1:] != (size, size, 3):
            raise InputError(
                f"IMAGE must be uint8 [B, {size}, {size}, 3] letterboxed RGB, got "
                f"{images.dtype} {list(images.shape)}"
            )
        sizes = inputs.get(SOURCE_SIZE)
        if sizes is None:
            return [(img, None) for img in images]
        if sizes.shape != (len(images), 2):
            raise InputError(f"SOURCE_SIZE must be [B, 2] (height, width), got {list(sizes.shape)}")
        if (sizes <= 0).any() or (sizes > MAX_IMAGE_SIDE).any():
            raise InputError(
                f"SOURCE_SIZE values must be in 1..{MAX_IMAGE_SIDE}, got {sizes.tolist()}"
            )
        return [(img, (int(h), int(w))) for img, (h, w) in zip(images, sizes, strict=True)]

    def run(self, items: Sequence[Any]) -> list[Outputs]:
        images = np.stack([it[0] for it in items])
        dets = self.detector.detect(images, [it[1] for it in items])
        out = []
        for boxes, scores, classes in dets:
            b, s, c, n = pad_detections(boxes, scores, classes, MAX_DETECTIONS)
            out.append({BOXES: b, SCORES: s, CLASSES: c, COUNT: n})
        return out


class PlateLocatorService(VehicleDetectorService):
    """IMAGE uint8 [B, S, S, 3] letterboxed RGB (+ SOURCE_SIZE) -> plate boxes in source
    pixels and scores: the YOLO plate model alone, for per-frame plate finding."""

    def run(self, items: Sequence[Any]) -> list[Outputs]:
        return [{k: v for k, v in row.items() if k != CLASSES} for row in super().run(items)]


def input_side(config: Mapping[str, Any], name: str = IMAGE) -> int:
    """The square side of a letterboxed-image input from a parsed model config (its
    ``dims`` [S, S, 3]); raises ``ValueError`` when the config's input is not square RGB."""
    for inp in config.get("input", []):
        if inp.get("name") == name:
            dims = [int(d) for d in inp.get("dims", [])]
            if len(dims) == 3 and dims[0] == dims[1] and dims[2] == 3 and 32 <= dims[0] <= 4096:
                if dims[0] % 32:
                    raise ValueError(f"{name} side {dims[0]} must be a multiple of 32 (YOLO)")
                return dims[0]
            raise ValueError(f"{name} dims must be [S, S, 3] with 32 <= S <= 4096, got {dims}")
    raise ValueError(f"the model config has no {name} input")


class PlateDetectorService:
    """IMAGE bytes [B, 1] (encoded vehicle crop or frame) -> plate boxes and rectified crops."""

    def __init__(self, proposer: PlateProposer | YoloPlateProposer) -> None:
        self.proposer = proposer

    def items(self, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
        rows = _rows(inputs.get(IMAGE), IMAGE)
        return [decode_image(_bytes_of(row, IMAGE)) for row in rows]

    def run(self, items: Sequence[Any]) -> list[Outputs]:
        out = []
        for image, props in zip(items, self.proposer.propose_many(items), strict=True):
            crops, kept = crops_for(image, props.quads, props.line_quads())
            boxes = text_det.quad_to_box(props.quads[kept])
            n = len(kept)
            pb = np.zeros((MAX_PLATES, 4), np.float32)
            ps = np.zeros((MAX_PLATES,), np.float32)
            pc = np.full((MAX_PLATES, REC_HEIGHT, REC_WIDTH, 3), 128, np.uint8)
            pb[:n], ps[:n], pc[:n] = boxes, props.scores[kept], crops
            row: Outputs = {PLATE_BOXES: pb, PLATE_SCORES: ps, PLATE_CROPS: pc}
            row[PLATE_COUNT] = np.array([n], np.int32)
            out.append(row)
        return out


class PlateOcrService:
    """Read plates: PLATE_CROPS [B, 8, 48, 320, 3] + PLATE_COUNT [B, 1] (from plate_detector),
    or PLATE_IMAGE bytes [B, 1] (one encoded plate crop per row, e.g. from an edge client)."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def items(self, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
        image = inputs.get(PLATE_IMAGE)
        crops = inputs.get(PLATE_CROPS)
        if (image is None) == (crops is None):
            raise InputError("send exactly one of PLATE_IMAGE or PLATE_CROPS (+ PLATE_COUNT)")
        if image is not None:
            rows = _rows(image, PLATE_IMAGE)
            out = []
            for row in rows:
                plate = decode_image(_bytes_of(row, PLATE_IMAGE))
                h, w = plate.shape[:2]
                out.append(rec_crop(plate, text_det.box_quads([[0, 0, w, h]])[0])[None])
            return out
        crops = _rows(crops, PLATE_CROPS)
        counts = inputs.get(PLATE_COUNT)
        if counts is None or counts.shape != (len(crops), 1):
            got = None if counts is None else list(counts.shape)
            raise InputError(f"PLATE_COUNT must be [B, 1] with PLATE_CROPS, got {got}")
        if crops.dtype != np.uint8 or crops.shape[2:] != (REC_HEIGHT, REC_WIDTH, 3):
            raise InputError(
                f"PLATE_CROPS must be uint8 [B, K, {REC_HEIGHT}, {REC_WIDTH}, 3], "
                f"got {list(crops.shape)}"
            )
        if (counts < 0).any() or (counts > crops.shape[1]).any():
            raise InputError(
                f"PLATE_COUNT must be in 0..{crops.shape[1]}, got {counts.ravel().tolist()}"
            )
        return [c[: int(n)] for c, n in zip(crops, counts[:, 0], strict=True)]

    def run(self, items: Sequence[Any]) -> list[Outputs]:
        flat = [c for item in items for c in item]
        reads = self.reader.read(np.stack(flat)) if flat else []
        out, pos = [], 0
        for item in items:
            text = np.full((MAX_PLATES,), b"", dtype=object)
            alt_text = np.full((MAX_PLATES,), b"", dtype=object)
            conf = np.zeros((MAX_PLATES,), np.float32)
            chars = np.zeros((MAX_PLATES, MAX_TEXT), np.float32)
            alts = np.zeros((MAX_PLATES, MAX_TEXT), np.float32)
            for k in range(len(item)):
                r = reads[pos + k]
                text[k] = r.text.encode()
                alt_text[k] = r.alternatives.encode()
                conf[k] = r.confidence
                cc = r.char_confidences[:MAX_TEXT]
                chars[k, : len(cc)] = cc
                ac = r.alt_confidences[:MAX_TEXT]
                alts[k, : len(ac)] = ac
            pos += len(item)
            out.append(
                {PLATE_TEXT: text, PLATE_CONFIDENCE: conf, PLATE_CHAR_CONFIDENCES: chars,
                 PLATE_ALT_TEXT: alt_text, PLATE_ALT_CONFIDENCES: alts}
            )  # fmt: skip
        return out


# ---------------------------------------------------------------------------------------
def version_dir(args: Mapping[str, str]) -> Path:
    return Path(args["model_repository"]) / str(args["model_version"])


BlsFactory = Callable[[str, str, str], RawNet]  # (model, input name, output name) -> net


def build_vehicle_detector(
    args: Mapping[str, str], config: Mapping[str, Any], bls: BlsFactory | None = None
) -> VehicleDetectorService:
    """ONNX in-process by default; with ``net_model`` set, the network is another Triton
    model (a TensorRT plan or the native onnxruntime backend) called over BLS, and this
    model only letterbox-normalises, decodes and runs NMS."""
    p = load_params(VehicleDetectorParams, config)
    side = input_side(config)
    net = None
    if p.net_model:
        if bls is None:
            raise ValueError("net_model is set but no BLS is available outside Triton")
        net = bls(p.net_model, p.net_input, p.net_output)
    det = VehicleDetector(
        None if net else version_dir(args) / p.onnx_file,
        net=net,
        threads=p.threads,
        score_threshold=p.score_threshold,
        iou_threshold=p.iou_threshold,
        classes=p.classes,
        agnostic_nms=p.agnostic_nms,
        input_size=side,
    )
    if det.input_size != side:
        raise ValueError(
            f"{VEHICLE_DETECTOR}: the network takes {det.input_size}x{det.input_size} but the "
            f"config's IMAGE dims are {side}: export it at {side} (or dynamic) or fix the dims"
        )
    return VehicleDetectorService(det)


def build_plate_locator(
    args: Mapping[str, str], config: Mapping[str, Any], bls: BlsFactory | None = None
) -> PlateLocatorService:
    """The YOLO plate network in-process at the config's input side (416 by default; the
    640 variant sets ``dims: [640, 640, 3]``). A missing network fails the load with the
    command that provisions it."""
    p = load_params(PlateLocatorParams, config)
    path = version_dir(args) / p.onnx_file
    if not path.is_file():
        raise ValueError(
            f"{PLATE_LOCATOR}: {path} is missing; run `alpr-models fetch` (it installs the "
            "YOLO plate model for plate_detector and plate_locator)"
        )
    det = VehicleDetector(
        path,
        threads=p.threads,
        score_threshold=p.score_threshold,
        iou_threshold=p.iou_threshold,
        classes=(0,),
        agnostic_nms=True,
        input_size=input_side(config),
        arena=p.memory_arena,
    )
    return PlateLocatorService(det)


def build_plate_detector(
    args: Mapping[str, str], config: Mapping[str, Any], bls: BlsFactory | None = None
) -> PlateDetectorService:
    """The proposer ``engine`` names (:data:`ensemble.registry.PLATE_ENGINES`; ``auto``,
    the default: the YOLO plate model when provisioned, refined by ``refine``, else the
    PP-OCR detector alone). ``OVR_ALPR_PLATE_ENGINE`` in the server's environment
    overrides the config's ``engine`` (A/B runs and benchmarks)."""
    p = load_params(PlateDetectorParams, config)
    proposer = build_proposer(version_dir(args), p)
    log.info("plate_detector engine: %s", type(proposer).__name__)
    return PlateDetectorService(proposer)


def build_plate_ocr(
    args: Mapping[str, str], config: Mapping[str, Any], bls: BlsFactory | None = None
) -> PlateOcrService:
    """The recogniser ``reader`` names (:data:`ensemble.registry.READERS`);
    ``OVR_ALPR_PLATE_READER`` in the server's environment overrides it (A/B runs)."""
    p = load_params(PlateOcrParams, config)
    reader = build_reader(version_dir(args), p)
    log.info("plate_ocr reader: %s", type(reader).__name__)
    return PlateOcrService(reader)


class RawNetService:
    """A bare detector network (float32 [B, 3, S, S] -> raw output) served by the Python
    backend: stands in for Triton's native onnxruntime/TensorRT backends where only the
    Python backend exists, so the BLS variant is testable on any machine."""

    def __init__(self, path: Path, threads: int | None, input_name: str, output_name: str) -> None:
        self.sess = session(path, threads)
        self.input_name, self.output_name = input_name, output_name

    def items(self, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
        return list(_rows(inputs.get(self.input_name), self.input_name))

    def run(self, items: Sequence[Any]) -> list[Outputs]:
        out = self.sess.run(None, {self.sess.get_inputs()[0].name: np.stack(items)})[0]
        return [{self.output_name: o} for o in out]


def build_raw_net(
    args: Mapping[str, str], config: Mapping[str, Any], bls: BlsFactory | None = None
) -> RawNetService:
    p = load_params(RawNetParams, config)
    return RawNetService(version_dir(args) / p.onnx_file, p.threads, p.net_input, p.net_output)


def check_tensors(kind: str, config: Mapping[str, Any]) -> None:
    """A model whose service reads fixed tensor names (``contracts.MODEL_TENSORS``) must
    declare exactly those: a renamed tensor fails the load, not every request."""
    want = MODEL_TENSORS.get(kind)
    if want is None:  # raw_net: its names are parameters
        return
    got = ModelTensors(
        tuple(t["name"] for t in config.get("input", [])),
        tuple(t["name"] for t in config.get("output", [])),
    )
    if got != want:
        model = config.get("name") or kind
        raise ValueError(f"{model}: tensors {got} differ from ensemble.contracts: {want}")


Builder = Callable[[Mapping[str, str], Mapping[str, Any], BlsFactory | None], Service]
BUILDERS: dict[str, Builder] = {  # model kind (a key of ensemble.params.PARAMS) -> builder
    VEHICLE_DETECTOR: build_vehicle_detector,
    PLATE_DETECTOR: build_plate_detector,
    PLATE_LOCATOR: build_plate_locator,
    PLATE_OCR: build_plate_ocr,
    "raw_net": build_raw_net,
}
