"""Decoder backends behind one small ``Capture`` interface: OpenCV (FFmpeg through
``cv2.VideoCapture``) and PyAV (FFmpeg's libraries packet by packet).

``VideoSource`` (``edge_client.source``) drives a ``Capture``: ``read`` returns the next
``Decoded`` frame or None at the end of the stream (or after a read timeout). A camera's
``decoder:`` picks the backend (``DECODERS``):

- ``pyav`` (the CPU default): demuxes and decodes each packet itself, so it can *count*
  what it skips. A packet the demuxer or the decoder refuses is counted
  (``corrupt_packets`` / ``decode_errors``) and decoding goes on with the next one; a frame
  FFmpeg decoded with concealed errors is marked ``corrupt`` (the camera loop tracks it but
  never reads a plate from it). Frames carry their presentation time (``pts``; the source
  still times file frames by index / frame rate).
- ``opencv``: ``cv2.VideoCapture``; FFmpeg conceals errors silently (nothing counted) and
  frame times are ``index / fps``.

Both honour ``StreamTimeouts`` for RTSP: the open deadline (connect + first packets) and
the read deadline (a stall mid-stream ends the stream, and the source reconnects).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

log = logging.getLogger("ovr_alpr.decoders")


class SourceKind(StrEnum):
    FILE = "file"  # a video file: not real time, resumable
    RTSP = "rtsp"  # rtsp:// or rtsps:// camera stream
    HTTP = "http"  # http(s):// stream (MJPEG, HLS)
    V4L2 = "v4l2"  # /dev/videoN or a device number


def source_kind(source: str) -> SourceKind:
    """Which kind of source a camera's ``source:`` string names."""
    s = source.lower()
    if s.startswith(("rtsp://", "rtsps://")):
        return SourceKind.RTSP
    if s.startswith(("http://", "https://")):
        return SourceKind.HTTP
    if s.startswith("/dev/video") or s.isdigit():
        return SourceKind.V4L2
    return SourceKind.FILE


@dataclass(frozen=True)
class StreamTimeouts:
    """Bounds on a live stream: connecting + first packets, and each read after that."""

    open_s: float = 5.0
    read_s: float = 5.0

    def capture_params(self) -> list[int]:
        """``cv2.VideoCapture`` params: OpenCV's own open/read deadlines (its default: 30 s)."""
        return [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(self.open_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(self.read_s * 1000),
        ]  # fmt: skip

    def ffmpeg_options(self) -> str:
        """``OPENCV_FFMPEG_CAPTURE_OPTIONS`` for RTSP: TCP, socket I/O timeout in µs (FFmpeg 5)."""
        return f"rtsp_transport;tcp|timeout;{round(self.read_s * 1_000_000)}"

    def av_options(self) -> dict[str, str]:
        """FFmpeg options for ``av.open`` of an RTSP URL: TCP, socket I/O timeout in µs."""
        return {"rtsp_transport": "tcp", "timeout": str(round(self.read_s * 1_000_000))}


@dataclass(frozen=True)
class Decoded:
    """One decoded frame: BGR uint8, its presentation time (s) when the container gives
    one, and whether FFmpeg reported it decoded with (concealed) errors."""

    image: np.ndarray
    pts: float | None = None
    corrupt: bool = False


@dataclass
class DecodeStats:
    """What a capture skipped or flagged (PyAV; OpenCV counts nothing)."""

    corrupt_packets: int = 0  # packets the demuxer flagged or refused
    decode_errors: int = 0  # packets the decoder refused (no frame from them)
    corrupt_frames: int = 0  # frames decoded with concealed errors


class Capture(Protocol):
    """An open stream, read frame by frame by one thread."""

    fps: float  # nominal frame rate (25 when the container does not say)
    stats: DecodeStats

    def read(self) -> Decoded | None:
        """The next frame; None at the end of the stream or on a read failure."""
        ...

    def seek_frame(self, index: int) -> int:
        """Position before frame ``index`` (files); returns the index reached."""
        ...

    def release(self) -> None: ...


def _sane_fps(fps: float | None) -> float:
    return float(fps) if fps is not None and 1.0 <= float(fps) <= 240.0 else 25.0


# --- OpenCV --------------------------------------------------------------------------------
class OpenCVCapture:
    """``cv2.VideoCapture`` behind ``Capture``."""

    def __init__(self, cap: cv2.VideoCapture) -> None:
        self.cap = cap
        self.fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS) or None)
        self.stats = DecodeStats()

    def read(self) -> Decoded | None:
        ok, image = self.cap.read()
        return Decoded(image) if ok and image is not None else None

    def seek_frame(self, index: int) -> int:
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        return int(self.cap.get(cv2.CAP_PROP_POS_FRAMES))

    def release(self) -> None:
        self.cap.release()


_FFMPEG_OPTIONS_LOCK = threading.Lock()  # OpenCV reads its options from the environment


def open_opencv(source: str, timeouts: StreamTimeouts) -> OpenCVCapture | None:
    kind = source_kind(source)
    if kind is SourceKind.RTSP:
        with _FFMPEG_OPTIONS_LOCK:  # set per capture: cameras may differ
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = timeouts.ffmpeg_options()
            cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, timeouts.capture_params())
    elif kind is SourceKind.V4L2 and source.isdigit():
        cap = cv2.VideoCapture(int(source))
    else:
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        return None
    return OpenCVCapture(cap)


# --- PyAV ----------------------------------------------------------------------------------
MAX_CONSECUTIVE_ERRORS = 200  # refused packets in a row before a stream counts as ended


