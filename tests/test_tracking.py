"""ByteTracker, its Kalman filter and matching, on synthetic detections."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pytest

from edge_client.config import Tracking
from edge_client.contracts import Detections, TrackedBox
from edge_client.tracking import ByteTracker, TrackState
from edge_client.tracking.kalman import KalmanFilter, xyah_to_xyxy, xyxy_to_xyah
from edge_client.tracking.matching import iou_matrix, linear_assignment, match_iou

# --- a tiny scene builder ----------------------------------------------------------------


@dataclass(frozen=True)
class Obj:
    """A box of size ``w`` x ``h`` whose top-left moves from ``xy`` by ``v`` px per frame.
    Visible on frames ``start <= f < stop`` except those in ``hidden``."""

    xy: tuple[float, float]
    v: tuple[float, float] = (0.0, 0.0)
    w: float = 80.0
    h: float = 50.0
    start: int = 0
    stop: int = 10**9
    hidden: frozenset[int] = frozenset()
    score: float | Callable[[int], float] = 0.9
    cls: int | Callable[[int], int] = 2

    def at(self, f: int) -> tuple[list[float], float, int] | None:
        if not self.start <= f < self.stop or f in self.hidden:
            return None
        x, y = self.xy[0] + self.v[0] * f, self.xy[1] + self.v[1] * f
        score = self.score(f) if callable(self.score) else self.score
        cls = self.cls(f) if callable(self.cls) else self.cls
        return [x, y, x + self.w, y + self.h], score, cls


def frame(objs: Iterable[Obj], f: int) -> Detections:
    seen = [d for d in (o.at(f) for o in objs) if d is not None]
    if not seen:
        return Detections.empty()
    return Detections(
        np.array([b for b, _, _ in seen], np.float32),
        np.array([s for _, s, _ in seen], np.float32),
        np.array([c for _, _, c in seen], np.int32),
    )


def run(tracker: ByteTracker, objs: list[Obj], frames: int) -> list[list[TrackedBox]]:
    return [tracker.update(frame(objs, f)) for f in range(frames)]


def ids_near(outputs: list[list[TrackedBox]], obj: Obj, frames: Iterable[int]) -> set[int]:
    """Ids reported on the given frames for the box that ``obj`` produced there."""
    found: set[int] = set()
    for f in frames:
        d = obj.at(f)
        assert d is not None
        hits = [
            t.track_id
            for t in outputs[f]
            if all(abs(p - q) < 1e-3 for p, q in zip(t.box, d[0], strict=True))
        ]
        assert len(hits) == 1, f"frame {f}: {outputs[f]}"
        found.add(hits[0])
    return found


def tracker(**kw: object) -> ByteTracker:
    return ByteTracker(id_source=itertools.count(1).__next__, **kw)  # type: ignore[arg-type]


# --- scenarios -----------------------------------------------------------------------------


@pytest.mark.parametrize("v", [(0.0, 0.0), (6.0, 0.0), (-4.0, 3.0), (15.0, 2.0)])
def test_linear_motion_keeps_one_id_for_100_frames(v: tuple[float, float]) -> None:
    car = Obj((500.0, 300.0), v)
    out = run(tracker(), [car], 100)
    assert [len(o) for o in out[:2]] == [0, 0]  # min_hits = 3
    assert ids_near(out, car, range(2, 100)) == {1}
    assert out[2][0].age == 3 and out[99][0].age == 100
    assert out[50][0].box == tuple(car.at(50)[0])  # type: ignore[index]  # detected, not predicted


def test_two_objects_crossing_keep_their_ids() -> None:
    a = Obj((100.0, 200.0), (8.0, 0.0), cls=2)
    # b passes a between frames 50 and 51 (8 px apart, then swapped): matching on the last
    # seen boxes would swap the ids there, the constant-velocity prediction must not
    b = Obj((908.0, 202.0), (-8.0, 0.0), cls=7)
    out = run(tracker(), [a, b], 100)
    id_a, id_b = ids_near(out, a, range(2, 100)), ids_near(out, b, range(2, 100))
    assert len(id_a) == 1 and len(id_b) == 1 and id_a != id_b
    assert {t.class_id for o in out[60:] for t in o if t.track_id in id_a} == {2}


@pytest.mark.parametrize("gap", [1, 5, 12, 30])
def test_gap_within_lost_frames_keeps_id(gap: int) -> None:
    """Hidden for ``gap`` frames (<= lost_frames) and back where constant velocity puts it."""
    car = Obj((100.0, 300.0), (5.0, 1.0), hidden=frozenset(range(40, 40 + gap)))
    t = tracker(lost_frames=30)
    out = run(t, [car], 40 + gap + 10)
    assert all(o == [] for o in out[40 : 40 + gap])
    assert ids_near(out, car, [*range(2, 40), *range(40 + gap, 50 + gap)]) == {1}
    assert t.removed() == []


@pytest.mark.parametrize("gap", [31, 45])
def test_gap_beyond_lost_frames_gives_new_id_and_reports_removal(gap: int) -> None:
    car = Obj((300.0, 300.0), hidden=frozenset(range(20, 20 + gap)))
    t = tracker(lost_frames=30)
    out = run(t, [car], 20 + 30)
    assert t.removed() == []  # 30 frames missed: still kept
    out += [t.update(frame([car], 50))]
    assert t.removed() == [1]  # 31st missed frame
    assert t.removed() == []  # reported once
    out += [t.update(frame([car], f)) for f in range(51, 20 + gap + 5)]
    back = range(20 + gap + 2, 20 + gap + 5)  # confirmed again after min_hits
    assert ids_near(out, car, back) == {2}
    assert all(o == [] for o in out[20 + gap : 20 + gap + 2])


def test_lost_track_is_reported_only_after_lost_frames() -> None:
    t = tracker(lost_frames=5)
    run(t, [Obj((0.0, 0.0))], 3)
    for _ in range(5):
        t.update(Detections.empty())
        assert t.removed() == []
    assert t.tracks[0].state is TrackState.LOST
    t.update(Detections.empty())
    assert t.removed() == [1] and t.tracks == ()


def test_low_score_detections_never_start_a_track() -> None:
    t = tracker()
    out = run(t, [Obj((0.0, 0.0), score=0.3), Obj((500.0, 0.0), v=(3.0, 0.0), score=0.49)], 50)
    assert all(o == [] for o in out) and t.tracks == ()
    assert t.removed() == []


def test_low_score_detections_continue_an_existing_track() -> None:
    car = Obj((0.0, 100.0), (4.0, 0.0), score=lambda f: 0.9 if f < 10 else 0.2)
    t = tracker()
    out = run(t, [car], 40)
    assert ids_near(out, car, range(2, 40)) == {1}
    assert out[30][0].score == pytest.approx(0.2)


def test_low_score_does_not_revive_a_lost_track() -> None:
    car = Obj((0.0, 100.0), score=lambda f: 0.9 if f < 5 else 0.2, hidden=frozenset({5}))
    out = run(tracker(), [car], 15)
    assert out[4] and all(o == [] for o in out[5:])


def test_below_low_score_is_ignored() -> None:
    car = Obj((0.0, 100.0), score=lambda f: 0.9 if f < 5 else 0.05)
    t = tracker()
    out = run(t, [car], 8)
    assert out[4] and out[5:] == [[], [], []]
    assert t.tracks[0].state is TrackState.LOST


@pytest.mark.parametrize(
    ("min_hits", "visible", "reported"), [(3, 1, 0), (3, 2, 0), (3, 3, 1), (1, 1, 1)]
)
def test_min_hits_hides_short_false_positives(min_hits: int, visible: int, reported: int) -> None:
    blip = Obj((50.0, 50.0), stop=visible)
    t = tracker(min_hits=min_hits)
    out = run(t, [blip], 40)
    assert len({b.track_id for o in out for b in o}) == reported
    assert t.removed() == ([1] if reported else [])


def test_min_hits_needs_consecutive_hits() -> None:
    blink = Obj((50.0, 50.0), hidden=frozenset(range(1, 100, 2)))  # every other frame
    out = run(tracker(min_hits=2), [blink], 20)
    assert all(o == [] for o in out)


def test_ids_come_from_the_injected_counter_and_stay_dense() -> None:
    objs = [
        Obj((0.0, 0.0), stop=1),  # false positive: consumes no id
        Obj((200.0, 0.0), start=2),
        Obj((400.0, 0.0), start=5),
        Obj((600.0, 0.0), start=5),
    ]
    t = ByteTracker(id_source=iter([101, 202, 303, 404]).__next__)
    out = run(t, objs, 12)
    assert [b.track_id for b in out[4]] == [101]
    assert [b.track_id for b in out[11]] == [101, 202, 303]  # same frame: creation order


def test_default_ids_start_at_one_and_reset_keeps_counting() -> None:
    t = ByteTracker()
    run(t, [Obj((0.0, 0.0))], 3)
    t.reset()
    assert t.removed() == [1] and t.tracks == ()
    assert [b.track_id for b in run(t, [Obj((0.0, 0.0))], 3)[2]] == [2]


def test_empty_frames() -> None:
    t = tracker()
    assert [t.update(Detections.empty()) for _ in range(5)] == [[]] * 5
    assert t.removed() == [] and t.tracks == ()


def test_non_finite_boxes_are_dropped() -> None:
    boxes = np.array([[0, 0, 10, 10], [np.nan, 0, 10, 10]], np.float32)
    det = Detections(boxes, np.array([0.9, 0.9], np.float32), np.array([0, 0], np.int32))
    t = tracker(min_hits=1)
    assert [b.box for b in t.update(det)] == [(0.0, 0.0, 10.0, 10.0)]


def test_class_is_the_majority_of_observations() -> None:
    seq = [2, 2, 7, 2, 7, 7, 7, 5]  # 7 leads 4 to 3 at the end
    out = run(tracker(min_hits=1), [Obj((0.0, 0.0), cls=lambda f: seq[f])], len(seq))
    assert [o[0].class_id for o in out] == [2, 2, 2, 2, 2, 7, 7, 7]  # tie at f=5: latest wins


def test_many_objects_keep_distinct_ids() -> None:
    objs = [
        Obj((100.0 * (i % 6), 120.0 * (i // 6)), (3.0, 1.0 if i % 2 else -1.0), w=60, h=40)
        for i in range(30)
    ]
    t = tracker()
    out = run(t, objs, 150)
    assert all(len(o) == 30 for o in out[2:])
    assert all(len(ids_near(out, o, range(2, 150))) == 1 for o in objs)
    assert {b.track_id for b in out[-1]} == set(range(1, 31))


def test_from_config() -> None:
    cfg = Tracking(high_score=0.6, low_score=0.2, match_iou=0.3, lost_frames=7)
    t = ByteTracker.from_config(cfg, min_hits=4)
    assert (t.high_score, t.low_score, t.match_iou, t.lost_frames, t.min_hits) == (
        0.6,
        0.2,
        0.3,
        7,
        4,
    )


@pytest.mark.parametrize(
    "kw",
    [
        {"low_score": 0.6, "high_score": 0.5},
        {"low_score": 0.0},
        {"match_iou": 0.0},
        {"min_hits": 0},
        {"lost_frames": -1},
    ],
)
def test_rejects_bad_knobs(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ByteTracker(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n_boxes", "n_scores", "n_classes"), [(3, 2, 3), (2, 2, 1), (0, 1, 0)])
def test_detections_reject_mismatched_lengths(n_boxes: int, n_scores: int, n_classes: int) -> None:
    with pytest.raises(ValueError, match="disagree"):
        Detections(np.zeros((n_boxes, 4)), np.zeros(n_scores), np.zeros(n_classes, np.int32))


def test_invariants_on_random_clutter() -> None:
    """Random boxes: ids unique per frame, every removed id was reported, removed once."""
    rng = np.random.default_rng(0)
    t = tracker(lost_frames=3, min_hits=2)
    seen: set[int] = set()
    gone: list[int] = []
    for _ in range(200):
        n = int(rng.integers(0, 12))
        xy = rng.uniform(0, 300, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (n, 2))], axis=1).astype(np.float32)
        det = Detections(boxes, rng.uniform(0, 1, n).astype(np.float32), rng.integers(0, 3, n))
        ids = [b.track_id for b in t.update(det)]
        assert len(ids) == len(set(ids)) and not set(ids) & set(gone)
        seen |= set(ids)
        gone += t.removed()
    assert len(gone) == len(set(gone)) and set(gone) <= seen


# --- kalman -------------------------------------------------------------------------------


def test_xyah_roundtrip() -> None:
    boxes = np.array([[10, 20, 50, 100], [0, 0, 1, 1]], np.float64)
    assert np.allclose(xyah_to_xyxy(xyxy_to_xyah(boxes)), boxes)
    assert xyah_to_xyxy(np.zeros((0, 8))).shape == (0, 4)


def test_kalman_learns_constant_velocity_and_batches_match_single() -> None:
    kf = KalmanFilter()
    mean, cov = kf.initiate(np.array([[100.0, 50.0, 2.0, 40.0], [10.0, 10.0, 1.0, 20.0]]))
    for f in range(1, 40):
        mean, cov = kf.predict(mean, cov)
        z = np.array([[100.0 + 5 * f, 50.0 - 2 * f, 2.0, 40.0], [10.0, 10.0, 1.0, 20.0]])
        mean, cov = kf.update(mean, cov, z)
    assert np.allclose(mean[0, 4:], [5, -2, 0, 0], atol=0.05)
    assert np.allclose(mean[1, 4:], 0, atol=1e-6)
    m1, c1 = kf.predict(mean[:1], cov[:1])
    mb, cb = kf.predict(mean, cov)
    assert np.allclose(m1, mb[:1]) and np.allclose(c1, cb[:1])
    assert np.allclose(cb, cb.transpose(0, 2, 1))  # stays symmetric


# --- matching -----------------------------------------------------------------------------


def test_iou_matrix_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float64)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float64)
    assert np.allclose(iou_matrix(a, b), [[1.0, 1 / 3, 0.0], [0.0, 0.0, 0.0]])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)


@pytest.mark.parametrize(
    ("cost", "max_cost", "matches", "free_rows", "free_cols"),
    [
        ([[0.1, 0.7], [0.7, 0.9]], 0.8, [[0, 0]], [1], [1]),  # strong pair not broken up
        ([[0.1, 0.2], [0.2, 0.9]], 0.8, [[0, 1], [1, 0]], [], []),  # total cost wins
        ([[0.9, 0.95]], 0.8, [], [0], [0, 1]),
        (np.zeros((0, 3)), 0.5, [], [], [0, 1, 2]),
    ],
)
def test_linear_assignment(
    cost: list[list[float]],
    max_cost: float,
    matches: list[list[int]],
    free_rows: list[int],
    free_cols: list[int],
) -> None:
    m, r, c = linear_assignment(np.array(cost, np.float64), max_cost)
    assert m.tolist() == matches and r.tolist() == free_rows and c.tolist() == free_cols


def test_match_iou_threshold() -> None:
    tracks = np.array([[0, 0, 10, 10]], np.float64)
    assert match_iou(tracks, np.array([[5, 0, 15, 10]]), 0.3)[0].tolist() == [[0, 0]]
    assert match_iou(tracks, np.array([[5, 0, 15, 10]]), 0.4)[0].tolist() == []
