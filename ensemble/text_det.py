"""PP-OCR (DB) text detector used as a plate-region proposer.

The detector outputs a per-pixel text probability map; connected regions become rotated
rectangles, expanded ("unclipped") as DB prescribes, then filtered by plate-like geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .contracts import InputError


@dataclass(frozen=True)
class DBParams:
    """DB post-processing knobs (defaults follow PaddleOCR / RapidOCR)."""

    limit_side: int = 960  # long side of the detector input (multiple of 32)
    min_side: int = 320  # small vehicle crops are upscaled to at least this short side
    thresh: float = 0.3  # pixel probability to count as text
    box_thresh: float = 0.5  # mean probability inside a region to keep it
    unclip_ratio: float = 1.6  # region expansion (area * ratio / perimeter)
    min_aspect: float = 1.2  # plate-like width / height bounds
    max_aspect: float = 12.0
    min_height: float = 8.0  # px in the source image


def det_resize(image: np.ndarray, params: DBParams) -> tuple[np.ndarray, float, float]:
    """Resize so the long side <= limit_side and the short side >= min_side, multiples of 32."""
    h, w = image.shape[:2]
    scale = min(1.0, params.limit_side / max(h, w))
    if min(h, w) * scale < params.min_side:
        scale = min(params.min_side / min(h, w), params.limit_side / max(h, w) * 2)
    nh = max(32, round(h * scale / 32) * 32)
    nw = max(32, round(w * scale / 32) * 32)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return resized, nh / h, nw / w


def det_input(resized_bgr: np.ndarray) -> np.ndarray:
    x = resized_bgr.astype(np.float32).transpose(2, 0, 1)[None]
    return (x / 255.0 - 0.5) / 0.5


def db_boxes(
    prob: np.ndarray, params: DBParams, scale_y: float, scale_x: float
) -> tuple[np.ndarray, np.ndarray]:
    """Probability map [H, W] -> (quads [K, 4, 2] in source pixels, scores [K])."""
    if prob.ndim != 2:
        raise InputError(f"expected a 2-D probability map, got {prob.shape}")
    mask = cv2.dilate((prob > params.thresh).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    quads, scores = [], []
    for contour in contours[:1000]:
        if len(contour) < 4:
            continue
        x, y, w, h = cv2.boundingRect(contour)
        region = np.zeros((h, w), np.uint8)
        cv2.fillPoly(region, [(contour.reshape(-1, 2) - [x, y]).astype(np.int32)], (1,))
        score = float(cv2.mean(prob[y : y + h, x : x + w], region)[0])
        if score < params.box_thresh:
            continue
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
        if min(rw, rh) < 3:
            continue
        d = rw * rh * params.unclip_ratio / (2 * (rw + rh))
        quad = np.asarray(cv2.boxPoints(((cx, cy), (rw + 2 * d, rh + 2 * d), angle)), np.float32)
        quad[:, 0] /= scale_x
        quad[:, 1] /= scale_y
        quads.append(quad)
        scores.append(score)
    if not quads:
        return np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32)
    return np.asarray(quads, np.float32), np.asarray(scores, np.float32)


def quad_size(quad: np.ndarray) -> tuple[float, float]:
    """(long side, short side) of a rotated rectangle."""
    a = float(np.linalg.norm(quad[0] - quad[1]))
    b = float(np.linalg.norm(quad[1] - quad[2]))
    return max(a, b), min(a, b)


def merge_line_fragments(
    quads: np.ndarray, scores: np.ndarray, max_gap: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Join text regions that continue one line: plates printed with wide separators
    (``47-TGK-8``, ``AB 123 CD``) come out of the detector as several boxes.

    Two regions merge when their heights agree within 1.6x, they overlap vertically by at
    least 60% of the smaller height, and the horizontal gap is below ``max_gap`` heights.
    The merged region is the minimum-area rectangle around both (tilt preserved).
    """
    items = [(q, float(s)) for q, s in zip(quads, scores, strict=True)]
    merged = True
    while merged and len(items) > 1:
        merged = False
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b = quad_to_box(items[i][0][None])[0], quad_to_box(items[j][0][None])[0]
                ha, hb = a[3] - a[1], b[3] - b[1]
                if max(ha, hb) > 1.6 * min(ha, hb):
                    continue
                overlap = min(a[3], b[3]) - max(a[1], b[1])
                gap = max(a[0], b[0]) - min(a[2], b[2])
                if overlap < 0.6 * min(ha, hb) or gap > max_gap * min(ha, hb):
                    continue
                pts = np.concatenate([items[i][0], items[j][0]]).astype(np.float32)
                quad = np.asarray(cv2.boxPoints(cv2.minAreaRect(pts)), np.float32)
                score = max(items[i][1], items[j][1])
                items = [it for k, it in enumerate(items) if k not in (i, j)] + [(quad, score)]
                merged = True
                break
            if merged:
                break
    if not items:
        return quads, scores
    return np.stack([q for q, _ in items]), np.asarray([s for _, s in items], np.float32)


def plate_candidates(
    quads: np.ndarray, scores: np.ndarray, params: DBParams, image_hw: tuple[int, int], limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep plate-shaped text regions (aspect, height), best first, at most ``limit``."""
    h, w = image_hw
    if len(quads) > 1:
        quads, scores = merge_line_fragments(quads, scores)
    keep = []
    for i, quad in enumerate(quads):
        long, short = quad_size(quad)
        if short < params.min_height or not params.min_aspect <= long / short <= params.max_aspect:
            continue
        keep.append(i)
    if not keep:
        return np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32)
    kq, ks = quads[keep].copy(), scores[keep]
    kq[..., 0] = kq[..., 0].clip(0, w - 1)
    kq[..., 1] = kq[..., 1].clip(0, h - 1)
    # rank by detector confidence weighted by size: plates are the larger, crisper text
    area = np.array([np.prod(quad_size(q)) for q in kq])
    order = np.argsort(-(ks * np.sqrt(area)))[:limit]
    return kq[order], ks[order]


def quad_to_box(quads: np.ndarray) -> np.ndarray:
    """[K, 4, 2] quads -> [K, 4] axis-aligned xyxy boxes."""
    if len(quads) == 0:
        return np.zeros((0, 4), np.float32)
    return np.concatenate([quads.min(axis=1), quads.max(axis=1)], axis=1).astype(np.float32)
