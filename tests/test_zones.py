"""Gate zones: point-in-polygon, the detector crop rectangle, and per-track zone state
(dwell, entry/exit from line crossings or heading) on synthetic tracks."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from edge_client.config import Zone
from edge_client.contracts import Box, Direction
from edge_client.zones.tracker import EntrySide, ZoneGeometry, ZoneTracker, crosses

W, H = 1000, 1000  # frame size: fractions * 1000 = pixels, so paths read naturally
BOX_H = 100.0  # synthetic vehicle box height (heading needs >= 50 px of net motion)

SQUARE = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]
H_LINE = ((0.1, 0.5), (0.9, 0.5))  # horizontal counting line at y = 500 px
V_LINE = ((0.5, 0.1), (0.5, 0.9))  # vertical counting line at x = 500 px
SHORT_H_LINE = ((0.1, 0.5), (0.4, 0.5))  # horizontal, only x = 100..400 px


def box(cx: float, cy: float, h: float = BOX_H) -> Box:
    """A vehicle box (pixels) centred at (cx, cy)."""
    return (cx - 80.0, cy - h / 2, cx + 80.0, cy + h / 2)


def tracker(
    line: tuple[tuple[float, float], tuple[float, float]] | None,
    entry: EntrySide = "down",
    polygon: Sequence[tuple[float, float]] = SQUARE,
    **kw: int,
) -> ZoneTracker:
    zone = Zone(polygon=list(polygon), line=line, entry=entry)
    return ZoneTracker(ZoneGeometry(zone, W, H), entry, **kw)


def drive(zt: ZoneTracker, path: Sequence[tuple[float, float]], tid: int = 1, dt: float = 0.1,
          t0: float = 0.0) -> float:  # fmt: skip
    """Feed a path of centres as one frame each; returns the last frame's time."""
    t = t0
    for i, (x, y) in enumerate(path):
        t = t0 + i * dt
        zt.update(tid, box(x, y), t)
        zt.frame_done({tid}, t)
    return t


def steps(a: tuple[float, float], b: tuple[float, float], n: int) -> list[tuple[float, float]]:
    """n + 1 evenly spaced centres from a to b inclusive."""
    return [(a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n) for i in range(n + 1)]


# --- direction -------------------------------------------------------------------------
DOWN = steps((500, 300), (500, 700), 8)
UP = list(reversed(DOWN))
LEFT = steps((700, 500), (300, 500), 8)
RIGHT = list(reversed(LEFT))


@pytest.mark.parametrize(
    ("line", "entry", "path", "direction", "crossed"),
    [
        pytest.param(H_LINE, "down", DOWN, Direction.ENTRY, True, id="down-across-h-line-entry"),
        pytest.param(H_LINE, "down", UP, Direction.EXIT, True, id="up-across-h-line-exit"),
        pytest.param(H_LINE, "up", UP, Direction.ENTRY, True, id="entry-up-moving-up"),
        pytest.param(V_LINE, "left", LEFT, Direction.ENTRY, True, id="v-line-entry-left"),
        pytest.param(V_LINE, "left", RIGHT, Direction.EXIT, True, id="v-line-left-moving-right"),
        pytest.param(V_LINE, "right", RIGHT, Direction.ENTRY, True, id="v-line-entry-right"),
        pytest.param(V_LINE, "right", LEFT, Direction.EXIT, True, id="v-line-right-moving-left"),
        pytest.param(
            H_LINE, "down", DOWN + UP[1:7], Direction.EXIT, True, id="crosses-then-backs-out"
        ),
        pytest.param(
            H_LINE,
            "down",
            [(500, 480), (500, 520), (500, 490), (500, 510), (500, 495), (500, 505)],
            Direction.ENTRY,
            True,
            id="jitter-last-crossing-down-wins",
        ),
        pytest.param(
            H_LINE,
            "down",
            [(500, 480), (500, 520), (500, 490), (500, 510), (500, 495)],
            Direction.EXIT,
            True,
            id="jitter-last-crossing-up-wins",
        ),
        pytest.param(
            SHORT_H_LINE,
            "down",
            steps((700, 300), (700, 700), 8),
            Direction.ENTRY,
            False,
            id="beyond-segment-extent-not-a-crossing-heading-used",
        ),
        pytest.param(
            SHORT_H_LINE,
            "down",
            [(300, 480), (300, 520), (700, 520), (700, 480)],
            Direction.ENTRY,
            True,
            id="crossing-inside-extent-counts-outside-does-not",
        ),
        pytest.param(None, "down", DOWN, Direction.ENTRY, False, id="no-line-heading-down-entry"),
        pytest.param(None, "down", UP, Direction.EXIT, False, id="no-line-heading-up-exit"),
        pytest.param(None, "left", LEFT, Direction.ENTRY, False, id="no-line-heading-left-entry"),
        pytest.param(
            None, "down", steps((500, 500), (500, 540), 4), None, False, id="no-line-small-motion"
        ),
        pytest.param(
            None, "down", steps((300, 500), (700, 520), 8), None, False, id="sideways-not-heading"
        ),
    ],
)
def test_direction(
    line: tuple[tuple[float, float], tuple[float, float]] | None,
    entry: EntrySide,
    path: list[tuple[float, float]],
    direction: Direction | None,
    crossed: bool,
) -> None:
    zt = tracker(line, entry)
    t = drive(zt, path)
    st = zt.state(1, t)
    assert st is not None
    assert (st.direction, st.crossed) == (direction, crossed)


