"""Request handling shared by every Python-backend ``model.py``, testable without Triton.

A *service* turns one request's input tensors into items (validating them), runs all
items of a dynamic batch together, and returns fixed-shape outputs per item. ``serve``
does the Triton bookkeeping: one response per request in order, a per-request error for
bad input while the rest of the batch still succeeds, and a per-item retry when a
batched run fails so one poisoned item cannot fail its neighbours.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import text_det
from .contracts import (
    COCO_VEHICLE_CLASSES,
    DET_SIZE,
    MAX_DETECTIONS,
    MAX_IMAGE_SIDE,
    MAX_PLATES,
    MAX_TEXT,
    PLATE_ALPHABET,
    REC_HEIGHT,
    REC_WIDTH,
    InputError,
)
from .engines import (
    REFINE_PARAMS,
    FusedReader,
    ModelFileMissingError,
    PlateCtcReader,
    PlateProposer,
    PlateReader,
    RawNet,
    Reader,
    VehicleDetector,
    YoloPlateProposer,
    crops_for,
    session,
)
from .image_io import decode_image
from .preprocess import rec_crop
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
    """IMAGE uint8 [B, 640, 640, 3] RGB (+ SOURCE_SIZE int32 [B, 2] h,w) -> boxes."""

    def __init__(self, detector: VehicleDetector) -> None:
        self.detector = detector

    def items(self, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
        images = _rows(inputs.get("IMAGE"), "IMAGE")
        size = self.detector.input_size
        if images.dtype != np.uint8 or images.shape[1:] != (size, size, 3):
            raise InputError(
                f"IMAGE must be uint8 [B, {size}, {size}, 3] letterboxed RGB, got "
                f"{images.dtype} {list(images.shape)}"
            )
        sizes = inputs.get("SOURCE_SIZE")
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
            out.append({"BOXES": b, "SCORES": s, "CLASSES": c, "COUNT": n})
        return out


class PlateDetectorService:
    """IMAGE bytes [B, 1] (encoded vehicle crop or frame) -> plate boxes and rectified crops."""

    def __init__(self, proposer: PlateProposer | YoloPlateProposer) -> None:
        self.proposer = proposer

    def items(self, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
        rows = _rows(inputs.get("IMAGE"), "IMAGE")
        return [decode_image(_bytes_of(row, "IMAGE")) for row in rows]

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
            row: Outputs = {"PLATE_BOXES": pb, "PLATE_SCORES": ps, "PLATE_CROPS": pc}
            row["PLATE_COUNT"] = np.array([n], np.int32)
            out.append(row)
        return out


class PlateOcrService:
    """Read plates: PLATE_CROPS [B, 8, 48, 320, 3] + PLATE_COUNT [B, 1] (from plate_detector),
    or PLATE_IMAGE bytes [B, 1] (one encoded plate crop per row, e.g. from an edge client)."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def items(self, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
        image = inputs.get("PLATE_IMAGE")
        crops = inputs.get("PLATE_CROPS")
        if (image is None) == (crops is None):
            raise InputError("send exactly one of PLATE_IMAGE or PLATE_CROPS (+ PLATE_COUNT)")
        if image is not None:
            rows = _rows(image, "PLATE_IMAGE")
            out = []
            for row in rows:
                plate = decode_image(_bytes_of(row, "PLATE_IMAGE"))
                h, w = plate.shape[:2]
                out.append(rec_crop(plate, text_det.box_quads([[0, 0, w, h]])[0])[None])
            return out
        crops = _rows(crops, "PLATE_CROPS")
        counts = inputs.get("PLATE_COUNT")
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
                {"PLATE_TEXT": text, "PLATE_CONFIDENCE": conf, "PLATE_CHAR_CONFIDENCES": chars,
                 "PLATE_ALT_TEXT": alt_text, "PLATE_ALT_CONFIDENCES": alts}
            )  # fmt: skip
        return out


# ---------------------------------------------------------------------------------------
def model_params(args: Mapping[str, str], config: Mapping[str, Any]) -> dict[str, str]:
    """String parameters from a Triton model config (``parameters { key: ... }``)."""
    params = config.get("parameters", {}) or {}
    return {k: str(v.get("string_value", "")) for k, v in params.items()}


def version_dir(args: Mapping[str, str]) -> Path:
    return Path(args["model_repository"]) / str(args["model_version"])


def _threads(params: Mapping[str, str]) -> int | None:
    t = int(params.get("intra_op_threads", "0") or 0)
    return t or None


BlsFactory = Callable[[str, str, str], RawNet]  # (model, input name, output name) -> net


def build_vehicle_detector(
    args: Mapping[str, str], config: Mapping[str, Any], bls: BlsFactory | None = None
) -> VehicleDetectorService:
    """ONNX in-process by default; with ``net_model`` set, the network is another Triton
    model (a TensorRT plan or the native onnxruntime backend) called over BLS, and this
    model only letterbox-normalises, decodes and runs NMS."""
    p = model_params(args, config)
    classes = [
        int(c) for c in p.get("classes", ",".join(map(str, COCO_VEHICLE_CLASSES))).split(",") if c
    ]
    net = None
    if p.get("net_model"):
        if bls is None:
            raise ValueError("net_model is set but no BLS is available outside Triton")
        net = bls(p["net_model"], p.get("net_input", "images"), p.get("net_output", "output0"))
    det = VehicleDetector(
        None if net else version_dir(args) / p.get("onnx_file", "model.onnx"),
        net=net,
        threads=_threads(p),
        score_threshold=float(p.get("score_threshold", "0.25")),
        iou_threshold=float(p.get("iou_threshold", "0.45")),
        classes=classes,
        agnostic_nms=p.get("agnostic_nms", "true").lower() in ("1", "true", "yes"),
    )
    return VehicleDetectorService(det)


