"""PP-OCR (DB) text detector used as a plate-region proposer.

The detector outputs a per-pixel text probability map; connected regions become rotated
rectangles, expanded ("unclipped") as DB prescribes, then filtered by plate-like geometry.
Fragments of one line are joined (``merge_line_fragments``); two stacked lines that form one
plate (motorcycle and square plates) also become one candidate whose crop shows both lines
side by side (``stacked_pairs``), next to the single-line candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    # two-row plates (see ``stacked_pairs``); heights and offsets are of unclipped lines
    two_row: bool = True
    split_max_aspect: float = 3.0  # a region this square may be two lines fused together...
    split_valley: float = 0.7  # ... when its row profile dips below this share of both peaks
    # opt-in: a block this square (width / height) is also read as two rows, its top and
    # bottom halves (the detector sees a few small two-row plates as one block with no
    # dip); off by default: it costs a recogniser crop for every badge or logo
    halves_aspect: tuple[float, float] | None = None
    row_height_ratio: float = 1.8  # taller / shorter line
    row_min_offset: float = 0.35  # centre-to-centre distance / mean line height ...
    row_max_offset: float = 1.0  # ... stacked lines, not one line's fragments, not far apart
    row_min_overlap: float = 0.7  # horizontal overlap / the top line's width
    row_max_top_width: float = 1.25  # top width / bottom width (a top line may be shorter)
    row_min_top_width: float = 0.3
    row_max_aspect: float = 4.0  # the pair's width / height


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


def _split_rows(prob: np.ndarray, rect: Any, params: DBParams) -> list[np.ndarray] | None:
    """Two stacked text lines that the detector fused into one region (small or tilted
    two-row plates): in the region's own frame, the mean probability per row dips between
    the lines. Returns the two lines' pixels (image coordinates), or None for one line."""
    (cx, cy), (rw, rh), _ = rect
    if min(rw, rh) < 8 or max(rw, rh) / min(rw, rh) > params.split_max_aspect:
        return None
    pts = cv2.boxPoints(rect)
    sides = [pts[1] - pts[0], pts[2] - pts[1]]
    # the baseline is the side nearer the horizontal (a block of two rows may be taller
    # than wide); plates roll far less than 45 degrees
    k = int(np.argmin([abs(float(d[1])) / max(float(np.hypot(*d)), 1e-6) for d in sides]))
    u = sides[k]
    long, short = float(np.hypot(*u)), float(np.hypot(*sides[1 - k]))
    angle = (float(np.degrees(np.arctan2(u[1], u[0]))) + 90.0) % 180.0 - 90.0
    m = np.asarray(cv2.getRotationMatrix2D((cx, cy), angle, 1.0), np.float64)  # levels it
    m[:, 2] += np.array([long / 2 - cx, short / 2 - cy])
    width, height = int(np.ceil(long)), int(np.ceil(short))
    warped = cv2.warpAffine(prob, m, (width, height), flags=cv2.INTER_LINEAR)
    profile = warped.mean(axis=1)
    lo, hi = height // 4, -(-3 * height // 4)
    valley = lo + int(np.argmin(profile[lo:hi]))
    peaks = min(float(profile[:valley].max()), float(profile[valley + 1 :].max()))
    if profile[valley] > params.split_valley * peaks:
        return None
    inv = cv2.invertAffineTransform(m)
    parts = []
    for y0, y1 in ((0, valley), (valley + 1, height)):
        ys, xs = np.nonzero(warped[y0:y1] > params.thresh)
        if len(xs) < 4:
            return None
        local = np.stack([xs, ys + y0], axis=1).astype(np.float32)[:, None]
        parts.append(cv2.transform(local, inv).reshape(-1, 2))
    return parts


def _unclip(points: np.ndarray, params: DBParams) -> np.ndarray | None:
    """DB's expansion of a region's minimum-area rectangle (None when degenerate)."""
    (cx, cy), (rw, rh), angle = cv2.minAreaRect(points.astype(np.float32))
    if min(rw, rh) < 3:
        return None
    d = rw * rh * params.unclip_ratio / (2 * (rw + rh))
    return np.asarray(cv2.boxPoints(((cx, cy), (rw + 2 * d, rh + 2 * d), angle)), np.float32)


