"""DB post-processing and plate-shape filtering on synthetic probability maps."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.contracts import InputError
from ensemble.text_det import DBParams, db_boxes, det_resize, plate_candidates, quad_to_box

P = DBParams()


def prob_map(
    rects: list[tuple[int, int, int, int]], shape: tuple[int, int] = (320, 480)
) -> np.ndarray:
    prob = np.zeros(shape, np.float32)
    for x, y, w, h in rects:
        prob[y : y + h, x : x + w] = 0.9
    return prob


def test_db_finds_regions_and_unclips() -> None:
    quads, scores = db_boxes(prob_map([(100, 100, 120, 30)]), P, 1.0, 1.0)
    assert len(quads) == 1 and scores[0] > 0.8
    x1, y1, x2, y2 = quad_to_box(quads)[0]
    assert x1 < 100 and y1 < 100 and x2 > 220 and y2 > 130  # expanded ("unclipped")


def test_db_maps_back_to_source_scale() -> None:
    quads, _ = db_boxes(prob_map([(100, 100, 120, 30)]), P, 0.5, 0.5)
    x1, _, x2, _ = quad_to_box(quads)[0]
    assert x1 < 200 < 440 < x2


@pytest.mark.parametrize(
    ("rect", "params", "rows"),
    [
        ((100, 100, 120, 30), P, [1]),  # plate-like 4:1
        ((100, 100, 30, 30), P, []),  # square (logo)
        # ... or a small two-row plate: read as two rows only, when halves are asked for
        ((100, 100, 30, 30), DBParams(halves_aspect=(0.6, 2.0)), [2]),
        ((10, 10, 460, 12), P, []),  # very long thin line (14:1 after unclip... too flat)
        ((100, 100, 16, 3), P, []),  # tiny
    ],
)
def test_plate_candidates_geometry(
    rect: tuple[int, int, int, int], params: DBParams, rows: list[int]
) -> None:
    quads, scores = db_boxes(prob_map([rect]), params, 1.0, 1.0)
    props = plate_candidates(quads, scores, params, (320, 480), limit=8)
    assert props.rows.tolist() == rows
    assert props.quads.shape == (len(rows), 4, 2) and props.lines.shape == (len(rows), 2, 4, 2)


def test_candidates_limited_and_ranked_by_size() -> None:
    rects = [(20, 20 + 35 * i, 60 + 10 * i, 20) for i in range(8)]
    quads, scores = db_boxes(prob_map(rects), P, 1.0, 1.0)
    cq = plate_candidates(quads, scores, P, (320, 480), limit=3).quads
    widths = [q[:, 0].max() - q[:, 0].min() for q in cq]
    assert len(cq) == 3 and widths == sorted(widths, reverse=True)


@pytest.mark.parametrize(("h", "w"), [(350, 450), (1536, 2048), (100, 120), (40, 600)])
def test_det_resize_multiple_of_32(h: int, w: int) -> None:
    resized, sy, sx = det_resize(np.zeros((h, w, 3), np.uint8), P)
    assert resized.shape[0] % 32 == 0 and resized.shape[1] % 32 == 0
    assert max(resized.shape[:2]) <= 2 * P.limit_side
    assert sy > 0 and sx > 0


def test_db_rejects_bad_map() -> None:
    with pytest.raises(InputError, match="2-D"):
        db_boxes(np.zeros((1, 2, 3), np.float32), P, 1.0, 1.0)