@pytest.mark.parametrize(
    ("p", "q", "expected"),
    [
        pytest.param((250, 400), (250, 600), True, id="through-middle"),
        pytest.param((100, 400), (100, 600), True, id="through-endpoint"),
        pytest.param((450, 400), (450, 600), False, id="beyond-end"),
        pytest.param((250, 400), (250, 500), False, id="ends-on-the-line"),
        pytest.param((250, 500), (250, 600), False, id="starts-on-the-line"),
        pytest.param((250, 600), (250, 400), True, id="through-middle-upwards"),
        pytest.param((250, 400), (250, 450), False, id="stays-above"),
        pytest.param((150, 500), (350, 500), False, id="along-the-line"),
    ],
)
def test_crosses_segment(p: tuple[float, float], q: tuple[float, float], expected: bool) -> None:
    assert crosses(p, q, (100.0, 500.0), (400.0, 500.0)) is expected


def test_touch_and_pass_counts_one_crossing() -> None:
    """A centre landing exactly on the line then moving on is one crossing, not two."""
    zt = tracker(H_LINE, "down")
    t = drive(zt, [(500, 450), (500, 500), (500, 550)])
    st = zt.state(1, t)
    assert st is not None and (st.direction, st.crossed) == (Direction.ENTRY, True)
    zt2 = tracker(H_LINE, "down")
    t = drive(zt2, [(500, 450), (500, 500), (500, 470)])
    st2 = zt2.state(1, t)
    assert st2 is not None and st2.crossed is False and st2.direction is None


def test_stopped_before_line_has_dwell_but_no_direction_until_it_moves() -> None:
    zt = tracker(H_LINE, "down")
    # Enters at y=300, creeps 30 px (< half a 100 px box) and stands at the barrier.
    t = drive(zt, steps((500, 300), (500, 330), 3) + [(500, 330)] * 30)
    st = zt.state(1, t)
    assert st is not None
    assert st.in_zone and st.ever_in_zone and st.entered_at == 0.0
    assert st.direction is None and not st.crossed
    assert st.dwell_s == pytest.approx(t)
    later = zt.state(1, t + 5.0)  # still standing there 5 s later: dwell keeps growing
    assert later is not None and later.dwell_s == pytest.approx(t + 5.0)
    # Moves 40 px more (70 px net, >= 50 px): heading says entry, no crossing yet.
    t = drive(zt, [(500, 350), (500, 370)], t0=t + 0.1)
    st = zt.state(1, t)
    assert st is not None and (st.direction, st.crossed) == (Direction.ENTRY, False)
    # Crosses the line: the crossing now decides.
    t = drive(zt, [(500, 450), (500, 550)], t0=t + 0.1)
    st = zt.state(1, t)
    assert st is not None and (st.direction, st.crossed) == (Direction.ENTRY, True)


