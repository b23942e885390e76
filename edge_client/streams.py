"""Two streams per camera, as an NVR does: detect and track on the sub-stream, read the
plate from the main stream.

``PairedSource`` runs two sources: the detect stream (``source:``, the camera's
low-resolution sub-stream) drives the loop; the read stream (``read_source:``, the
full-resolution main stream) is decoded beside it into a short buffer. Each detect frame
leaves with ``Frame.read_image`` set to the read frame closest in time, when one lies
within ``max_drift_s`` (``FrameMatcher``); otherwise it leaves without one, is counted
(``unmatched``), and the loop crops from the sub-stream frame as with one stream. The
loop scales each box by the two frames' sizes (``scale_box``).

Times: files are matched on media time (frame index / frame rate);
live streams on arrival time, which bounds the drift by the two decoders' latency
difference (a camera's RTCP sender reports are not exposed by FFmpeg's demuxer).
A file's read stream is not real time: the matcher waits for it (nothing dropped); a live
read stream never holds back the detect stream.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from .contracts import Box, Frame
from .source import END, Source, SourceFactory, SourceStats

log = logging.getLogger("ovr_alpr.streams")


def scale_box(box: Box, src: tuple[int, ...], dst: tuple[int, ...]) -> Box:
    """``box`` in a frame of shape ``src`` (h, w, ...) mapped to a frame of shape ``dst``."""
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


@dataclass
class MatchStats:
    matched: int = 0
    unmatched: int = 0  # no read frame within max_drift_s
    drift_max_s: float = 0.0  # the largest |dt| of a matched pair
    read_ended: bool = False  # the read stream ended (files) or is being reopened


class FrameMatcher:
    """Pairs times with the closest buffered read frame (pure logic, one thread)."""

    def __init__(self, max_drift_s: float, buffer: int = 8) -> None:
        if max_drift_s < 0 or buffer < 1:
            raise ValueError(f"max_drift_s >= 0 and buffer >= 1, got {max_drift_s}, {buffer}")
        self.max_drift_s = max_drift_s
        self.frames: deque[tuple[float, np.ndarray]] = deque(maxlen=buffer)
        self.stats = MatchStats()

    def push(self, timestamp: float, image: np.ndarray) -> None:
        self.frames.append((timestamp, image))

    def newest(self) -> float | None:
        return self.frames[-1][0] if self.frames else None

    def match(self, timestamp: float) -> np.ndarray | None:
        """The buffered image closest to ``timestamp`` within the drift bound, else None
        (counted). Frames older than the match are dropped: times only go forward."""
        best: tuple[float, int] | None = None
        for i, (t, _) in enumerate(self.frames):
            dt = abs(t - timestamp)
            if best is None or dt < best[0]:
                best = (dt, i)
        if best is None or best[0] > self.max_drift_s + 1e-9:
            self.stats.unmatched += 1
            return None
        dt, i = best
        image = self.frames[i][1]
        for _ in range(i):
            self.frames.popleft()
        self.stats.matched += 1
        self.stats.drift_max_s = max(self.stats.drift_max_s, dt)
        return image


class PairedSource:
    """``Source`` of detect frames carrying their matched read frame (see the module)."""

    def __init__(
        self,
        camera: str,
        detect: SourceFactory,
        read: SourceFactory,
        out: queue.Queue[Frame | None],
        start_frame: int,
        *,
        max_drift_s: float,
        buffer: int,
    ) -> None:
        self.camera, self.out = camera, out
        self._dq: queue.Queue[Frame | None] = queue.Queue(maxsize=max(2, out.maxsize or 8))
        self._rq: queue.Queue[Frame | None] = queue.Queue(maxsize=buffer)
        self.detect = detect(camera, self._dq, start_frame)
        self.read = read(f"{camera}/read", self._rq, start_frame)
        self.matcher = FrameMatcher(max_drift_s, buffer)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"pair-{camera}", daemon=True)

    @property
    def live(self) -> bool:
        return self.detect.live

    @property
    def stats(self) -> SourceStats:
        return self.detect.stats

    @property
    def read_stats(self) -> SourceStats:
        return self.read.stats

    def start(self) -> PairedSource:
        self.read.start()
        self.detect.start()
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.detect.stop()
        self.read.stop()

    def _pull(self, block_until: float | None) -> bool:
        """Move read frames into the matcher: (live) all that are queued; (files) until one
        is at or past ``block_until``, waiting for it, and no further: the rest wait in
        their queue, else a slow loop would let the buffer run ahead of the detect stream.
        False once the read stream has ended."""
        while not self._stop.is_set():
            newest = self.matcher.newest()
            need = block_until is not None and (newest is None or newest < block_until)
            if block_until is not None and not need:
                return True
            try:
                item = self._rq.get(timeout=0.2) if need else self._rq.get_nowait()
            except queue.Empty:
                if need:
                    continue
                return True
            if item is END:
                self.matcher.stats.read_ended = True
                return False
            self.matcher.push(item.timestamp, item.image)
        return True

    def _run(self) -> None:
        live = self.read.live
        read_open = True
        try:
            while not self._stop.is_set():
                try:
                    frame = self._dq.get(timeout=0.2)
                except queue.Empty:
                    continue
                if frame is END:
                    break
                if read_open:  # a file's read stream is waited for; a live one is not
                    target = None if live else frame.timestamp + self.matcher.max_drift_s
                    read_open = self._pull(target)
                image = None if frame.corrupt else self.matcher.match(frame.timestamp)
                self._put(replace(frame, read_image=image))
        finally:
            self._put(END)

    def _put(self, frame: Frame | None) -> None:
        while not self._stop.is_set() or frame is END:
            try:
                self.out.put(frame, timeout=0.2)
                return
            except queue.Full:
                if frame is END and self._stop.is_set():
                    return
                continue


@dataclass(frozen=True)
class PairedSourceFactory:
    """``SourceFactory`` of ``PairedSource``: the detect and read streams' own factories."""

    detect: SourceFactory
    read: SourceFactory
    max_drift_s: float = 0.1
    buffer: int = 8

    @property
    def resumable(self) -> bool:
        return self.detect.resumable and self.read.resumable

    def __call__(self, camera: str, out: queue.Queue[Frame | None], start_frame: int) -> Source:
        return PairedSource(
            camera, self.detect, self.read, out, start_frame,
            max_drift_s=self.max_drift_s, buffer=self.buffer,
        )  # fmt: skip
