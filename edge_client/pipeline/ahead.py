"""Detection ahead of tracking: up to ``depth`` frames' detection requests in flight.

The camera loop sends a frame with ``send`` and takes results back, oldest first, with
``pop``; tracking stays one frame at a time and in frame order on the loop's thread, while
the server already works on the next frames (on 2 cores the loop's own work and the
request's round trip otherwise leave the model idle between frames). ``depth`` 1 runs the
detector inline on the loop's thread: no worker, the loop as it was.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from edge_client.contracts import Detections, Frame


@dataclass(frozen=True)
class Detected:
    """One frame's detector answer: its detections in the detector input's pixels, that
    input's offset in the frame (a zone's crop) and the call's duration."""

    detections: Detections
    offset: tuple[int, int]
    seconds: float


class DetectAhead:
    """The frames in flight, in order (see the module docstring)."""

    def __init__(self, depth: int, detect: Callable[[Frame], Detected]) -> None:
        if depth < 1:
            raise ValueError(f"detect_ahead must be >= 1, got {depth}")
        self.depth, self._detect = depth, detect
        self.window: deque[tuple[Frame, Future[Detected]]] = deque()
        self._pool = (
            ThreadPoolExecutor(depth, thread_name_prefix="detect-ahead") if depth > 1 else None
        )

    def full(self) -> bool:
        return len(self.window) >= self.depth

    def oldest_done(self) -> bool:
        return bool(self.window) and self.window[0][1].done()

    def send(self, frame: Frame) -> None:
        """Start detecting ``frame`` (inline with depth 1); its answer comes from ``pop``
        after those of every frame sent before it."""
        if self.full():
            raise RuntimeError("the detection window is full: pop the oldest frame first")
        if self._pool is not None:
            future = self._pool.submit(self._detect, frame)
        else:
            future = Future()
            try:
                future.set_result(self._detect(frame))
            except Exception as exc:  # the loop handles it when it pops the frame
                future.set_exception(exc)
        self.window.append((frame, future))

    def pop(self) -> tuple[Frame, Future[Detected]]:
        """The oldest frame in flight and its answer (``result()`` waits for it)."""
        return self.window.popleft()

    def clear(self) -> list[Frame]:
        """Forget every frame in flight (after an earlier one failed): wait for their
        answers, whatever they are, and return the frames in order."""
        frames = []
        while self.window:
            frame, future = self.window.popleft()
            future.exception()  # waits; the answer is dropped
            frames.append(frame)
        return frames

    def close(self) -> None:
        """Stop: requests not started are cancelled, those in flight end on their own."""
        self.window.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
