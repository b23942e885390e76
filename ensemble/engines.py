"""The three networks behind a small interface, run in-process with onnxruntime.

Triton's ``model.py`` files and the in-process benchmark ceiling both use these classes,
so the server and the ceiling run exactly the same code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import ctc, text_det, yolo
from .contracts import (
    COCO_VEHICLE_CLASSES,
    DET_SIZE,
    MAX_DETECTIONS,
    MAX_PLATES,
    PLATE_ALPHABET,
    REC_HEIGHT,
    REC_WIDTH,
    InputError,
)
from .preprocess import Letterbox, letterbox, rec_crop, rec_crop_lines, rec_input

RawNet = Callable[[np.ndarray], np.ndarray]  # float32 [B, 3, S, S] -> [B, 4 + classes, anchors]


class ModelFileMissingError(FileNotFoundError):
    """Weights are not provisioned; tells the user which command provisions them."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"model weights not found at {path}; run `alpr-models fetch` first")


def session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelFileMissingError(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or int(os.environ.get("OVR_ALPR_ORT_THREADS", "0")) or 0
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Several models share the CPU in one server (each Python-backend model is its own
    # process): spinning worker threads would burn the cores the other models need.
    spin = os.environ.get("OVR_ALPR_ORT_SPIN", "0")
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class VehicleDetector:
    """YOLO (COCO) on fixed 640x640 letterboxed RGB frames; keeps vehicle classes."""

    def __init__(
        self,
        path: Path | None,
        *,
        threads: int | None = None,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        classes: Sequence[int] = tuple(COCO_VEHICLE_CLASSES),
        agnostic_nms: bool = True,
        net: RawNet | None = None,
        input_size: int = DET_SIZE,
    ) -> None:
        """Run the network from ``path`` with onnxruntime, or through ``net`` (e.g. a
        TensorRT engine served by Triton and called over BLS)."""
        self.input_size = input_size
        if net is None:
            if path is None:
                raise ValueError("VehicleDetector needs an ONNX path or a net callable")
            sess = session(path, threads)
            name = sess.get_inputs()[0].name
            shape = sess.get_inputs()[0].shape
            self.input_size = shape[2] if isinstance(shape[2], int) else input_size

            def net(x: np.ndarray) -> np.ndarray:
                out: np.ndarray = sess.run(None, {name: x})[0]
                return out

        self.net = net
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.classes = list(classes)
        self.agnostic_nms = agnostic_nms

    def raw(self, images_rgb: np.ndarray) -> np.ndarray:
        return self.net(yolo.yolo_input(images_rgb))

    def detect(
        self, images_rgb: np.ndarray, source_hw: Sequence[tuple[int, int] | None]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Batch of letterboxed frames -> per frame (boxes xyxy in source px, scores, classes)."""
        raw = self.raw(images_rgb)
        size = images_rgb.shape[1]
        results = []
        for out, hw in zip(raw, source_hw, strict=True):
            boxes, scores, classes = yolo.yolo_postprocess(
                out,
                keep_classes=self.classes,
                score_threshold=self.score_threshold,
                iou_threshold=self.iou_threshold,
                max_detections=MAX_DETECTIONS,
                agnostic=self.agnostic_nms,
            )
            if hw is not None:
                boxes = Letterbox.for_size(hw[0], hw[1], size).to_source(boxes, hw[0], hw[1])
            results.append((boxes, scores, classes))
        return results


class PlateProposer:
    """PP-OCR DB text detector proposing plate regions in a vehicle crop or frame."""

    def __init__(
        self, path: Path, *, threads: int | None = None, params: text_det.DBParams | None = None
    ) -> None:
        self.sess = session(path, threads)
        self.input_name = self.sess.get_inputs()[0].name
        self.params = params or text_det.DBParams()

    def propose_many(self, images_bgr: Sequence[np.ndarray]) -> list[text_det.Proposals]:
        """Per image its plate candidates; images of equal resized shape share a run."""
        prepared = [text_det.det_resize(im, self.params) for im in images_bgr]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (resized, _, _) in enumerate(prepared):
            groups.setdefault(resized.shape, []).append(i)
        probs: list[np.ndarray | None] = [None] * len(images_bgr)
        for idxs in groups.values():
            batch = np.concatenate([text_det.det_input(prepared[i][0]) for i in idxs])
            out = self.sess.run(None, {self.input_name: batch})[0]
            for j, i in enumerate(idxs):
                probs[i] = out[j, 0]
        results = []
        for image, (_, sy, sx), prob in zip(images_bgr, prepared, probs, strict=True):
            assert prob is not None
            quads, scores = text_det.db_boxes(prob, self.params, sy, sx)
            results.append(
                text_det.plate_candidates(
                    quads, scores, self.params, (image.shape[0], image.shape[1]), MAX_PLATES
                )
            )
        return results


class YoloPlateProposer:
    """A YOLO licence-plate detector (single class) proposing axis-aligned plate quads."""

    def __init__(
        self, path: Path, *, threads: int | None = None, score_threshold: float = 0.3
    ) -> None:
        self.detector = VehicleDetector(
            path, threads=threads, score_threshold=score_threshold, classes=(0,)
        )

    def propose_many(self, images_bgr: Sequence[np.ndarray]) -> list[text_det.Proposals]:
        size = self.detector.input_size
        boxed = [letterbox(im[..., ::-1], size)[0] for im in images_bgr]
        hws: list[tuple[int, int] | None] = [(im.shape[0], im.shape[1]) for im in images_bgr]
        dets = self.detector.detect(np.stack(boxed), hws)
        out = []
        for boxes, scores, _ in dets:
            boxes, scores = boxes[:MAX_PLATES], scores[:MAX_PLATES]
            quads = (
                np.stack(
                    [boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [2, 3]], boxes[:, [0, 3]]], axis=1
                )
                if len(boxes)
                else np.zeros((0, 4, 2), np.float32)
            )
            out.append(text_det.Proposals.single(quads.astype(np.float32), scores))
        return out


class PlateReader:
    """PP-OCR recogniser with CTC decoding folded onto the plate alphabet."""

    def __init__(
        self, path: Path, *, threads: int | None = None, alphabet: str = PLATE_ALPHABET
    ) -> None:
        self.sess = session(path, threads)
        self.input_name = self.sess.get_inputs()[0].name
        meta = self.sess.get_modelmeta().custom_metadata_map.get("character")
        if not meta:
            raise ValueError(f"{path} has no 'character' metadata; not a PP-OCR recogniser")
        self.alphabet = alphabet
        self.fold_matrix = ctc.folding_matrix(ctc.recogniser_symbols(meta), alphabet)

    def read(self, crops: np.ndarray, batch: int = 16) -> list[ctc.CtcResult]:
        """uint8 [N, 48, 320, 3] BGR crops -> one CtcResult per crop."""
        results: list[ctc.CtcResult] = []
        for start in range(0, len(crops), batch):
            x = rec_input(crops[start : start + batch])
            probs = self.sess.run(None, {self.input_name: x})[0]
            results += ctc.greedy_decode(ctc.fold(probs, self.fold_matrix), self.alphabet)
        return results


def crops_for(
    image_bgr: np.ndarray, quads: np.ndarray, lines: Sequence[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rectified recogniser crops ([K', 48, 320, 3]) and the indices of the quads kept.

    ``lines``: per quad its text lines [L, 4, 2] (top first); a two-line candidate's crop
    shows its lines side by side (:func:`ensemble.preprocess.rec_crop_lines`)."""
    crops, kept = [], []
    for i, q in enumerate(quads):
        try:
            if lines is not None and len(lines[i]) > 1:
                crops.append(rec_crop_lines(image_bgr, lines[i]))
            else:
                crops.append(rec_crop(image_bgr, q))
            kept.append(i)
        except InputError:
            continue
    if not crops:
        return np.zeros((0, REC_HEIGHT, REC_WIDTH, 3), np.uint8), np.zeros((0,), np.int64)
    return np.stack(crops), np.asarray(kept, np.int64)
