"""The camera loop's counters (the ``--summary`` JSON is ``asdict`` of them plus fps)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class PipelineStats:
    frames: int = 0  # frames run through detection
    detect_errors: int = 0  # consecutive (drives the backoff)
    detect_failures: int = 0  # total
    tracks: int = 0
    adopted: int = 0  # tracks matched to a vehicle reported before a restart
    reads: int = 0  # read requests (OCR calls per track)
    events: int = 0  # plate events emitted
    no_plate: int = 0  # tracks decided without a plausible plate
    duplicates: int = 0  # plate reports suppressed (track already reported / dedup window)
    read_failures: int = 0  # consecutive failed read requests (drives the read backoff)
    idle_skipped: int = 0  # frames not sent to the detector: zone empty (``zone.idle_every``)
    vehicle_events: int = 0
    enhanced: int = 0  # read crops sent through `crops.enhance`
    unread_saved: int = 0  # best crops of tracks that ended without a read (`unread_crops`)
    started: float = field(default_factory=time.monotonic)  # on the loop's monotonic clock
    first_frame_at: float | None = None  # when the first detected frame was tracked
    last_frame_at: float | None = None  # when the last one was

    def fps(self, now: float | None = None) -> float:
        """Detected frames per second since ``started``; ``now`` on the same clock."""
        now = time.monotonic() if now is None else now
        return self.frames / max(1e-6, now - self.started)

    def steady_fps(self) -> float | None:
        """Detected frames per second from the first tracked frame to the last: the
        running rate, without start-up (connections, the first request) and the end's
        wait for the last reads; None before two frames."""
        if self.first_frame_at is None or self.last_frame_at is None or self.frames < 2:
            return None
        return (self.frames - 1) / max(1e-6, self.last_frame_at - self.first_frame_at)