def build_plate_detector(
    args: Mapping[str, str], config: Mapping[str, Any], bls: BlsFactory | None = None
) -> PlateDetectorService:
    """``engine`` ``auto`` (default): the YOLO plate model when provisioned
    (``yolo_plate.onnx``), its boxes refined into text lines by the PP-OCR detector
    (``refine: ppocr``; ``none`` reads the YOLO boxes as they are), the PP-OCR proposer
    reading images up to ``fallback_max_side`` px (0, the default: off) where YOLO saw no
    plate; else, or with ``engine: ppocr``, the PP-OCR detector alone as the plate-region
    proposer.
    ``OVR_ALPR_PLATE_ENGINE`` in the server's environment overrides the config's
    ``engine`` (A/B runs and benchmarks)."""
    p = model_params(args, config)
    vdir = version_dir(args)
    engine = os.environ.get("OVR_ALPR_PLATE_ENGINE") or p.get("engine", "auto")
    if engine not in ("auto", "yolo", "ppocr"):
        raise ValueError(f"plate_detector engine {engine!r}: use auto, yolo or ppocr")
    yolo_path = vdir / p.get("yolo_file", "yolo_plate.onnx")
    det_path = vdir / p.get("det_file", "ppocr_det.onnx")
    proposer: PlateProposer | YoloPlateProposer
    if engine == "yolo" or (engine == "auto" and yolo_path.is_file()):
        refine = p.get("refine", "ppocr")
        fallback_side = int(p.get("fallback_max_side", "0"))
        if refine not in ("ppocr", "none"):
            raise ValueError(f"plate_detector refine {refine!r}: use ppocr or none")
        text = PlateProposer(det_path, threads=_threads(p))  # one session, two uses
        proposer = YoloPlateProposer(
            yolo_path,
            threads=_threads(p),
            score_threshold=float(p.get("score_threshold", "0.25")),
            refine=text.with_params(REFINE_PARAMS) if refine == "ppocr" else None,
            min_size=int(p.get("yolo_min_size", "320")),
            max_size=int(p.get("yolo_max_size", str(DET_SIZE))),
            fallback=text if fallback_side else None,
            fallback_max_side=fallback_side,
            keep_box=p.get("keep_box", "false").lower() in ("1", "true", "yes"),
        )
    else:
        proposer = PlateProposer(det_path, threads=_threads(p))
    log.info("plate_detector engine: %s", type(proposer).__name__)
    return PlateDetectorService(proposer)


READERS = ("plate", "ppocr", "fused")


def build_reader(
    vdir: Path, params: Mapping[str, str], threads: int | None = None
) -> PlateReader | PlateCtcReader | FusedReader:
    """The recogniser ``plate_ocr`` serves, by its ``reader`` parameter (``plate``:
    OVR-ALPR's plate-trained CTC model, ``plate_file``; ``ppocr``: PP-OCRv6 rec,
    ``rec_file``; ``fused``, the default: both on every crop, :func:`ensemble.engines.fuse`).
    ``OVR_ALPR_PLATE_READER`` in the server's environment overrides it (A/B runs). When
    the plate model is not provisioned, ``plate`` falls back to PP-OCR with a warning."""
    choice = os.environ.get("OVR_ALPR_PLATE_READER") or params.get("reader", "fused")
    if choice not in READERS:
        raise ValueError(f"plate_ocr reader {choice!r}: use one of {', '.join(READERS)}")
    alphabet = params.get("alphabet", PLATE_ALPHABET) or PLATE_ALPHABET
    plate_path = vdir / params.get("plate_file", "plate_rec.onnx")
    if choice in ("plate", "fused") and not plate_path.is_file():
        if choice == "plate":
            raise ModelFileMissingError(plate_path)
        log.warning("plate_ocr: %s missing (run `alpr-models fetch`); serving PP-OCR", plate_path)
        choice = "ppocr"
    ppocr = None
    if choice in ("ppocr", "fused"):
        ppocr = PlateReader(
            vdir / params.get("rec_file", "ppocr_rec.onnx"), threads=threads, alphabet=alphabet
        )
        if choice == "ppocr":
            return ppocr
    plate = PlateCtcReader(plate_path, threads=threads)
    if plate.alphabet != alphabet:
        raise ValueError(
            f"plate_ocr: {plate_path.name} reads the alphabet {plate.alphabet!r}, the config "
            f"asks for {alphabet!r}; retrain with that alphabet or change the config"
        )
    if ppocr is None:
        return plate
    return FusedReader(plate, ppocr, float(params.get("fuse_ppocr_weight", "1.0")))


def build_plate_ocr(
    args: Mapping[str, str], config: Mapping[str, Any], bls: BlsFactory | None = None
) -> PlateOcrService:
    p = model_params(args, config)
    engine = p.get("engine", "onnxruntime")
    if engine != "onnxruntime":
        raise ValueError(
            f"plate_ocr engine {engine!r} is not available in this build; use 'onnxruntime'"
        )
    reader = build_reader(version_dir(args), p, _threads(p))
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
    p = model_params(args, config)
    return RawNetService(
        version_dir(args) / p.get("onnx_file", "model.onnx"), _threads(p),
        p.get("net_input", "images"), p.get("net_output", "output0"),
    )  # fmt: skip


Builder = Callable[[Mapping[str, str], Mapping[str, Any], BlsFactory | None], Service]
BUILDERS: dict[str, Builder] = {
    "vehicle_detector": build_vehicle_detector,
    "plate_detector": build_plate_detector,
    "plate_ocr": build_plate_ocr,
    "raw_net": build_raw_net,
}
