"""The camera loop's zone stage: which frames are detected, which pixels the detector
sees, which detections are kept, and each track's zone fields (direction, dwell).

``ZoneFilter`` wraps the camera's ``zone:`` (polygon, counting line, idle rate) or, without
one, its ``roi:`` rectangle. Per frame the loop asks ``skip`` (an empty zone is detected on
one frame in ``idle_every``), cuts the detector input with ``detector_input`` and filters
the detections with ``keep`` (box centre inside the polygon or the roi), then reports the
frame's tracks with ``observe``. Detection, not motion, decides occupancy: any detection,
even one not yet a track, keeps every frame counting, with one frame of grace after the
last one (a missed detection is not an empty zone). Pure logic: no I/O, no clock; times
are frame timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_client.config import Roi, Zone
from edge_client.contracts import Detections, Frame, TrackedBox

from .tracker import ZoneGeometry, ZoneTracker

FULL_FRAME = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class ZoneFields:
    """A track's zone fields on its events (both None without a zone)."""

    direction: str | None = None  # "entry" / "exit" across the counting line
    dwell_s: float | None = None


class ZoneFilter:
    """One camera's zone stage (see the module docstring); owned by the camera loop."""

    def __init__(self, zone: Zone | None, roi: Roi) -> None:
        self.zone, self.roi = zone, roi
        self.tracker: ZoneTracker | None = None  # built on the first frame (needs its size)
        self._busy = True  # a vehicle (even a tentative one) is in the zone
        self._seen = 0

    # --- before detection ------------------------------------------------------------
    def skip(self, frame: Frame) -> bool:
        """True for a frame not worth detecting: the zone is empty and this is not the
        one frame in ``idle_every`` that is still looked at."""
        zone = self.zone
        if zone is None:
            return False
        if self.tracker is None:
            h, w = frame.image.shape[:2]
            self.tracker = ZoneTracker(ZoneGeometry(zone, w, h), zone.entry)
        self._seen += 1
        if self._busy or zone.idle_every <= 1:
            return False
        return self._seen % zone.idle_every != 0

    def may_skip(self) -> bool:
        """Whether ``skip`` may say True for the next frame: the zone is empty (as of the
        last detected frame) and it skips frames. The loop tracks the frames in flight
        before asking ``skip`` then, so the answer rests on every earlier frame."""
        zone = self.zone
        return zone is not None and zone.idle_every > 1 and not self._busy

    def detector_input(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """The pixels to detect on and their offset in the frame: the zone's padded
        bounding box with ``crop_detection``, else the whole frame."""
        if self.tracker is None or self.zone is None or not self.zone.crop_detection:
            return image, (0, 0)
        x1, y1, x2, y2 = self.tracker.geometry.detect_rect()
        return np.ascontiguousarray(image[y1:y2, x1:x2]), (x1, y1)

    # --- after detection -------------------------------------------------------------
    def keep(self, dets: Detections, offset: tuple[int, int], hw: tuple[int, int]) -> Detections:
        """Detections moved back to frame pixels (``offset``), only those whose box centre
        is in the zone polygon (or the ``roi``); ``hw`` is the frame's height and width."""
        ox, oy = offset
        if (ox or oy) and len(dets):
            shift = np.array([ox, oy, ox, oy], np.float32)
            dets = Detections(dets.boxes + shift, dets.scores, dets.classes, dets.labels)
        if len(dets) == 0:
            return dets
        roi = self.roi
        if self.tracker is not None:
            geo = self.tracker.geometry
            keep = np.array([geo.contains(tuple(map(float, b))) for b in dets.boxes], bool)
        elif (roi.x1, roi.y1, roi.x2, roi.y2) == FULL_FRAME:
            return dets
        else:
            h, w = hw
            cx = (dets.boxes[:, 0] + dets.boxes[:, 2]) / 2 / w
            cy = (dets.boxes[:, 1] + dets.boxes[:, 3]) / 2 / h
            keep = (cx >= roi.x1) & (cx <= roi.x2) & (cy >= roi.y1) & (cy <= roi.y2)
        labels = tuple(lbl for lbl, k in zip(dets.labels, keep, strict=False) if k)
        return Detections(dets.boxes[keep], dets.scores[keep], dets.classes[keep], labels)

    def observe(self, tracked: list[TrackedBox], detections: int, t: float) -> None:
        """One detected frame's tracks at time ``t``; ``detections`` is how many boxes the
        detector kept (occupied even before a detection becomes a track)."""
        zt = self.tracker
        if zt is None:
            return
        was_occupied = zt.occupied()
        for tb in tracked:
            zt.update(tb.track_id, tb.box, t)
        zt.frame_done({tb.track_id for tb in tracked}, t)
        self._busy = detections > 0 or was_occupied or zt.occupied()

    # --- per track -------------------------------------------------------------------
    def fields(self, track_id: int, now: float) -> ZoneFields:
        """The track's direction and dwell (up to ``now``) for its event."""
        st = self.tracker.state(track_id, now) if self.tracker is not None else None
        if st is None:
            return ZoneFields()
        return ZoneFields(st.direction.value if st.direction else None, st.dwell_s)

    def forget(self, track_id: int) -> None:
        if self.tracker is not None:
            self.tracker.forget(track_id)
