"""Training views of a plate image: the crop the server would cut, then the camera.

``view`` picks a region (the whole plate with jittered borders, as a YOLO box holds it, or
the tight main text line, as the text-line refinement cuts it, when its box is known),
warps it with a small perspective and rotation into a recogniser line of height 48 (the
served crop, ``ensemble.preprocess.rectify``), and degrades it the way cameras do: low
resolution, blur (focus and motion), noise, JPEG, dim or over-exposed light, night/IR
grey, shadows and dirt. ``served_view`` is the same path without randomness, used for
validation. ``ensemble.plate_rec.to_input`` then stretches either to the network's input.
"""

from __future__ import annotations

import cv2
import numpy as np

LINE_HEIGHT = 48  # the served crop's height (ensemble.contracts.REC_HEIGHT)
MAX_WIDTH = 320


def _line(img: np.ndarray, quad: np.ndarray, interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    tl, tr, br, bl = quad
    w = float(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    h = float(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    tw = int(min(MAX_WIDTH, max(8, round(LINE_HEIGHT * w / max(h, 1.0)))))
    dst = np.array([[0, 0], [tw, 0], [tw, LINE_HEIGHT], [0, LINE_HEIGHT]], np.float32)
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    return cv2.warpPerspective(
        img, m, (tw, LINE_HEIGHT), flags=interp, borderMode=cv2.BORDER_REPLICATE
    )


def served_view(img: np.ndarray) -> np.ndarray:
    """The whole image as the server reads a plate crop: height 48, aspect kept."""
    h, w = img.shape[:2]
    quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    return _line(img, quad, cv2.INTER_AREA if h > LINE_HEIGHT else cv2.INTER_CUBIC)


def _region(
    shape: tuple[int, ...], box: tuple[int, int, int, int] | None, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    h, w = shape[:2]
    if box is not None and rng.random() < 0.5:  # the tight text line
        x1, y1, x2, y2 = box
        bw, bh = x2 - x1, y2 - y1
        return (
            x1 - bw * rng.uniform(-0.01, 0.06),
            y1 - bh * rng.uniform(-0.03, 0.22),
            x2 + bw * rng.uniform(-0.01, 0.06),
            y2 + bh * rng.uniform(-0.03, 0.22),
        )
    if box is None and rng.random() < 0.3:  # a real crop cut tighter vertically
        return (
            w * rng.uniform(-0.03, 0.04),
            h * rng.uniform(0.0, 0.16),
            w * rng.uniform(0.96, 1.03),
            h * rng.uniform(0.84, 1.0),
        )
    return (
        w * rng.uniform(-0.06, 0.05),
        h * rng.uniform(-0.08, 0.06),
        w * rng.uniform(0.95, 1.06),
        h * rng.uniform(0.94, 1.08),
    )


def _photometric(line: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = line.astype(np.float32)
    if rng.random() < 0.15:  # night / IR: grey, often high contrast
        g = cv2.cvtColor(line, cv2.COLOR_BGR2GRAY).astype(np.float32)
        out = np.repeat(g[..., None], 3, axis=2)
    if rng.random() < 0.3:  # a shadow across part of the plate
        x = int(rng.integers(0, line.shape[1]))
        side = slice(0, x) if rng.random() < 0.5 else slice(x, None)
        out[:, side] *= rng.uniform(0.4, 0.8)
    if rng.random() < 0.2:  # dirt
        for _ in range(int(rng.integers(1, 6))):
            c = (int(rng.integers(0, line.shape[1])), int(rng.integers(0, line.shape[0])))
            mask = np.zeros(line.shape[:2], np.float32)
            cv2.circle(mask, c, int(rng.integers(1, 6)), (1.0,), -1)
            out *= 1 - 0.5 * mask[..., None]
    contrast = rng.uniform(0.5, 1.3)
    brightness = rng.uniform(-60, 50)
    out = (out - 128) * contrast + 128 + brightness
    out *= rng.uniform(0.85, 1.15, 3).astype(np.float32)  # colour cast
    if rng.random() < 0.3:
        gamma = rng.uniform(0.6, 1.6)
        out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** gamma
    if rng.random() < 0.5:
        out += rng.normal(0, rng.uniform(2, 14), out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def _blur(line: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r = rng.random()
    if r < 0.25:
        return cv2.GaussianBlur(line, (0, 0), rng.uniform(0.5, 1.6))
    if r < 0.4:  # motion
        k = int(rng.integers(3, 8))
        kernel = np.zeros((k, k), np.float32)
        if rng.random() < 0.7:
            kernel[k // 2, :] = 1.0
        else:
            np.fill_diagonal(kernel, 1.0)
        return cv2.filter2D(line, -1, kernel / kernel.sum())
    return line


def view(
    img: np.ndarray, box: tuple[int, int, int, int] | None, rng: np.random.Generator
) -> np.ndarray:
    """One random training view of a plate image (BGR): a line of height 48."""
    x1, y1, x2, y2 = _region(img.shape, box, rng)
    w, h = x2 - x1, y2 - y1
    quad = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
    quad += rng.uniform(-0.035, 0.035, (4, 2)).astype(np.float32) * [w, h]
    angle = np.deg2rad(rng.uniform(-4, 4))
    c = quad.mean(axis=0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    quad = (quad - c) @ rot.T + c
    src = img
    if rng.random() < 0.35:  # a plate seen from further away: few pixels, then upscaled
        target_h = rng.uniform(10, 28)
        f = min(1.0, target_h / max(h, 1.0))
        if f < 1.0:
            small = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            src, quad = small, quad * f
    line = _line(src, quad, cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR)
    line = _blur(line, rng)
    line = _photometric(line, rng)
    if rng.random() < 0.4:
        q = int(rng.integers(20, 90))
        ok, enc = cv2.imencode(".jpg", line, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            line = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return line