def db_boxes(
    prob: np.ndarray, params: DBParams, scale_y: float, scale_x: float
) -> tuple[np.ndarray, np.ndarray]:
    """Probability map [H, W] -> (quads [K, 4, 2] in source pixels, scores [K]).

    With ``params.two_row``, a squarish region whose rows dip in the middle is split into
    its two lines (:func:`_split_rows`)."""
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
        points = contour.reshape(-1, 2).astype(np.float32)
        parts = _split_rows(prob, cv2.minAreaRect(points), params) if params.two_row else None
        for part in parts or [points]:
            quad = _unclip(part, params)
            if quad is None:
                continue
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
    quads: np.ndarray, scores: np.ndarray, max_gap: float = 0.9, params: DBParams | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Join text regions that continue one line: plates printed with wide separators
    (``47-TGK-8``, ``AB 123 CD``) come out of the detector as several boxes.

    Two regions merge when their heights agree within 1.6x, they overlap vertically by at
    least 60% of the smaller height, and the horizontal gap is below ``max_gap`` heights
    (measured along the regions' own tilt). With ``params.two_row``, two regions that
    are the stacked rows of one plate (:func:`stacked_pairs`' rule) never merge.
    The merged region is the minimum-area rectangle around both (tilt preserved).
    """
    items = [(q, float(s)) for q, s in zip(quads, scores, strict=True)]
    merged = True
    while merged and len(items) > 1:
        merged = False
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b = _line_frame(np.stack([items[i][0], items[j][0]]))
                if params is not None and params.two_row:
                    top, bottom = (a, b) if a[1] + a[3] <= b[1] + b[3] else (b, a)
                    if _stacked(top, bottom, params) is not None:
                        continue
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


@dataclass(frozen=True)
class Proposals:
    """Plate candidates of one image, best first.

    ``quads`` [K, 4, 2] is each candidate's region (both lines of a two-row plate),
    ``scores`` [K] its detector score, ``lines`` [K, 2, 4, 2] its text lines in reading
    order (top line first) and ``rows`` [K] how many of them are real (1 or 2; a one-line
    candidate repeats its quad).
    """

    quads: np.ndarray
    scores: np.ndarray
    lines: np.ndarray
    rows: np.ndarray

    @classmethod
    def single(cls, quads: np.ndarray, scores: np.ndarray) -> Proposals:
        """One-line candidates (e.g. from a plate detector's boxes)."""
        quads = np.asarray(quads, np.float32).reshape(-1, 4, 2)
        return cls(
            quads, np.asarray(scores, np.float32), np.repeat(quads[:, None], 2, axis=1),
            np.ones(len(quads), np.int64),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.quads)

    def line_quads(self) -> list[np.ndarray]:
        """Per candidate its line quads [rows, 4, 2], top line first."""
        return [self.lines[k, : int(self.rows[k])] for k in range(len(self))]

    def take(self, index: np.ndarray | list[int]) -> Proposals:
        idx = np.asarray(index, np.int64)
        return Proposals(self.quads[idx], self.scores[idx], self.lines[idx], self.rows[idx])

    def first(self, n: int) -> Proposals:
        return self.take(list(range(min(n, len(self)))))

    def shifted(self, dx: float, dy: float) -> Proposals:
        """The same candidates found in a crop whose top-left corner is at (dx, dy)."""
        d = np.array([dx, dy], np.float32)
        return Proposals(self.quads + d, self.scores, self.lines + d, self.rows)

    def rescored(self, score: float) -> Proposals:
        """The same candidates, each scored ``score`` (e.g. their plate box's score)."""
        return Proposals(self.quads, np.full(len(self), score, np.float32), self.lines, self.rows)

    @classmethod
    def concat(cls, parts: Sequence[Proposals]) -> Proposals:
        if not parts:
            return cls.single(np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32))
        return cls(
            np.concatenate([p.quads for p in parts]), np.concatenate([p.scores for p in parts]),
            np.concatenate([p.lines for p in parts]), np.concatenate([p.rows for p in parts]),
        )  # fmt: skip


def _line_rotation(quads: np.ndarray) -> np.ndarray:
    """2x2 rotation that levels the most elongated quad (a short line's long side may be
    its height, so its own angle is not trusted; none is elongated: no rotation)."""
    aspects = [long / max(short, 1e-6) for long, short in map(quad_size, quads)]
    if max(aspects) < 1.5:  # no side is clearly the baseline: keep the image axes
        return np.eye(2, dtype=np.float32)
    q = quads[int(np.argmax(aspects))]
    v = max((q[1] - q[0], q[2] - q[1]), key=lambda d: float(np.hypot(*d)))
    a = (float(np.arctan2(v[1], v[0])) + np.pi / 2) % np.pi - np.pi / 2  # unoriented side
    return np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]], np.float32)  # by -a


