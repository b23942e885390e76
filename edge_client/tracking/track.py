"""State of one tracked object. The tracker owns the Kalman maths; a ``Track`` only
records what happened to it (hits, misses, classes, scores) and its lifecycle:

    TENTATIVE --min_hits consecutive hits--> CONFIRMED <--miss / hit--> LOST --> REMOVED
        \\--any miss--> REMOVED (never had a public id)       (lost > lost_frames)

Two ids: ``uid`` is internal (every candidate, including one-frame false positives, gets
one; used for deterministic ordering), ``track_id`` is the public id, given only on
confirmation so the public ids stay dense and every one of them is a real object.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
from numpy.typing import NDArray

from ..contracts import TrackedBox


class TrackState(Enum):
    TENTATIVE = "tentative"  # seen < min_hits consecutive frames; no public id, not reported
    CONFIRMED = "confirmed"  # matched in the latest frame (or missed no frame since)
    LOST = "lost"  # confirmed, then missed; kept for re-identification for lost_frames
    REMOVED = "removed"  # finished; a confirmed one is reported once by removed()


class Track:
    """One object's history. ``mean`` / ``cov`` are its Kalman state, written by the tracker."""

    def __init__(
        self,
        uid: int,
        box: NDArray[np.floating],
        score: float,
        class_id: int,
        frame: int,
        mean: NDArray[np.float64],
        cov: NDArray[np.float64],
    ) -> None:
        self.uid = uid
        self.track_id: int | None = None
        self.state = TrackState.TENTATIVE
        self.mean = mean
        self.cov = cov
        self.box: tuple[float, float, float, float] = _box(box)
        self.score = float(score)
        self.start_frame = frame  # first frame of the hit run that led to confirmation
        self.last_frame = frame  # last frame with a matched detection
        self.hits = 1  # matched frames in total
        self.hit_streak = 1  # consecutive matched frames up to the last one
        self.time_since_update = 0  # frames since the last match (0 = matched this frame)
        self._class_votes: dict[int, int] = {int(class_id): 1}
        self._class_last: dict[int, int] = {int(class_id): frame}

    @property
    def class_id(self) -> int:
        """Most frequently observed class; ties go to the most recently observed one (a
        detector flickering car/van shouldn't flip the label on every frame)."""
        return max(self._class_votes, key=lambda c: (self._class_votes[c], self._class_last[c]))

    @property
    def is_confirmed(self) -> bool:
        return self.state in (TrackState.CONFIRMED, TrackState.LOST)

    def age(self, frame: int) -> int:
        """Frames spanned from the first hit of the confirming run up to ``frame``,
        inclusive (so a track confirmed after ``min_hits`` hits reports ``age == min_hits``
        and ``age >= stable_frames`` means it has lasted that many frames)."""
        return frame - self.start_frame + 1

    def hit(self, box: NDArray[np.floating], score: float, class_id: int, frame: int) -> None:
        """Record a matched detection (box as detected, not as predicted)."""
        self.box = _box(box)
        self.score = float(score)
        self.hit_streak = self.hit_streak + 1 if self.time_since_update == 0 else 1
        self.hits += 1
        self.time_since_update = 0
        self.last_frame = frame
        c = int(class_id)
        self._class_votes[c] = self._class_votes.get(c, 0) + 1
        self._class_last[c] = frame
        if self.state is TrackState.LOST:
            self.state = TrackState.CONFIRMED

    def confirm(self, track_id: int) -> None:
        self.track_id = track_id
        self.state = TrackState.CONFIRMED

    def miss(self) -> None:
        """No detection this frame: tentative tracks end, confirmed ones become lost."""
        self.time_since_update += 1
        self.hit_streak = 0
        if self.state is TrackState.TENTATIVE:
            self.state = TrackState.REMOVED
        elif self.state is TrackState.CONFIRMED:
            self.state = TrackState.LOST

    def output(self, frame: int) -> TrackedBox:
        assert self.track_id is not None, "only confirmed tracks are reported"
        return TrackedBox(self.track_id, self.box, self.score, self.class_id, self.age(frame))

    def __repr__(self) -> str:
        return (
            f"Track(uid={self.uid}, id={self.track_id}, {self.state.value}, hits={self.hits}, "
            f"missed={self.time_since_update}, box={tuple(round(v, 1) for v in self.box)})"
        )


def _box(box: NDArray[np.floating]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
    return (x1, y1, x2, y2)
