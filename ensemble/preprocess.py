"""Geometry shared by clients and models: letterboxing and plate crops for the recogniser."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .contracts import DET_SIZE, REC_HEIGHT, REC_WIDTH, InputError

PAD_VALUE = 114  # Ultralytics' letterbox grey


@dataclass(frozen=True)
class Letterbox:
    """How an image of (height, width) maps into a square detector input."""

    scale: float
    pad_x: float
    pad_y: float

    @classmethod
    def for_size(cls, height: int, width: int, size: int = DET_SIZE) -> Letterbox:
        if height <= 0 or width <= 0:
            raise InputError(f"source size must be positive, got {height}x{width}")
        scale = min(size / height, size / width)
        new_w, new_h = round(width * scale), round(height * scale)
        return cls(scale, (size - new_w) / 2, (size - new_h) / 2)

    def to_source(self, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
        """Map xyxy boxes from letterboxed to source pixel coordinates (clipped)."""
        out = boxes.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
        return out


def letterbox(
    image: np.ndarray, size: int = DET_SIZE, *, fast: bool = False
) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to ``size`` x ``size`` (same channel order).
    Downscaling averages pixels (``INTER_AREA``); ``fast`` interpolates bilinearly as
    Ultralytics' own letterbox does (3x cheaper on a 720p frame; per-frame plate finding)."""
    h, w = image.shape[:2]
    lb = Letterbox.for_size(h, w, size)
    new_w, new_h = round(w * lb.scale), round(h * lb.scale)
    interp = cv2.INTER_AREA if lb.scale < 1 and not fast else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    out = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    top, left = round(lb.pad_y - 0.1), round(lb.pad_x - 0.1)
    out[top : top + new_h, left : left + new_w] = resized
    return out, lb


def order_quad(points: np.ndarray) -> np.ndarray:
    """Order 4 points as top-left, top-right, bottom-right, bottom-left."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    by_x = pts[np.argsort(pts[:, 0])]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1])]
    tr, br = right[np.argsort(right[:, 1])]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def rectify(image: np.ndarray, quad: np.ndarray, max_width: int = REC_WIDTH) -> np.ndarray:
    """Warp a (possibly tilted) quadrilateral to REC_HEIGHT rows, keeping its aspect ratio
    (width at most ``max_width``: wider text is condensed). Small regions are upscaled with
    cubic interpolation, large ones area-averaged."""
    q = order_quad(quad)
    w = max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[3] - q[2]))
    h = max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2]))
    if w < 2 or h < 2:
        raise InputError(f"plate region too small to read: {w:.0f}x{h:.0f} px")
    target_w = int(min(max_width, max(1, round(REC_HEIGHT * w / h))))
    dst = np.array([[0, 0], [target_w, 0], [target_w, REC_HEIGHT], [0, REC_HEIGHT]], np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    interp = cv2.INTER_CUBIC if h < REC_HEIGHT else cv2.INTER_AREA
    return cv2.warpPerspective(
        image, m, (target_w, REC_HEIGHT), flags=interp, borderMode=cv2.BORDER_REPLICATE
    )


# The blue EU band at the left of a European plate (stars, country code): OpenCV hue
# range (0-180) and the least saturation / value counted as band blue.
BAND_HUE = (95, 135)
BAND_MIN_SAT, BAND_MIN_VAL = 80, 40
BAND_MAX_WIDTH = 0.22  # the band is at most this share of the text line's width
BAND_START = 0.08  # ... and starts within this share from the left edge


def trim_band(line: np.ndarray) -> np.ndarray:
    """A rectified text line without the blue EU band at its left end (whose country code
    a recogniser reads as extra characters, ``PWX52874`` for ``PL WX 52874``).

    The band is a run of columns mostly band-blue (``BAND_HUE``) that starts near the left
    edge (``BAND_START``), is narrower than ``BAND_MAX_WIDTH`` of the line and is followed
    by columns that are not blue (all measured on the middle three fifths of the rows, the
    margins may show the car); a plate that is blue all over (some diplomatic and older
    plates) keeps its crop. Grey images pass through unchanged."""
    if line.ndim != 3 or line.shape[2] != 3 or line.shape[1] < 20:
        return line
    rows = line.shape[0]
    hsv = cv2.cvtColor(line[rows // 5 : rows - rows // 5], cv2.COLOR_BGR2HSV)  # no margins
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    blue = (h >= BAND_HUE[0]) & (h <= BAND_HUE[1]) & (s >= BAND_MIN_SAT) & (v >= BAND_MIN_VAL)
    share = blue.mean(axis=0)  # per column
    width = line.shape[1]
    start = next((c for c in range(int(BAND_START * width) + 1) if share[c] > 0.5), None)
    if start is None:
        return line
    end = start
    while end < width and share[end] > 0.25:
        end += 1
    if end - start > BAND_MAX_WIDTH * width or share[end:].mean() > 0.15:
        return line
    return line[:, end:]


def _pad(text: np.ndarray) -> np.ndarray:
    out = np.full((REC_HEIGHT, REC_WIDTH, 3), 128, dtype=np.uint8)
    out[:, : text.shape[1]] = text
    return out


def rec_crop(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Rectify a (possibly tilted) quadrilateral to a REC_HEIGHT x REC_WIDTH recogniser input.

    The text keeps its aspect ratio (height 48, width up to 320; small crops are upscaled
    with cubic interpolation) and the rest is padded with mid-grey, which the recogniser's
    normalisation maps to 0, as PaddleOCR pads.
    """
    return _pad(trim_band(rectify(image, quad)))


LINE_GAP = 8  # px of plate background between joined lines (each line brings its margins)


def rec_crop_lines(image: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """One recogniser input for a plate printed on several lines (``quads`` [L, 4, 2], in
    reading order, top line first): each line is rectified to the recogniser's height on
    its own, and the lines are laid side by side, separated by ``LINE_GAP`` px of the
    plate's background (median of the lines' top and bottom rows), so a single-line
    recogniser reads ``TOP BOTTOM`` as one string. When the row is wider than REC_WIDTH
    it is condensed horizontally to fit; the rest is padded as in :func:`rec_crop`.
    """
    if len(quads) == 1:
        return rec_crop(image, quads[0])
    parts = [rectify(image, q, max_width=2 * REC_WIDTH) for q in quads]
    edges = np.concatenate([np.concatenate([p[0], p[-1]]) for p in parts])
    fill = np.median(edges.reshape(-1, edges.shape[-1]), axis=0).astype(np.uint8)
    gap = np.empty((REC_HEIGHT, LINE_GAP, parts[0].shape[2]), np.uint8)
    gap[:] = fill
    pieces = [parts[0]]
    for part in parts[1:]:
        pieces += [gap, part]
    row = np.concatenate(pieces, axis=1)
    if row.shape[1] > REC_WIDTH:
        row = cv2.resize(row, (REC_WIDTH, REC_HEIGHT), interpolation=cv2.INTER_AREA)
    return _pad(row)


def rec_input(crops: np.ndarray) -> np.ndarray:
    """uint8 [N, 48, 320, 3] BGR crops -> float32 [N, 3, 48, 320] in [-1, 1]."""
    x = crops.astype(np.float32).transpose(0, 3, 1, 2)
    return (x / 255.0 - 0.5) / 0.5
