"""Where a vehicle is and which way it goes: a camera's gate zone in pixels, and per-track
zone state (in the zone now, dwell, entry/exit direction).

``ZoneGeometry`` turns a configured ``Zone`` (fractions of the frame) into pixels: whether a
box's centre is inside the polygon, and the padded rectangle the detector input is cropped
to. ``ZoneTracker`` follows tracked boxes over frames. A track's direction comes from the
last time its centre path crossed the counting line segment (so a car that crosses and then
backs out is an exit); without a line, or before any crossing, it is inferred from the net
heading once the vehicle has moved at least half its box height (a car standing at the
barrier has no direction yet, but its dwell grows). Pure logic: no I/O, no clocks; times
are whatever the caller passes (frame timestamps).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from edge_client.config import Zone
from edge_client.contracts import Box, Direction

EntrySide = Literal["down", "up", "left", "right"]
Point = tuple[float, float]

# Image coordinates: y grows downwards.
ENTRY_VECTORS: dict[str, Point] = {
    "down": (0.0, 1.0),
    "up": (0.0, -1.0),
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
}

DETECT_PAD = 0.05  # detect_rect padding, as a fraction of the polygon's width / height
HEADING_MIN_BOX_HEIGHTS = 0.5  # net motion needed (in box heights) to infer a heading
_EDGE_EPS = 1e-9  # pixels: a centre this close to a polygon edge is on it (inside)
_ROUND_EPS = 1e-6  # pixels: detect_rect rounding tolerance


def box_centre(box: Box | Sequence[float]) -> Point:
    """Centre of an (x1, y1, x2, y2) box."""
    x1, y1, x2, y2 = box
    return ((x1 + x2) / 2.0, (y1 + y2) / 2.0)


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    """Whether ``p`` lies on segment ``a``-``b`` (within ``_EDGE_EPS`` pixels)."""
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    length = math.hypot(dx, dy)
    if length == 0.0:
        return math.hypot(px - ax, py - ay) <= _EDGE_EPS
    if abs(dx * (py - ay) - dy * (px - ax)) / length > _EDGE_EPS:
        return False
    t = ((px - ax) * dx + (py - ay) * dy) / (length * length)
    return -_EDGE_EPS <= t * length <= length + _EDGE_EPS


def point_in_polygon(p: Point, polygon: tuple[Point, ...]) -> bool:
    """Even-odd ray casting; points on an edge or vertex count as inside. Works for any
    simple polygon, concave ones included."""
    n = len(polygon)
    for i in range(n):
        if _on_segment(p, polygon[i], polygon[(i + 1) % n]):
            return True
    x, y = p
    inside = False
    for i in range(n):
        (xi, yi), (xj, yj) = polygon[i], polygon[(i - 1) % n]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
    return inside


def line_side(p: Point, a: Point, b: Point) -> float:
    """Signed area telling which side of the infinite line a-b ``p`` is on (0: on it)."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def crosses(p: Point, q: Point, a: Point, b: Point) -> bool:
    """Whether the move ``p`` -> ``q`` crosses the segment ``a``-``b``: ``p`` and ``q`` lie
    strictly on opposite sides of its line and the crossing point lies within the segment's
    extent (crossing its extension does not count). A move that ends exactly on the line is
    not a crossing yet; ``ZoneTracker`` measures the next move from the last centre that was
    off the line, so touching the line and returning is no crossing and passing through it
    is exactly one."""
    sp, sq = line_side(p, a, b), line_side(q, a, b)
    if sp == 0.0 or sq == 0.0 or (sp > 0.0) == (sq > 0.0):
        return False
    # Where p->q meets the line, as a position u along a->b (0..1 is on the segment).
    rx, ry = q[0] - p[0], q[1] - p[1]
    sx, sy = b[0] - a[0], b[1] - a[1]
    denom = rx * sy - ry * sx  # nonzero: p and q are strictly on opposite sides
    u = ((a[0] - p[0]) * ry - (a[1] - p[1]) * rx) / denom
    return 0.0 <= u <= 1.0


