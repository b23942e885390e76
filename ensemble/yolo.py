"""YOLOv8-style detector output -> boxes, scores, classes (after class-aware NMS)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .contracts import InputError


def yolo_input(images_rgb: np.ndarray) -> np.ndarray:
    """uint8 [B, H, W, 3] RGB -> float32 [B, 3, H, W] in [0, 1]."""
    if images_rgb.ndim != 4 or images_rgb.shape[-1] != 3:
        raise InputError(f"expected images of shape [B, H, W, 3], got {images_rgb.shape}")
    return np.ascontiguousarray(images_rgb.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def yolo_postprocess(
    raw: np.ndarray,
    *,
    keep_classes: Sequence[int] | None,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    agnostic: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's raw output [4 + num_classes, anchors].

    ``agnostic`` NMS (default) suppresses overlapping boxes across classes: one vehicle
    scored as both "car" and "truck" is one object, reported with its best class.

    Returns (boxes xyxy [K, 4] in detector-input pixels, scores [K], classes [K]),
    sorted by score, K <= max_detections.
    """
    if raw.ndim != 2 or raw.shape[0] < 5:
        raise InputError(f"expected YOLO output [4 + classes, anchors], got {raw.shape}")
    cls_scores = raw[4:]
    class_ids = np.asarray(keep_classes if keep_classes is not None else range(cls_scores.shape[0]))
    sub = cls_scores[class_ids]  # [C', A]
    best = sub.argmax(axis=0)
    scores = sub[best, np.arange(sub.shape[1])]
    keep = scores >= score_threshold
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
    cx, cy, w, h = raw[0, keep], raw[1, keep], raw[2, keep], raw[3, keep]
    scores, classes = scores[keep], class_ids[best[keep]]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    xywh = np.stack([boxes[:, 0], boxes[:, 1], w, h], axis=1)
    if agnostic:
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_threshold, iou_threshold)
    else:
        idx = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores.tolist(), classes.tolist(), score_threshold, iou_threshold
        )
    order = np.asarray(idx, dtype=np.int64).reshape(-1)
    order = order[np.argsort(-scores[order])][:max_detections]
    return boxes[order], scores[order].astype(np.float32), classes[order].astype(np.int32)


def pad_detections(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pad to fixed-size outputs ([size,4], [size], [size] (-1 = empty), count [1])."""
    n = min(len(boxes), size)
    pb = np.zeros((size, 4), np.float32)
    ps = np.zeros((size,), np.float32)
    pc = np.full((size,), -1, np.int32)
    pb[:n], ps[:n], pc[:n] = boxes[:n], scores[:n], classes[:n]
    return pb, ps, pc, np.array([n], np.int32)