class PyAVCapture:
    """PyAV (FFmpeg's libraries) behind ``Capture``: one packet at a time, errors counted."""

    def __init__(self, container: Any, av: Any) -> None:
        self.av, self.container = av, container
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"  # frame + slice threads
        self.fps = _sane_fps(self.stream.average_rate and float(self.stream.average_rate))
        self.stats = DecodeStats()
        self._packets = container.demux(self.stream)
        self._pending: Iterator[Any] = iter(())
        self._start = float(self.stream.start_time * self.stream.time_base) if (
            self.stream.start_time is not None and self.stream.time_base is not None
        ) else 0.0  # fmt: skip
        self._skip_before: float | None = None  # after a seek: drop frames before this time

    def _next_packet(self) -> Any | None:
        errors = 0
        while errors < MAX_CONSECUTIVE_ERRORS:
            try:
                return next(self._packets)
            except StopIteration:
                return None
            except self.av.error.ExitError:  # the read deadline (interrupt callback)
                return None
            except self.av.error.EOFError:
                return None
            except (self.av.error.InvalidDataError, ValueError):
                # a demux error ends PyAV's packet generator: count it and go on reading
                # from where the demuxer stopped with a new one
                self.stats.corrupt_packets += 1
                errors += 1
                self._packets = self.container.demux(self.stream)
            except IndexError:  # PyAV's end-of-file flush, after corrupt data made the
                # demuxer add a stream; a new generator flushes only ours
                errors += 1
                self._packets = self.container.demux(self.stream)
            except OSError:  # network errors, timeouts (ETIMEDOUT): the stream is gone
                return None
        log.warning("%d undemuxable packets in a row: ending the stream", errors)
        return None

    def _frames(self) -> Iterator[Any] | None:
        """The frames of the next decodable packet (an empty packet flushes the decoder)."""
        errors = 0
        while errors < MAX_CONSECUTIVE_ERRORS:
            packet = self._next_packet()
            if packet is None:
                return None
            if packet.is_corrupt:
                self.stats.corrupt_packets += 1
            try:
                return iter(packet.decode())
            except self.av.error.EOFError:
                return None
            except self.av.error.FFmpegError:
                self.stats.decode_errors += 1
                errors += 1
        log.warning("%d undecodable packets in a row: ending the stream", errors)
        return None

    def read(self) -> Decoded | None:
        while True:
            frame = next(self._pending, None)
            if frame is None:
                frames = self._frames()
                if frames is None:
                    return None
                self._pending = frames
                continue
            t = None if frame.time is None else float(frame.time) - self._start
            if self._skip_before is not None and t is not None and t < self._skip_before:
                continue
            self._skip_before = None
            corrupt = bool(getattr(frame, "is_corrupt", False))
            if corrupt:
                self.stats.corrupt_frames += 1
            return Decoded(frame.to_ndarray(format="bgr24"), t, corrupt)

    def seek_frame(self, index: int) -> int:
        if index <= 0:
            return 0
        target = index / self.fps
        tb = self.stream.time_base
        try:
            offset = int((target + self._start) / tb) if tb else int(target * 1_000_000)
            self.container.seek(offset, stream=self.stream, backward=True, any_frame=False)
        except self.av.error.FFmpegError as exc:
            log.warning("seek to frame %d failed (%s): decoding from the start", index, exc)
            return 0
        self._packets = self.container.demux(self.stream)
        self._pending = iter(())
        self._skip_before = target - 0.5 / self.fps
        return index

    def release(self) -> None:
        try:
            self.container.close()
        except Exception as exc:  # a broken stream may fail to close: nothing left to do
            log.debug("closing a PyAV container: %s", exc)


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def open_pyav(source: str, timeouts: StreamTimeouts) -> PyAVCapture | None:
    import av

    kind = source_kind(source)
    options: dict[str, str] = {}
    kwargs: dict[str, Any] = {}
    if kind is SourceKind.RTSP:
        options = timeouts.av_options()
        kwargs["timeout"] = (timeouts.open_s, timeouts.read_s)
    elif kind is SourceKind.HTTP:
        kwargs["timeout"] = (timeouts.open_s, timeouts.read_s)
    elif kind is SourceKind.V4L2:
        kwargs["format"] = "v4l2"
        source = f"/dev/video{source}" if source.isdigit() else source
    try:
        container = av.open(source, mode="r", options=options, **kwargs)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.debug("PyAV cannot open the source: %s", exc)
        return None
    if not container.streams.video:
        container.close()
        return None
    return PyAVCapture(container, av)


class Decoder(StrEnum):
    PYAV = "pyav"
    OPENCV = "opencv"


DECODERS: dict[Decoder, Callable[[str, StreamTimeouts], Capture | None]] = {
    Decoder.PYAV: open_pyav,
    Decoder.OPENCV: open_opencv,
}


def cpu_decoder(preference: str) -> Decoder:
    """The CPU backend for a camera's ``decoder:`` (``auto``/``cpu``: PyAV when installed)."""
    if preference in (Decoder.PYAV, Decoder.OPENCV):
        return Decoder(preference)
    return Decoder.PYAV if pyav_available() else Decoder.OPENCV


def file_problem(source: str) -> str | None:
    """Why a file source cannot be read, judged without decoding: missing, empty, ..."""
    path = Path(source)
    if not path.exists():
        return "file does not exist"
    if not path.is_file():
        return "not a regular file"
    if path.stat().st_size == 0:
        return "file is empty (0 bytes)"
    if not os.access(path, os.R_OK):
        return "file is not readable (permission denied)"
    return None