def test_dwell_sums_separate_visits() -> None:
    zt = tracker(None)
    inside, outside = (500.0, 500.0), (500.0, 950.0)  # zone is 100..900 px
    for t in (0.0, 1.0, 2.0):
        zt.update(1, box(*inside), t)
    for t in (3.0, 4.0):
        zt.update(1, box(*outside), t)
    st = zt.state(1, 4.0)
    assert st is not None and not st.in_zone and st.dwell_s == pytest.approx(2.0)
    for t in (5.0, 6.0, 7.0):
        zt.update(1, box(*inside), t)
    st = zt.state(1, 7.0)
    assert st is not None and st.in_zone and st.entered_at == 0.0
    assert st.dwell_s == pytest.approx(4.0)  # 0..2 plus 5..7
    st = zt.state(1, 8.5)  # current visit runs up to `now`
    assert st is not None and st.dwell_s == pytest.approx(5.5)
    assert zt.state(1) == zt.state(1, 7.0)  # default `now` is the last sighting


def test_absent_track_ends_visit_at_last_sighting() -> None:
    zt = tracker(None)
    zt.update(1, box(500, 500), 0.0)
    zt.update(2, box(500, 500), 0.0)
    zt.frame_done({1, 2}, 0.0)
    zt.update(1, box(500, 500), 3.0)
    zt.frame_done({1}, 3.0)  # track 2 was not detected this frame
    st2 = zt.state(2, 10.0)
    assert st2 is not None and not st2.in_zone and st2.dwell_s == pytest.approx(0.0)
    st1 = zt.state(1, 10.0)
    assert st1 is not None and st1.in_zone and st1.dwell_s == pytest.approx(10.0)
    zt.update(2, box(500, 500), 4.0)  # reappears: a new visit
    zt.update(2, box(500, 500), 6.0)
    st2 = zt.state(2, 6.0)
    assert st2 is not None and st2.in_zone and st2.dwell_s == pytest.approx(2.0)


def test_outside_track_never_in_zone() -> None:
    zt = tracker(H_LINE)
    t = drive(zt, [(50, 300), (50, 400), (50, 600)])  # left of the zone (x < 100)
    st = zt.state(1, t)
    assert st is not None
    assert not st.in_zone and not st.ever_in_zone and st.entered_at is None
    assert st.dwell_s == 0.0
    assert zt.state(99, t) is None


# --- polygon ---------------------------------------------------------------------------
# An L: the vertical arm x 0.1..0.4 (y 0.1..0.9) plus the foot x 0.4..0.9 (y 0.6..0.9).
L_SHAPE = [(0.1, 0.1), (0.4, 0.1), (0.4, 0.6), (0.9, 0.6), (0.9, 0.9), (0.1, 0.9)]


@pytest.mark.parametrize(
    ("centre", "inside"),
    [
        pytest.param((250, 300), True, id="vertical-arm"),
        pytest.param((700, 750), True, id="foot"),
        pytest.param((250, 750), True, id="corner-of-the-L"),
        pytest.param((700, 300), False, id="notch-inside-bounding-box"),
        pytest.param((410, 590), False, id="just-inside-the-notch-corner"),
        pytest.param((390, 610), True, id="just-inside-the-inner-corner"),
        pytest.param((400, 300), True, id="on-inner-vertical-edge"),
        pytest.param((650, 600), True, id="on-inner-horizontal-edge"),
        pytest.param((400, 600), True, id="on-reflex-vertex"),
        pytest.param((100, 100), True, id="on-outer-vertex"),
        pytest.param((950, 750), False, id="right-of-foot"),
        pytest.param((50, 500), False, id="left-of-arm"),
    ],
)
def test_concave_polygon_contains(centre: tuple[float, float], inside: bool) -> None:
    geo = ZoneGeometry(Zone(polygon=L_SHAPE), W, H)
    assert geo.contains(box(*centre)) is inside


def test_contains_uses_box_centre_not_overlap() -> None:
    geo = ZoneGeometry(Zone(polygon=SQUARE), W, H)
    # A big box overlapping most of the zone whose centre is outside: not in the zone.
    assert not geo.contains((0.0, 0.0, 180.0, 1000.0))  # centre x = 90 < 100
    assert geo.contains((0.0, 0.0, 220.0, 1000.0))  # centre x = 110


