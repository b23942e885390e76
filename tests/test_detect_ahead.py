"""DetectAhead: frames come back in the order sent, at most ``depth`` detections run at
once, and a failure reaches the loop through its frame's answer."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge_client.contracts import Detections, Frame
from edge_client.pipeline.ahead import DetectAhead, Detected


def frame(i: int) -> Frame:
    return Frame("cam", i, i / 10, np.zeros((4, 4, 3), np.uint8))


class SlowDetector:
    """Takes longer on even frames (answers finish out of order); counts how many calls
    overlap; ``fail`` frames raise."""

    def __init__(self, fail: frozenset[int] = frozenset(), together: int = 1) -> None:
        self.fail, self.lock = fail, threading.Lock()
        self.running = self.most = 0
        self.threads: set[str] = set()
        # the first ``together`` frames wait for each other: the window is filled however
        # slowly the machine starts the workers
        self.together = together
        self.start = threading.Barrier(together)

    def __call__(self, f: Frame) -> Detected:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            if f.index < self.together:
                self.start.wait(timeout=10)
            time.sleep(0.03 if f.index % 2 == 0 else 0.005)
            if f.index in self.fail:
                raise ConnectionError(f"frame {f.index}: detector unreachable")
            return Detected(Detections.empty(), (f.index, 0), 0.0)
        finally:
            with self.lock:
                self.running -= 1


def drive(ahead: DetectAhead, frames: int) -> list[tuple[int, str]]:
    """The loop's use: send while there is room, else take the oldest answer."""
    out: list[tuple[int, str]] = []
    todo = list(range(frames))
    while todo or ahead.window:
        if todo and not ahead.full():
            ahead.send(frame(todo.pop(0)))
            continue
        f, fut = ahead.pop()
        exc = fut.exception()
        out.append((f.index, "failed" if exc else f"offset{fut.result().offset[0]}"))
    return out


@pytest.mark.parametrize("depth", [1, 2, 3, 8])
def test_answers_in_order_and_at_most_depth_at_once(depth: int) -> None:
    det = SlowDetector(fail=frozenset({3}), together=min(depth, 12))
    ahead = DetectAhead(depth, det)
    try:
        got = drive(ahead, 12)
    finally:
        ahead.close()
    want = [(i, "failed" if i == 3 else f"offset{i}") for i in range(12)]
    assert got == want  # each frame's own answer, in frame order
    assert det.most == min(depth, 12)  # the window is used, never exceeded
    if depth == 1:  # inline: the loop's own thread, no worker
        assert det.threads == {threading.current_thread().name}
    else:
        assert all(t.startswith("detect-ahead") for t in det.threads)


def test_send_refuses_beyond_the_window_and_clear_returns_the_frames_in_order() -> None:
    ahead = DetectAhead(2, SlowDetector())
    try:
        ahead.send(frame(0))
        ahead.send(frame(1))
        assert ahead.full()
        with pytest.raises(RuntimeError, match="full"):
            ahead.send(frame(2))
        assert [f.index for f in ahead.clear()] == [0, 1]
        assert not ahead.window and not ahead.oldest_done()
    finally:
        ahead.close()


def test_depth_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="detect_ahead"):
        DetectAhead(0, SlowDetector())
