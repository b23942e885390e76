"""ByteTrack (Zhang et al., ECCV 2022): associate every detection box, low scores included.

Per frame: Kalman-predict every track, then
1. high-score detections (``score >= high_score``) <-> confirmed + lost tracks, by IoU;
2. low-score detections (``low_score <= score < high_score``) <-> still unmatched confirmed
   tracks (occluded / blurred objects keep their track; low scores never revive or start one);
3. leftover high-score detections <-> tentative tracks; the rest start tentative tracks.
Unmatched tentative tracks are dropped, unmatched confirmed ones become lost; lost for more
than ``lost_frames`` frames -> removed, reported once by :meth:`ByteTracker.removed`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..contracts import Detections, TrackedBox
from .kalman import KalmanFilter, xyah_to_xyxy, xyxy_to_xyah
from .matching import match_iou
from .track import Track, TrackState

if TYPE_CHECKING:
    from ..config import Tracking

_Dets = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [N, 4], scores [N], classes [N]


class ByteTracker:
    """Multi-object tracker implementing the ``contracts.Tracker`` protocol.

    Knobs (raising / lowering):

    - ``high_score``: detections at or above it may start tracks and revive lost ones.
      Raising it cuts false tracks but starts real ones later (more boxes fall to the
      second stage, which only continues tracks); lowering it tracks faint objects and clutter.
    - ``low_score``: floor below which detections are ignored. Lowering it keeps tracks
      alive through occlusion and motion blur, at the risk of a track latching onto a
      nearby false box; raising it towards ``high_score`` disables the second stage.
    - ``match_iou``: minimum IoU between a predicted and a detected box (see
      :mod:`.matching`). Raising it splits fast movers into several ids; lowering it
      tolerates big jumps (frame skipping) but swaps ids in dense traffic.
    - ``lost_frames``: frames a lost track waits to be re-found. Raising it bridges
      longer occlusions but holds memory and may give a new vehicle at the same spot an
      old id (and delays ``removed()``, i.e. the end-of-track event); lowering it ends
      tracks promptly and re-ids objects after shorter gaps.
    - ``min_hits``: consecutive frames before a track is confirmed and gets a public id.
      Raising it suppresses flicker / one-off false positives but delays and drops short
      tracks; 1 reports every high-score detection immediately.
    - ``id_source``: returns the next public id (default 1, 2, 3, ...); inject one to share
      a counter between cameras or make ids predictable in tests.
    """

    def __init__(
        self,
        high_score: float = 0.5,
        low_score: float = 0.1,
        match_iou: float = 0.2,
        lost_frames: int = 30,
        min_hits: int = 3,
        id_source: Callable[[], int] | None = None,
    ) -> None:
        if not (0 < low_score <= high_score <= 1 and 0 < match_iou <= 1):
            raise ValueError(f"need 0 < {low_score=} <= {high_score=} <= 1, 0 < {match_iou=} <= 1")
        if lost_frames < 0 or min_hits < 1:
            raise ValueError(f"need {lost_frames=} >= 0 and {min_hits=} >= 1")
        self.high_score = high_score
        self.low_score = low_score
        self.match_iou = match_iou
        self.lost_frames = lost_frames
        self.min_hits = min_hits
        self._next_id = id_source or itertools.count(1).__next__
        self._kf = KalmanFilter()
        self._uids = itertools.count()
        self._tracks: list[Track] = []
        self._removed: list[int] = []
        self._frame = 0

    @classmethod
    def from_config(
        cls, tracking_cfg: Tracking, min_hits: int = 3, id_source: Callable[[], int] | None = None
    ) -> ByteTracker:
        """From a camera's ``tracking`` section; ``min_hits`` is usually ``stable_frames``."""
        return cls(
            high_score=tracking_cfg.high_score,
            low_score=tracking_cfg.low_score,
            match_iou=tracking_cfg.match_iou,
            lost_frames=tracking_cfg.lost_frames,
            min_hits=min_hits,
            id_source=id_source,
        )

    @property
    def tracks(self) -> tuple[Track, ...]:
        """Live tracks (tentative, confirmed and lost), for inspection and debugging."""
        return tuple(self._tracks)

    def update(self, detections: Detections) -> list[TrackedBox]:
        """Associate one frame's detections; return confirmed tracks matched in it, by id."""
        self._frame = frame = self._frame + 1
        det = _usable(detections, self.low_score)
        boxes, scores = det[0], det[1]
        self._predict()
        high = np.flatnonzero(scores >= self.high_score)
        low = np.flatnonzero(scores < self.high_score)
        pairs: list[tuple[Track, int]] = []
        pool = [t for t in self._tracks if t.is_confirmed]  # stage 1: high <-> confirmed+lost
        m1, free_pool, free_high = self._match(pool, boxes[high])
        pairs += [(pool[i], int(high[j])) for i, j in m1]
        # stage 2: low <-> confirmed tracks still unmatched (lost ones need a high score)
        tracked = [pool[i] for i in free_pool if pool[i].state is TrackState.CONFIRMED]
        m2, _, _ = self._match(tracked, boxes[low])
        pairs += [(tracked[i], int(low[j])) for i, j in m2]
        # stage 3: leftover high <-> tentative; what is still left starts new tracks
        tentative = [t for t in self._tracks if t.state is TrackState.TENTATIVE]
        rest = high[free_high]
        m3, _, free_rest = self._match(tentative, boxes[rest])
        pairs += [(tentative[i], int(rest[j])) for i, j in m3]

        self._correct(pairs, det, frame)
        matched = {id(t) for t, _ in pairs}
        for t in self._tracks:
            if id(t) not in matched:
                t.miss()
        self._spawn(rest[free_rest], det, frame)
        self._housekeep()
        live = [t for t in self._tracks if t.state is TrackState.CONFIRMED]  # matched now
        return [t.output(frame) for t in sorted(live, key=lambda t: t.track_id or 0)]

    def removed(self) -> list[int]:
        """Public ids of tracks dropped since the previous call, each reported once."""
        out, self._removed = self._removed, []
        return out

    def reset(self) -> None:
        """Forget every track (e.g. after a source reconnect or seek). Confirmed tracks
        are reported by the next :meth:`removed` so downstream state can be closed; the id
        counter is *not* rewound, so ids are never reused by the same tracker."""
        self._removed += [t.track_id for t in self._tracks if t.track_id is not None]
        self._tracks = []
        self._frame = 0

    # --- internals ----------------------------------------------------------------------
    def _predict(self) -> None:
        if not self._tracks:
            return
        mean = np.stack([t.mean for t in self._tracks])
        cov = np.stack([t.cov for t in self._tracks])
        lost = np.array([t.state is TrackState.LOST for t in self._tracks])
        mean[lost, 7] = 0.0  # as ByteTrack: an unseen object's height stops changing
        mean, cov = self._kf.predict(mean, cov)
        for t, m, c in zip(self._tracks, mean, cov, strict=True):
            t.mean, t.cov = m, c

    def _match(self, tracks: Sequence[Track], boxes: np.ndarray) -> _Dets:
        """IoU matching of predicted track boxes: (matches, free tracks, free boxes)."""
        predicted = xyah_to_xyxy(np.array([t.mean for t in tracks]).reshape(-1, 8))
        return match_iou(predicted, boxes, self.match_iou)

    def _correct(self, pairs: list[tuple[Track, int]], det: _Dets, frame: int) -> None:
        """One batched Kalman update for every matched track, then record the hits."""
        if not pairs:
            return
        boxes, scores, classes = det
        mean = np.stack([t.mean for t, _ in pairs])
        cov = np.stack([t.cov for t, _ in pairs])
        mean, cov = self._kf.update(mean, cov, xyxy_to_xyah(boxes[[d for _, d in pairs]]))
        for k, (t, d) in enumerate(pairs):
            t.mean, t.cov = mean[k], cov[k]
            t.hit(boxes[d], scores[d], classes[d], frame)

    def _spawn(self, new: np.ndarray, det: _Dets, frame: int) -> None:
        boxes, scores, classes = det
        means, covs = self._kf.initiate(xyxy_to_xyah(boxes[new]))
        self._tracks += [
            Track(next(self._uids), boxes[d], scores[d], classes[d], frame, means[k], covs[k])
            for k, d in enumerate(new)
        ]

    def _housekeep(self) -> None:
        """Confirm tentative tracks (ids in creation order), expire lost ones."""
        for t in self._tracks:
            if t.state is TrackState.TENTATIVE and t.hit_streak >= self.min_hits:
                t.confirm(self._next_id())
            elif t.state is TrackState.LOST and t.time_since_update > self.lost_frames:
                t.state = TrackState.REMOVED
                assert t.track_id is not None
                self._removed.append(t.track_id)
        self._tracks = [t for t in self._tracks if t.state is not TrackState.REMOVED]


def _usable(det: Detections, low_score: float) -> _Dets:
    """Finite boxes scoring at least ``low_score``, as float64 / int arrays."""
    boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(det.scores, np.float64).reshape(-1)
    keep = np.isfinite(boxes).all(axis=1) & np.isfinite(scores) & (scores >= low_score)
    return boxes[keep], scores[keep], np.asarray(det.classes).reshape(-1).astype(np.int64)[keep]