def _line_frame(quads: np.ndarray) -> np.ndarray:
    """Boxes [K, 4] (x1, y1, x2, y2) of quads in a frame rotated to their lines' tilt, so
    a rolled plate's lines are compared along its own axes."""
    rot = _line_rotation(quads)
    return quad_to_box((quads.reshape(-1, 2).astype(np.float32) @ rot.T).reshape(-1, 4, 2))


def split_rows(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """The two lines of a stacked pair as quads [2, 4, 2] that do not reach into each
    other: unclipped lines overlap, so both are cut where the overlap is halved (in the
    lines' frame), and each crop shows its own line only."""
    rot = _line_rotation(np.stack([top, bottom]))
    a, b = quad_to_box((np.stack([top, bottom]).reshape(-1, 2) @ rot.T).reshape(-1, 4, 2))
    if a[3] > b[1]:
        cut = (a[3] + b[1]) / 2
        a[3], b[1] = cut, cut
    return (box_quads([a, b]).reshape(-1, 2) @ rot).reshape(2, 4, 2).astype(np.float32)


def _level(quad: np.ndarray) -> np.ndarray:
    """2x2 rotation that levels the side of ``quad`` nearest the horizontal."""
    sides = [quad[1] - quad[0], quad[2] - quad[1]]
    u = min(sides, key=lambda d: abs(float(d[1])) / max(float(np.hypot(*d)), 1e-6))
    a = (float(np.arctan2(u[1], u[0])) + np.pi / 2) % np.pi - np.pi / 2
    return np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]], np.float32)


def halves(quad: np.ndarray, params: DBParams) -> np.ndarray | None:
    """A squarish text block (width / height within ``params.halves_aspect``, each half at
    least ``min_height`` tall) as two rows [2, 4, 2]: its top and bottom halves, in its own
    frame. None for other shapes, or when ``halves_aspect`` is None."""
    if params.halves_aspect is None:
        return None
    rot = _level(quad)
    x1, y1, x2, y2 = quad_to_box((quad.astype(np.float32) @ rot.T)[None])[0]
    lo, hi = params.halves_aspect
    if (y2 - y1) / 2 < params.min_height or not lo <= (x2 - x1) / (y2 - y1) <= hi:
        return None
    mid = (y1 + y2) / 2
    rects = box_quads([[x1, y1, x2, mid], [x1, mid, x2, y2]])
    return (rects.reshape(-1, 2) @ rot).reshape(2, 4, 2)


def _stacked(a: np.ndarray, b: np.ndarray, params: DBParams) -> float | None:
    """Centre offset (in mean line heights) when line box ``a`` sits on top of line box
    ``b`` as the two rows of one plate (boxes in the lines' frame), else None."""
    ha, hb = a[3] - a[1], b[3] - b[1]
    wa, wb = a[2] - a[0], b[2] - b[0]
    if min(ha, hb) < params.min_height or max(ha, hb) > params.row_height_ratio * min(ha, hb):
        return None
    offset = float(((b[1] + b[3]) - (a[1] + a[3])) / (ha + hb))  # centre distance / mean h
    if not params.row_min_offset <= offset <= params.row_max_offset:
        return None
    if min(a[2], b[2]) - max(a[0], b[0]) < params.row_min_overlap * wa:
        return None
    if not params.row_min_top_width * wb <= wa <= params.row_max_top_width * wb:
        return None
    if max(a[2], b[2]) - min(a[0], b[0]) > params.row_max_aspect * (b[3] - a[1]):
        return None
    return offset