class ZoneGeometry:
    """A ``Zone`` converted to pixels for a ``width`` x ``height`` frame."""

    def __init__(self, zone: Zone, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        self.zone = zone
        self.width = width
        self.height = height
        self.polygon: tuple[Point, ...] = tuple((x * width, y * height) for x, y in zone.polygon)
        self.line: tuple[Point, Point] | None = None
        if zone.line is not None:
            (ax, ay), (bx, by) = zone.line
            self.line = ((ax * width, ay * height), (bx * width, by * height))

    def contains(self, box: Box | Sequence[float]) -> bool:
        """Whether a vehicle box (x1, y1, x2, y2 pixels) is in the zone: its centre is inside
        the polygon or on its outline."""
        return point_in_polygon(box_centre(box), self.polygon)

    def detect_rect(self) -> tuple[int, int, int, int]:
        """Integer pixel rectangle (x1, y1, x2, y2) around the polygon, padded by 5% of its
        size on each side and clamped to the frame; ``image[y1:y2, x1:x2]`` is the detector
        input when ``Zone.crop_detection`` is on (so vehicles on the outline keep context)."""
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        pad_x = DETECT_PAD * (max(xs) - min(xs))
        pad_y = DETECT_PAD * (max(ys) - min(ys))
        # Round outwards, ignoring float noise (0.2 * 1000 - 20.000000000000004 is 180).
        x1 = max(0, math.floor(min(xs) - pad_x + _ROUND_EPS))
        y1 = max(0, math.floor(min(ys) - pad_y + _ROUND_EPS))
        x2 = min(self.width, math.ceil(max(xs) + pad_x - _ROUND_EPS))
        y2 = min(self.height, math.ceil(max(ys) + pad_y - _ROUND_EPS))
        return (x1, y1, x2, y2)


@dataclass(frozen=True)
class TrackZone:
    """A track's zone state at one moment (``ZoneTracker.state``)."""

    in_zone: bool  # centre inside the polygon at the track's latest sighting, and still seen
    ever_in_zone: bool
    entered_at: float | None  # time of the first entry
    dwell_s: float  # total time inside, summed over visits (the current one up to ``now``)
    direction: Direction | None
    crossed: bool  # True: direction from crossing the counting line; False: from heading


@dataclass
class _Track:
    origin: Point  # first centre ever seen (net heading is measured from it)
    centres: deque[tuple[float, float, float]]  # (x, y, t), most recent last, bounded
    box_height: float
    last_seen: float
    in_zone: bool = False
    visit_start: float | None = None
    last_in: float | None = None  # last time seen inside during the current visit
    entered_at: float | None = None
    dwell_closed: float = 0.0  # completed visits
    crossing: Direction | None = None  # direction of the last line crossing
    off_line: Point | None = None  # the latest centre not exactly on the counting line

    def close_visit(self) -> None:
        if self.in_zone and self.visit_start is not None and self.last_in is not None:
            self.dwell_closed += max(0.0, self.last_in - self.visit_start)
        self.in_zone = False
        self.visit_start = None
        self.last_in = None


class ZoneTracker:
    """Per-track zone state for one camera, keyed by tracker id.

    Call ``update`` for every tracked box of a frame, then ``frame_done`` with the ids that
    were present. Memory is bounded: ``history`` centres per track and at most ``max_tracks``
    tracks (the least recently updated is forgotten first); call ``forget`` when the tracker
    drops a track.
    """

    def __init__(
        self,
        geometry: ZoneGeometry,
        entry: EntrySide | None = None,
        *,
        history: int = 64,
        max_tracks: int = 512,
    ) -> None:
        if history < 2 or max_tracks < 1:
            raise ValueError("history must be >= 2 and max_tracks >= 1")
        self.geometry = geometry
        self.entry: EntrySide = entry if entry is not None else geometry.zone.entry
        self._entry_vec = ENTRY_VECTORS[self.entry]
        self._history = history
        self._max_tracks = max_tracks
        self._tracks: OrderedDict[int, _Track] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._tracks

    def update(self, track_id: int, box: Box | Sequence[float], t: float) -> None:
        """Record a track's box (frame pixels) at time ``t``."""
        c = box_centre(box)
        tr = self._tracks.get(track_id)
        if tr is None:
            tr = _Track(
                origin=c,
                centres=deque(maxlen=self._history),
                box_height=0.0,
                last_seen=t,
            )
            self._tracks[track_id] = tr
            while len(self._tracks) > self._max_tracks:
                self._tracks.popitem(last=False)
        else:
            self._tracks.move_to_end(track_id)
        line = self.geometry.line
        if line is not None and line_side(c, *line) != 0.0:
            p = tr.off_line
            if p is not None and crosses(p, c, *line):
                dot = (c[0] - p[0]) * self._entry_vec[0] + (c[1] - p[1]) * self._entry_vec[1]
                tr.crossing = Direction.ENTRY if dot > 0 else Direction.EXIT
            tr.off_line = c
        tr.centres.append((c[0], c[1], t))
        tr.box_height = abs(box[3] - box[1])
        tr.last_seen = t
        if self.geometry.contains(box):
            if not tr.in_zone:
                tr.in_zone = True
                tr.visit_start = t
                if tr.entered_at is None:
                    tr.entered_at = t
            tr.last_in = t
        elif tr.in_zone:
            tr.close_visit()  # left: the visit ends at the last sighting inside

    def frame_done(self, present_ids: set[int], t: float) -> None:
        """End the frame at time ``t``: tracks not in ``present_ids`` are no longer in the
        zone (their visit ends at their last sighting; their history is kept)."""
        for track_id, tr in self._tracks.items():
            if track_id not in present_ids and tr.in_zone:
                tr.close_visit()

    def occupied(self) -> bool:
        """Whether any track was inside the zone at its latest update (and still present)."""
        return any(tr.in_zone for tr in self._tracks.values())

    def forget(self, track_id: int) -> None:
        self._tracks.pop(track_id, None)

    def trail(self, track_id: int) -> tuple[Point, ...]:
        """The track's recent centres (at most ``history``), oldest first: for overlays."""
        tr = self._tracks.get(track_id)
        return tuple((x, y) for x, y, _ in tr.centres) if tr else ()

    def state(self, track_id: int, now: float | None = None) -> TrackZone | None:
        """The track's zone state; ``now`` (default: its last sighting) bounds the current
        visit's dwell. None for an unknown track."""
        tr = self._tracks.get(track_id)
        if tr is None:
            return None
        dwell = tr.dwell_closed
        if tr.in_zone and tr.visit_start is not None:
            end = tr.last_seen if now is None else now
            dwell += max(0.0, end - tr.visit_start)
        direction, crossed = tr.crossing, tr.crossing is not None
        if direction is None:
            direction = self._heading(tr)
        return TrackZone(
            in_zone=tr.in_zone,
            ever_in_zone=tr.entered_at is not None,
            entered_at=tr.entered_at,
            dwell_s=dwell,
            direction=direction,
            crossed=crossed,
        )

    def _heading(self, tr: _Track) -> Direction | None:
        """Direction from net motion along the entry vector, once it reaches half the
        latest box height; None while the vehicle has not moved that far."""
        x, y, _ = tr.centres[-1]
        dot = (x - tr.origin[0]) * self._entry_vec[0] + (y - tr.origin[1]) * self._entry_vec[1]
        if dot == 0.0 or abs(dot) < HEADING_MIN_BOX_HEIGHTS * tr.box_height:
            return None
        return Direction.ENTRY if dot > 0 else Direction.EXIT
