"""Frame sources: decoder selection (NVDEC or CPU), files, RTSP and V4L2 with reconnects.

A source runs in its own thread and pushes frames into a bounded queue. Live sources
never wait on the consumer: when the queue is full the frame is dropped and counted.
File sources are not real time, so they wait for the consumer instead of dropping (set
``realtime=True`` to play a file as if it were a camera).

Contracts: ``Source`` (what the camera loop drives: ``start``/``stop``, ``live``,
``stats``) and ``SourceFactory`` (what the loop is given: it opens the source at a frame
and says whether a restart may resume). ``source_kind`` tells a camera's ``source:`` string
apart (file, RTSP, HTTP, V4L2 device). ``VideoSourceFactory`` is the real factory; it
decodes with the camera's CPU backend (``edge_client.decoders``: PyAV or OpenCV), and
``edge_client.streams`` pairs two of them (detect on the sub-stream, read on the main one).

Failures are reported through ``SourceStats``, never only in the log: ``open_error`` says
why the last open failed (``file_problem`` names a missing / empty / unreadable file, else
it is not a video). A file that cannot be opened ends the source with ``open_error`` set;
a live source retries with backoff and clears it once it is open again. RTSP opens and
reads are bounded by ``StreamTimeouts`` (OpenCV's open/read timeouts plus FFmpeg 5's
``timeout`` socket option, which replaced the removed ``stimeout``; PyAV's open/read
deadlines). Corrupt data is counted in ``SourceStats.decode`` (PyAV) and decoding goes on.
"""

from __future__ import annotations

import importlib.util
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from alpr_common.backoff import Backoff

from .contracts import Frame
from .decoders import (
    DECODERS,
    Capture,
    Decoder,
    DecodeStats,
    SourceKind,
    StreamTimeouts,
    file_problem,
    source_kind,
)

__all__ = [
    "END",
    "NOT_A_VIDEO",
    "RECONNECT",
    "Decoder",
    "Source",
    "SourceFactory",
    "SourceKind",
    "SourceStats",
    "StreamTimeouts",
    "VideoSource",
    "VideoSourceFactory",
    "file_problem",
    "is_live",
    "probe_file",
    "select_decoder",
    "shown",
    "source_kind",
]

log = logging.getLogger("ovr_alpr.source")


END = None  # sentinel put on the queue when a finite source ends
RECONNECT = Backoff(first=0.5, cap=30.0)  # a live source's reopen delays
DEFAULT_TIMEOUTS = StreamTimeouts()


def is_live(source: str) -> bool:
    return source_kind(source) is not SourceKind.FILE


def shown(source: str) -> str:
    """``source`` fit for logs and messages: credentials in rtsp://user:pass@host hidden."""
    if "@" in source and "://" in source:
        scheme, rest = source.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return source


def nvidia_gpu_present() -> bool:
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/version").exists()


def nvdec_available() -> bool:
    return nvidia_gpu_present() and importlib.util.find_spec("PyNvVideoCodec") is not None


def select_decoder(preference: str, available: Callable[[], bool] = nvdec_available) -> str:
    """'nvdec' or 'cpu' for a camera's ``decoder`` setting ('auto', 'nvdec', 'cpu')."""
    if preference == "cpu":
        return "cpu"
    if available():
        return "nvdec"
    if preference == "nvdec":
        log.warning("decoder 'nvdec' requested but no NVIDIA GPU + PyNvVideoCodec: using CPU")
    return "cpu"


@dataclass
class SourceStats:
    decoded: int = 0
    skipped: int = 0  # not selected by process_every / max_fps
    dropped: int = 0  # queue full (live sources only)
    reconnects: int = 0
    errors: int = 0
    lost: int = 0  # a live stream that ended or stalled past the read timeout (then reopened)
    open_error: str | None = None  # why the last open failed; None while open / never tried
    decode: DecodeStats = field(default_factory=DecodeStats)  # corrupt data skipped/flagged


NOT_A_VIDEO = "not a video (FFmpeg cannot open it)"


def probe_file(source: str, decoder: Decoder = Decoder.OPENCV) -> str | None:
    """Why a file source cannot be opened (``file_problem``, else not a video), or None."""
    problem = file_problem(source)
    if problem is not None:
        return problem
    cap = DECODERS[decoder](source, StreamTimeouts())
    if cap is None:
        return NOT_A_VIDEO
    cap.release()
    return None


class Source(Protocol):
    """A started source pushes ``Frame``s, then ``END``, into the queue it was given."""

    @property
    def live(self) -> bool:
        """Real time: frames are dropped (not waited for) when the consumer is behind."""
        ...

    @property
    def stats(self) -> SourceStats: ...

    def start(self) -> Source: ...

    def stop(self) -> None: ...


class SourceFactory(Protocol):
    """Opens a camera's source; the camera loop receives one (tests pass a fake)."""

    @property
    def resumable(self) -> bool:
        """Whether a restarted client may resume at its saved frame (a non-looping file)."""
        ...

    def __call__(self, camera: str, out: queue.Queue[Frame | None], start_frame: int) -> Source: ...


