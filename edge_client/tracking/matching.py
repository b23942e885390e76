"""Box overlap and optimal one-to-one assignment for the tracker's association stages.

Cost is ``1 - IoU`` and pairs below ``min_iou`` are never matched. The threshold trades
identity switches against fragmentation: raising it (e.g. 0.5) refuses loose matches, so
fast or jittery objects split into several tracks; lowering it (e.g. 0.1) keeps tracks
through large frame-to-frame motion (low frame rate, ``process_every`` > 1) but lets a
track jump to a neighbouring object in dense traffic.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

IntArray = NDArray[np.intp]


def iou_matrix(a: NDArray[np.floating], b: NDArray[np.floating]) -> NDArray[np.float64]:
    """Pairwise IoU of [N, 4] and [M, 4] xyxy boxes -> [N, M]; empty or degenerate boxes
    overlap nothing (IoU 0)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def linear_assignment(
    cost: NDArray[np.floating], max_cost: float
) -> tuple[IntArray, IntArray, IntArray]:
    """Minimum-cost one-to-one assignment (Hungarian, scipy) keeping pairs with
    ``cost <= max_cost``.

    Returns ``(matches [K, 2] of (row, col), unmatched rows, unmatched cols)``, each sorted.
    Like ``lap.lapjv(cost, cost_limit=max_cost)`` (what ByteTrack uses): leaving a row and a
    column unmatched costs ``max_cost``, so a strong pair is never broken up just to make
    two weak ones, and a pair over the threshold never forces a good pair apart. Solved as
    minimising ``sum(cost - max_cost)`` over allowed pairs (disallowed pairs score 0).
    """
    cost = np.asarray(cost, np.float64)
    rows_n, cols_n = cost.shape
    if rows_n == 0 or cols_n == 0:
        return (
            np.empty((0, 2), np.intp),
            np.arange(rows_n, dtype=np.intp),
            np.arange(cols_n, dtype=np.intp),
        )
    allowed = cost <= max_cost
    r, c = linear_sum_assignment(np.where(allowed, cost - max_cost, 0.0))
    keep = allowed[r, c]
    matches = np.stack([r[keep], c[keep]], axis=1).astype(np.intp)
    unmatched_rows = np.setdiff1d(np.arange(rows_n), matches[:, 0]).astype(np.intp)
    unmatched_cols = np.setdiff1d(np.arange(cols_n), matches[:, 1]).astype(np.intp)
    return matches, unmatched_rows, unmatched_cols


def match_iou(
    tracks: NDArray[np.floating], detections: NDArray[np.floating], min_iou: float
) -> tuple[IntArray, IntArray, IntArray]:
    """Assign [N, 4] track boxes to [M, 4] detection boxes maximising total IoU, keeping
    pairs with IoU >= ``min_iou``. Same return shape as :func:`linear_assignment`."""
    return linear_assignment(1.0 - iou_matrix(tracks, detections), 1.0 - min_iou)
