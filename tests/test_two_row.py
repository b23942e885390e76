"""Two-row plates (motorcycles, square rear plates): pairing stacked text lines, splitting
fused rows, the side-by-side recogniser crop, choosing the joined read, and rendered
two-row plates read exactly in-process and through the real `alpr` ensemble."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TritonProcess
from synth import jpeg, place_plate

from alpr_common import demo_render as R
from edge_client.triton_client import AlprClient
from ensemble.contracts import REC_HEIGHT, REC_WIDTH, Box, PlateRead
from ensemble.engines import PlateProposer, PlateReader, crops_for
from ensemble.plates import best_plate, superseded
from ensemble.preprocess import LINE_GAP, rec_crop_lines
from ensemble.text_det import (
    DBParams,
    db_boxes,
    halves,
    merge_line_fragments,
    plate_candidates,
    quad_to_box,
    stacked_pairs,
)

P = DBParams()
HALVES = DBParams(halves_aspect=(0.6, 2.0))

Rect = tuple[float, float, float, float]  # x, y, w, h (an unclipped text line)


def quad(rect: Rect, roll_deg: float = 0.0, centre: tuple[float, float] = (300, 200)) -> np.ndarray:
    x, y, w, h = rect
    pts = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)
    a = np.deg2rad(roll_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    return ((pts - centre) @ rot.T + centre).astype(np.float32)


def quads(rects: list[Rect], roll_deg: float = 0.0) -> np.ndarray:
    return np.stack([quad(r, roll_deg) for r in rects])


# --- pairing rules ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rects", "roll", "pairs"),
    [
        ([(200, 150, 120, 50), (195, 180, 130, 50)], 0, [(0, 1)]),  # stacked, offset 0.6 h
        ([(220, 150, 80, 50), (190, 182, 140, 50)], 0, [(0, 1)]),  # shorter top line
        ([(190, 182, 140, 50), (220, 150, 80, 50)], 0, [(1, 0)]),  # listed bottom first
        ([(200, 150, 120, 44), (195, 180, 130, 56)], 0, [(0, 1)]),  # heights 1.3x apart
        ([(200, 150, 120, 50), (195, 180, 130, 50)], 8, [(0, 1)]),  # rolled plate
        ([(200, 150, 120, 50), (195, 180, 130, 50)], -8, [(0, 1)]),
        ([(100, 150, 120, 50), (250, 150, 120, 50)], 0, []),  # side by side: one line
        ([(100, 150, 120, 50), (200, 162, 120, 50)], 0, []),  # fragments, slightly offset
        ([(200, 100, 120, 50), (195, 185, 130, 50)], 0, []),  # far apart (offset 1.7 h)
        ([(200, 150, 120, 50), (195, 210, 130, 50)], 0, []),  # a gap of a row: offset 1.2
        ([(200, 150, 120, 30), (195, 170, 130, 70)], 0, []),  # heights 2.3x apart
        ([(160, 150, 200, 50), (215, 180, 90, 50)], 0, []),  # top 2.2x wider than bottom
        ([(240, 150, 20, 50), (195, 180, 130, 50)], 0, []),  # a sliver on top
        ([(300, 150, 120, 50), (195, 180, 130, 50)], 0, []),  # top line mostly beside
        ([(200, 150, 120, 4), (195, 156, 130, 5)], 0, []),  # too small to be a row
        ([(100, 100, 400, 50), (100, 130, 400, 50)], 0, []),  # too wide for a plate (8:1)
    ],
)  # fmt: skip
def test_stacked_pairs(rects: list[Rect], roll: float, pairs: list[tuple[int, int]]) -> None:
    assert stacked_pairs(quads(rects, roll), P) == pairs


def test_each_line_pairs_once_closest_first() -> None:
    rects = [(200, 120, 120, 50), (200, 152, 120, 50), (200, 184, 120, 50)]  # three rows
    assert stacked_pairs(quads(rects), P) == [(0, 1), (1, 2)]


@pytest.mark.parametrize(
    ("rects", "two_row", "merged"),
    [
        ([(100, 150, 120, 50), (250, 150, 120, 50)], True, 1),  # fragments of one line
        ([(200, 150, 120, 50), (195, 170, 130, 50)], True, 2),  # stacked rows stay apart
        ([(200, 150, 120, 50), (195, 170, 130, 50)], False, 1),  # (the old behaviour)
    ],
)  # fmt: skip
def test_merge_line_fragments_keeps_rows_apart(
    rects: list[Rect], two_row: bool, merged: int
) -> None:
    q = quads(rects)
    params = DBParams(two_row=two_row)
    out, _ = merge_line_fragments(q, np.ones(len(q), np.float32), params=params)
    assert len(out) == merged


@pytest.mark.parametrize(
    ("rect", "rows"),
    [
        ((100, 100, 100, 80), True),  # squarish block: also read as two rows
        ((100, 100, 60, 90), True),  # taller than wide
        ((100, 100, 300, 60), False),  # a line
        ((100, 100, 14, 14), False),  # halves under min_height
    ],
)
def test_halves(rect: Rect, rows: bool) -> None:
    assert halves(quad(rect), P) is None  # opt-in
    out = halves(quad(rect), HALVES)
    assert (out is not None) is rows
    if out is not None:
        top, bottom = quad_to_box(out)
        _, y, _, h = rect
        assert top[1] == pytest.approx(y, abs=1e-3) and bottom[3] == pytest.approx(y + h, abs=1e-3)
        assert top[3] == pytest.approx(bottom[1], abs=1e-3) == pytest.approx(y + h / 2, abs=1e-3)


# --- probability maps: candidates, fused rows -------------------------------------------
def prob_map(rects: list[tuple[int, int, int, int]], value: float = 0.9) -> np.ndarray:
    prob = np.zeros((320, 480), np.float32)
    for x, y, w, h in rects:
        prob[y : y + h, x : x + w] = value
    return prob


def test_plate_candidates_join_stacked_rows() -> None:
    prob = prob_map([(200, 120, 90, 26), (185, 158, 120, 26)])  # two rows, 12 px apart
    q, s = db_boxes(prob, P, 1.0, 1.0)
    assert len(q) == 2
    props = plate_candidates(q, s, P, prob.shape, limit=8)
    assert sorted(props.rows.tolist()) == [1, 1, 2]
    k = int(np.argmax(props.rows))
    top, bottom = quad_to_box(props.line_quads()[k])
    assert top[3] <= bottom[1] + 1e-3  # top row first, rows cut apart
    x1, y1, x2, y2 = quad_to_box(props.quads[k : k + 1])[0]
    assert x1 < 185 and y1 < 120 and x2 > 305 and y2 > 184  # the region holds both rows
    single = plate_candidates(q, s, DBParams(two_row=False), prob.shape, limit=8)
    assert single.rows.tolist() == [1, 1]


@pytest.mark.parametrize(
    ("bridge", "two_row", "regions"),
    [
        (0.35, True, 2),  # rows fused by a weak bridge: split at the valley
        (0.9, True, 1),  # one solid block: no valley
        (0.35, False, 1),
    ],
)
def test_db_splits_fused_rows(bridge: float, two_row: bool, regions: int) -> None:
    prob = prob_map([(200, 120, 90, 30), (190, 162, 110, 30)])
    prob[150:162, 200:290] = bridge
    q, _ = db_boxes(prob, DBParams(two_row=two_row), 1.0, 1.0)
    assert len(q) == regions
    if regions == 2:
        top, bottom = sorted(quad_to_box(q).tolist(), key=lambda b: b[1])
        assert top[1] < 120 < top[3] < bottom[3] and bottom[3] > 192


# --- the recogniser crop -----------------------------------------------------------------
@pytest.mark.parametrize(("line_w", "condensed"), [(100, False), (200, True)])
def test_rec_crop_lines_side_by_side(line_w: int, condensed: bool) -> None:
    image = np.zeros((300, 500, 3), np.uint8)
    image[50:90, 50 : 50 + line_w] = (0, 0, 255)  # top row: red
    image[90:130, 50 : 50 + line_w] = (255, 0, 0)  # bottom row: blue
    lines = np.stack(
        [quad((50, 50, line_w, 40), centre=(0, 0)), quad((50, 90, line_w, 40), centre=(0, 0))]
    )
    crop = rec_crop_lines(image, lines)
    assert crop.shape == (REC_HEIGHT, REC_WIDTH, 3)
    part = round(REC_HEIGHT * line_w / 40)
    total = 2 * part + LINE_GAP
    used = REC_WIDTH if condensed else total
    scale = used / total
    middle = crop[8:-8]  # away from the rows' edges (interpolation)
    assert (middle[:, 2 : int(part * scale) - 2] == (0, 0, 255)).all()  # top row on the left
    assert (middle[:, int((part + LINE_GAP) * scale) + 2 : used - 2] == (255, 0, 0)).all()
    assert condensed or (crop[:, used:] == 128).all()  # padded as rec_crop pads


# --- choosing the read --------------------------------------------------------------------
def read(text: str, box: tuple[float, float, float, float], conf: float = 1.0) -> PlateRead:
    return PlateRead(Box(*box), 0.9, text, conf, (conf,) * len(text))


WHOLE, TOP, BOTTOM = (100, 100, 200, 180), (105, 100, 195, 145), (100, 135, 200, 180)


@pytest.mark.parametrize(
    ("reads", "best"),
    [
        ([read("AB12CDE", WHOLE, 0.94), read("AB12", TOP), read("CDE", BOTTOM)], "AB12CDE"),
        ([read("ABC1D23", WHOLE, 0.9), read("ABC", TOP), read("1D23", BOTTOM)], "ABC1D23"),
        # the joined read is not plate-like: the rows compete as before
        ([read("ABCDEFGHIJKLM1", WHOLE), read("AB12", TOP), read("CDEFGHIJK", BOTTOM)], "AB12"),
        # a longer read of the same line (the plate joined with a badge beside it) covers
        # nearly all of the region's height: not a row, the reads compete as before
        ([read("RK828AGIA", (100, 100, 300, 140), 0.94), read("RK828AG", (101, 104, 240, 136))],
         "RK828AG"),
        # a candidate elsewhere is not a row of the region
        ([read("AB12CDE", WHOLE, 0.8), read("XY99ZZQ", (300, 10, 400, 40))], "XY99ZZQ"),
        ([read("AB12", TOP), read("CDE", BOTTOM)], "AB12"),  # no joined read: as before
    ],
)  # fmt: skip
def test_best_plate_prefers_the_joined_read(reads: list[PlateRead], best: str) -> None:
    got = best_plate(reads)
    assert got is not None and got.text == best


def test_superseded_needs_a_region_that_holds_the_row() -> None:
    same_box = [read("AB12CDE", WHOLE), read("AB12", WHOLE)]  # e.g. a block and its halves
    assert superseded(same_box) == set()


# --- rendered two-row plates ---------------------------------------------------------------
MOTO = {
    "uk_moto": R.PlateStyle("uk_moto", "uk", (229, 178), R.YELLOW, (15, 15, 15),
                            (0.07, 0.1, 0.93, 0.9), (40, 88)),
    "mercosur_moto": R.PlateStyle("mercosur_moto", "br", (200, 170), (245, 245, 245),
                                  (15, 15, 15), (0.08, 0.3, 0.92, 0.92), (40, 88),
                                  band="top:BRASIL"),
    "de_moto": R.PlateStyle("de_moto", "eu", (180, 200), (245, 245, 245), (15, 15, 15),
                            (0.2, 0.1, 0.94, 0.9), (40, 88), band="eu:D"),
}  # fmt: skip
RENDERED = [
    ("uk_moto", "AB12\nCDE", 150, 0.0, 0.0),
    ("uk_moto", "KV65\nBZR", 100, 4.0, 0.06),
    ("mercosur_moto", "RTX\n4E26", 130, -3.0, 0.05),
    ("de_moto", "M AB\n123", 120, 3.0, 0.0),
]


def rendered(style: str, display: str, width: int, roll: float, yaw: float) -> np.ndarray:
    tex = R.render_plate(display, MOTO[style], np.random.default_rng(1), "hershey")
    img, _ = place_plate(tex, width=width, roll_deg=roll, yaw=yaw, blur=0.7, noise=4, seed=2)
    return img


@pytest.fixture(scope="module")
def in_process(weights: Path) -> tuple[PlateProposer, PlateReader]:
    return (
        PlateProposer(weights / "plate_detector/1/ppocr_det.onnx"),
        PlateReader(weights / "plate_ocr/1/ppocr_rec.onnx"),
    )


@pytest.mark.parametrize(("style", "display", "width", "roll", "yaw"), RENDERED)
def test_rendered_two_row_plates_read_in_process(
    in_process: tuple[PlateProposer, PlateReader],
    style: str, display: str, width: int, roll: float, yaw: float,
) -> None:  # fmt: skip
    proposer, reader = in_process
    img = rendered(style, display, width, roll, yaw)
    props = proposer.propose_many([img])[0]
    crops, kept = crops_for(img, props.quads, props.line_quads())
    reads = [
        PlateRead(Box(*map(float, quad_to_box(props.quads[k : k + 1])[0])),
                  float(props.scores[k]), r.text, r.confidence, r.char_confidences)
        for k, r in zip(kept, reader.read(crops), strict=True)
    ]  # fmt: skip
    best = best_plate(reads)
    plate = R.normalise(display)
    assert best is not None and best.text == plate
    assert {r.text for r in reads} >= {plate}  # the rows' own reads are kept too
    assert 2 in props.rows.tolist()


@pytest.mark.server
def test_two_row_plate_reads_exactly_through_alpr(triton: TritonProcess) -> None:
    tex = R.render_plate("AB12\nCDE", MOTO["uk_moto"], np.random.default_rng(1), "hershey")
    img, (x, y, w, h) = place_plate(tex, width=140, roll_deg=2.0, yaw=0.04, blur=0.7, noise=4)
    client = AlprClient(triton.grpc_url)
    try:
        reads = client.read_plates([jpeg(img)])[0]
    finally:
        client.close()
    best = best_plate(reads)
    assert best is not None and best.text == "AB12CDE"
    assert best.box.iou(Box(x, y, x + w, y + h)) > 0.5
    assert len(best.char_confidences) == 7 and best.confidence >= 0.9