@pytest.mark.parametrize(
    ("polygon", "size", "rect"),
    [
        pytest.param(
            [(0.2, 0.1), (0.6, 0.1), (0.6, 0.5), (0.2, 0.5)], (1000, 500), (180, 40, 620, 260),
            id="padded-5pct-each-side",
        ),
        pytest.param(
            [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)], (1000, 500), (0, 237, 525, 500),
            id="clamped-left-bottom",
        ),
        pytest.param(
            [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)], (1920, 1080), (0, 0, 1920, 1080),
            id="whole-frame",
        ),
        pytest.param(
            [(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)], (640, 480), (0, 0, 640, 480),
            id="diamond-bounds-clamped",
        ),
        pytest.param(
            [(0.9, 0.05), (1.0, 0.05), (0.95, 0.3)], (1280, 720), (1145, 27, 1280, 225),
            id="triangle-near-right-edge",
        ),
    ],
)  # fmt: skip
def test_detect_rect(
    polygon: list[tuple[float, float]], size: tuple[int, int], rect: tuple[int, int, int, int]
) -> None:
    geo = ZoneGeometry(Zone(polygon=polygon), *size)
    got = geo.detect_rect()
    assert got == rect
    assert all(isinstance(v, int) for v in got)
    x1, y1, x2, y2 = got
    assert 0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1]


# --- occupancy and bounds ---------------------------------------------------------------
def test_occupied_follows_tracks_in_zone() -> None:
    zt = tracker(H_LINE)
    assert not zt.occupied()
    zt.update(1, box(50, 500), 0.0)  # outside (x < 100)
    zt.frame_done({1}, 0.0)
    assert not zt.occupied()
    zt.update(1, box(300, 500), 0.1)
    zt.update(2, box(50, 500), 0.1)
    zt.frame_done({1, 2}, 0.1)
    assert zt.occupied()
    zt.update(2, box(50, 500), 0.2)
    zt.frame_done({2}, 0.2)  # track 1 not seen this frame
    assert not zt.occupied()
    zt.update(1, box(300, 600), 0.3)
    zt.frame_done({1}, 0.3)
    assert zt.occupied()
    zt.update(1, box(950, 600), 0.4)  # drove out of the zone
    zt.frame_done({1}, 0.4)
    assert not zt.occupied()
    zt.update(1, box(300, 600), 0.5)
    zt.forget(1)
    assert not zt.occupied() and zt.state(1, 0.5) is None


def test_track_cap_evicts_least_recently_updated() -> None:
    zt = tracker(None, max_tracks=3)
    for tid in range(3):
        zt.update(tid, box(500, 500), float(tid))
    zt.update(0, box(500, 510), 3.0)  # refreshes track 0: track 1 is now the stalest
    zt.update(3, box(500, 500), 4.0)
    zt.update(4, box(500, 500), 5.0)
    assert len(zt) == 3
    assert [tid for tid in range(5) if tid in zt] == [0, 3, 4]
    assert zt.state(1) is None and zt.state(2) is None and zt.state(0) is not None


def test_centre_history_is_bounded_but_heading_uses_first_centre() -> None:
    zt = tracker(None, history=8)
    t = drive(zt, steps((500, 200), (500, 260), 60))  # 60 px net, 1 px per frame
    assert len(zt.trail(1)) == 8
    assert zt.trail(1)[-1] == (500.0, 260.0)
    st = zt.state(1, t)
    # The last 8 centres span 7 px, but the net motion from the first centre is 60 px.
    assert st is not None and st.direction is Direction.ENTRY and not st.crossed


def test_default_entry_comes_from_the_zone() -> None:
    zone = Zone(polygon=SQUARE, line=H_LINE, entry="up")
    zt = ZoneTracker(ZoneGeometry(zone, W, H))
    assert zt.entry == "up"
    t = drive(zt, UP)
    st = zt.state(1, t)
    assert st is not None and st.direction is Direction.ENTRY


def test_rejects_empty_frame() -> None:
    with pytest.raises(ValueError, match="positive"):
        ZoneGeometry(Zone(polygon=SQUARE), 0, 480)