def stacked_pairs(quads: np.ndarray, params: DBParams) -> list[tuple[int, int]]:
    """``(top, bottom)`` indices of text lines that form one two-row plate.

    In the lines' own frame (tilt removed), two lines pair when their heights agree
    within ``row_height_ratio``, the bottom one's centre lies ``row_min_offset`` to
    ``row_max_offset`` mean heights below the top one's (not fragments of one line, not
    separate texts), they overlap horizontally by at least ``row_min_overlap`` of the top
    line's width, the top line is not much wider than the bottom one (``row_max_top_width``)
    nor a sliver of it (``row_min_top_width``), and the pair is no wider than
    ``row_max_aspect`` times its height. Each line is the top of at most one pair and the
    bottom of at most one (the closest partner wins).
    """
    found: list[tuple[float, int, int]] = []
    for i in range(len(quads)):
        for j in range(len(quads)):
            if i != j:
                a, b = _line_frame(quads[[i, j]])
                offset = _stacked(a, b, params)
                if offset is not None:
                    found.append((offset, i, j))
    pairs: list[tuple[int, int]] = []
    tops: set[int] = set()
    bottoms: set[int] = set()
    for _, i, j in sorted(found):
        if i in tops or j in bottoms:
            continue
        pairs.append((i, j))
        tops.add(i)
        bottoms.add(j)
    return pairs


def plate_candidates(
    quads: np.ndarray, scores: np.ndarray, params: DBParams, image_hw: tuple[int, int], limit: int
) -> Proposals:
    """Plate candidates among text regions, best first, at most ``limit``: plate-shaped
    single lines (aspect, height) and, with ``params.two_row``, stacked line pairs
    (:func:`stacked_pairs`; kept next to their lines, so whichever reads as a plate wins)
    and, when ``params.halves_aspect`` is set, squarish blocks read as two rows
    (:func:`halves`, ranked at half weight).
    """
    h, w = image_hw
    if len(quads) > 1:
        quads, scores = merge_line_fragments(quads, scores, params=params)
    cand_quads: list[np.ndarray] = []
    cand_scores: list[float] = []
    cand_lines: list[np.ndarray] = []
    for quad, score in zip(quads, scores, strict=True):
        long, short = quad_size(quad)
        if short < params.min_height or not params.min_aspect <= long / short <= params.max_aspect:
            continue
        cand_quads.append(quad)
        cand_scores.append(float(score))
        cand_lines.append(np.stack([quad, quad]))
    rows = [1] * len(cand_quads)
    rank = [1.0] * len(cand_quads)
    if params.two_row and params.halves_aspect is not None:
        for quad, score in zip(quads, scores, strict=True):
            rowz = halves(quad, params)
            if rowz is not None:  # ranked below the readings of what the detector saw
                cand_quads.append(quad)
                cand_scores.append(float(score))
                cand_lines.append(rowz)
                rows.append(2)
                rank.append(0.5)
    if params.two_row and len(quads) > 1:
        for i, j in stacked_pairs(quads, params):
            if max(quad_size(q)[0] / quad_size(q)[1] for q in quads[[i, j]]) > params.max_aspect:
                continue
            pts = np.concatenate([quads[i], quads[j]]).astype(np.float32)
            cand_quads.append(np.asarray(cv2.boxPoints(cv2.minAreaRect(pts)), np.float32))
            cand_scores.append(float(min(scores[i], scores[j])))
            cand_lines.append(split_rows(quads[i], quads[j]))
            rows.append(2)
            rank.append(1.0)
    if not cand_quads:
        return Proposals.single(np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32))
    kq, ks = np.stack(cand_quads).astype(np.float32), np.asarray(cand_scores, np.float32)
    kl = np.stack(cand_lines).astype(np.float32)
    for arr in (kq, kl):
        arr[..., 0] = arr[..., 0].clip(0, w - 1)
        arr[..., 1] = arr[..., 1].clip(0, h - 1)
    # rank by detector confidence weighted by size: plates are the larger, crisper text
    area = np.array([np.prod(quad_size(q)) for q in kq])
    order = np.argsort(-(ks * np.sqrt(area) * np.asarray(rank)), kind="stable")[:limit]
    return Proposals(kq, ks, kl, np.asarray(rows, np.int64)).take(order)


def quad_to_box(quads: np.ndarray) -> np.ndarray:
    """[K, 4, 2] quads -> [K, 4] axis-aligned xyxy boxes."""
    if len(quads) == 0:
        return np.zeros((0, 4), np.float32)
    return np.concatenate([quads.min(axis=1), quads.max(axis=1)], axis=1).astype(np.float32)


def box_quads(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """xyxy boxes [K, 4] -> axis-aligned quads [K, 4, 2] (clockwise from top-left); the
    inverse of :func:`quad_to_box`."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)
