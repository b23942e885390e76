"""Result types and interfaces shared by the edge client's stages.

Data flow: source (Frame) -> detect (Detections) -> track (Track) -> read (PlateRead per
track) -> vote + post-process (PlateResult) -> cache (TrackState in Redis) -> sinks
(the camera event contract, ``edge_client.events``). Stages receive implementations of
these protocols so tests can pass fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from .events import Box, Direction

__all__ = [
    "Box",
    "Detections",
    "Direction",
    "Frame",
    "PlateResult",
    "Read",
    "TrackStatus",
    "TrackedBox",
    "Tracker",
]


@dataclass(frozen=True)
class Frame:
    """One decoded frame (BGR uint8) with its position in the stream."""

    camera: str
    index: int  # frame number in the source (0-based, counts skipped frames too)
    timestamp: float  # seconds (wall clock for live sources, media time for files)
    image: np.ndarray
    corrupt: bool = False  # decoded with concealed errors: tracked, never read from
    read_image: np.ndarray | None = None  # the matched main-stream frame (two streams)


@dataclass(frozen=True)
class Detections:
    """Parallel arrays for one frame: boxes xyxy [N, 4] (frame px), scores [N], classes [N]."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.classes.shape != (n,):
            raise ValueError(
                f"Detections arrays disagree: boxes {self.boxes.shape}, scores "
                f"{self.scores.shape}, classes {self.classes.shape}"
            )

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
        )


@dataclass(frozen=True)
class TrackedBox:
    """A tracker output for one frame: a confirmed track's id and current box."""

    track_id: int
    box: tuple[float, float, float, float]
    score: float
    class_id: int
    age: int  # frames since the track started (confirmed tracks only)


class Tracker(Protocol):
    def update(self, detections: Detections) -> list[TrackedBox]:
        """Associate one frame's detections; return the confirmed tracks present in it."""

    def removed(self) -> list[int]:
        """Ids of tracks dropped since the previous call (lost for too long)."""


@dataclass(frozen=True)
class Read:
    """One OCR read of a track (a vote)."""

    text: str  # normalised plate text (A-Z0-9)
    confidence: float
    char_confidences: tuple[float, ...] = ()
    frame: int = -1


@dataclass(frozen=True)
class PlateResult:
    """The winning plate for a track after voting and regional post-processing."""

    plate: str  # final text after format-guided correction
    raw_text: str  # what the recogniser read for the winning cluster's best read
    confidence: float
    region: str | None  # e.g. "eu", "uk", "us", "br"
    format: str | None  # the matching format's name, e.g. "uk_current"
    votes: int  # reads that agreed with the winner


class TrackStatus(StrEnum):
    PENDING = "pending"  # seen, not read yet (or a read is in flight)
    READ = "read"  # plate decided and reported
    NO_PLATE = "no_plate"  # read attempts exhausted without a plausible plate