class VideoSource:
    """CPU decoding with OpenCV (FFmpeg): files, RTSP, V4L2 devices."""

    def __init__(
        self,
        camera: str,
        source: str,
        out: queue.Queue[Frame | None],
        *,
        process_every: int = 1,
        max_fps: float | None = None,
        start_frame: int = 0,
        loop: bool = False,
        realtime: bool | None = None,
        backoff: Backoff = RECONNECT,
        max_reconnects: int | None = None,
        timeouts: StreamTimeouts = DEFAULT_TIMEOUTS,
        decoder: Decoder = Decoder.OPENCV,
        speed: float = 1.0,
    ) -> None:
        self.camera, self.source, self.out = camera, source, out
        self.speed = speed  # a real-time file: media seconds per wall second
        self.decoder = decoder
        self.process_every, self.max_fps = process_every, max_fps
        self.start_frame, self.loop = start_frame, loop
        self.live = is_live(source)
        self.realtime = self.live if realtime is None else realtime
        self.backoff, self.max_reconnects = backoff, max_reconnects
        self.timeouts = timeouts
        self.stats = SourceStats()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"source-{camera}", daemon=True)
        self.time_offset = 0.0  # media time of previous passes over a looping file
        self.index_offset = 0

    def start(self) -> VideoSource:
        log.info("camera %s: decoding %s on the CPU (%s)", self.camera, self._shown(), self.decoder)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()

    def _shown(self) -> str:
        return shown(self.source)

    def _put(self, frame: Frame | None) -> None:
        if frame is None or not self.realtime:
            while not self.stop_event.is_set():
                try:
                    self.out.put(frame, timeout=0.2)
                    return
                except queue.Full:
                    continue
            return
        try:
            self.out.put_nowait(frame)
        except queue.Full:
            self.stats.dropped += 1

    def _run(self) -> None:
        delays = self.backoff.delays()
        attempts = 0
        try:
            while not self.stop_event.is_set():
                cap = DECODERS[self.decoder](self.source, self.timeouts)
                if cap is None:
                    self.stats.errors += 1
                    if not self.live:
                        self.stats.open_error = file_problem(self.source) or NOT_A_VIDEO
                        log.error(
                            "camera %s: cannot open %s: %s",
                            self.camera, self._shown(), self.stats.open_error,
                        )  # fmt: skip
                        break
                    attempts += 1
                    self.stats.open_error = (
                        f"no stream within {self.timeouts.open_s:g}s ({attempts} attempts)"
                    )
                    if self.max_reconnects is not None and attempts > self.max_reconnects:
                        log.error(
                            "camera %s: giving up after %d attempts", self.camera, attempts - 1
                        )
                        break
                    delay = next(delays)
                    log.warning(
                        "camera %s: cannot open source, retrying in %.1fs", self.camera, delay
                    )
                    self.stop_event.wait(delay)
                    continue
                self.stats.open_error = None
                cap.stats = self.stats.decode  # counted across reconnects
                if attempts:
                    self.stats.reconnects += 1
                    log.info("camera %s: reconnected", self.camera)
                attempts, delays = 0, self.backoff.delays()
                ended = self._read_all(cap)
                lost = self.live and not self.stop_event.is_set()
                if lost:  # counted before release: closing a stalled stream takes a timeout
                    self.stats.lost += 1
                    log.warning("camera %s: stream lost, reconnecting", self.camera)
                cap.release()
                if ended and not self.live and not self.loop:
                    break
                if ended and self.loop:
                    self.start_frame = 0  # timestamps and indices keep increasing
                    continue
        finally:
            self._put(END)

    def _read_all(self, cap: Capture) -> bool:
        """Read until the stream ends (True) or stop is requested (False)."""
        fps = cap.fps
        index = 0
        if not self.live and self.start_frame > 0:
            index = cap.seek_frame(self.start_frame)
        min_gap = 1.0 / self.max_fps if self.max_fps else 0.0
        last_media = -1e9
        paced = self.realtime and not self.live  # a file played as a camera
        wall0 = time.monotonic() - index / fps / self.speed
        while not self.stop_event.is_set():
            if paced:  # each frame at its media time (scaled by speed)
                self.stop_event.wait(max(0.0, wall0 + index / fps / self.speed - time.monotonic()))
            t0 = time.monotonic()
            decoded = cap.read()
            stalled = self.live and time.monotonic() - t0 >= self.timeouts.read_s
            if stalled:  # FFmpeg's read timed out; the decoder would hand out the frames it
                # still holds, one per timeout: drop the stream now instead of after each
                log.warning("camera %s: no frame for %.1fs", self.camera, self.timeouts.read_s)
            if stalled or decoded is None:
                self.time_offset += index / fps
                self.index_offset += index
                return True
            self.stats.decoded += 1
            media_t = index / fps
            timestamp = time.time() if self.live else self.time_offset + media_t
            selected = index % self.process_every == 0 and (media_t - last_media) >= min_gap - 1e-9
            if selected:
                last_media = media_t
                self._put(
                    Frame(
                        self.camera, self.index_offset + index, timestamp, decoded.image,
                        corrupt=decoded.corrupt,
                    )
                )  # fmt: skip
            else:
                self.stats.skipped += 1
            index += 1
        return False


@dataclass(frozen=True)
class VideoSourceFactory:
    """The real ``SourceFactory``: a ``VideoSource`` for any ``SourceKind``."""

    url: str
    process_every: int = 1
    max_fps: float | None = None
    loop: bool = False
    timeouts: StreamTimeouts = DEFAULT_TIMEOUTS
    decoder: Decoder = Decoder.OPENCV
    realtime: bool = False  # a file played at its frame rate (times speed), as a camera
    speed: float = 1.0

    @property
    def kind(self) -> SourceKind:
        return source_kind(self.url)

    @property
    def resumable(self) -> bool:
        return self.kind is SourceKind.FILE and not self.loop

    def __call__(self, camera: str, out: queue.Queue[Frame | None], start_frame: int) -> Source:
        return VideoSource(
            camera, self.url, out, process_every=self.process_every, max_fps=self.max_fps,
            start_frame=start_frame, loop=self.loop, timeouts=self.timeouts, decoder=self.decoder,
            realtime=self.realtime or None, speed=self.speed,
        )  # fmt: skip
