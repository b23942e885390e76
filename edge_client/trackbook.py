"""Per-track bookkeeping: best frame so far, when to read, when to decide.

Owned by the pipeline's main loop only (one owner, no locks). Pure logic apart from the
crop quality measure, so the read policy is table-testable without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .config import Thresholds
from .contracts import Box, Read, TrackedBox, TrackStatus


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian on a fixed-height grey copy (size-independent)."""
    if image.size == 0:
        return 0.0
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    h = grey.shape[0]
    if h > 96:
        grey = cv2.resize(
            np.asarray(grey),
            (max(1, round(grey.shape[1] * 96 / h)), 96),
            interpolation=cv2.INTER_AREA,
        )
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


# After a read that found no text, a crop of another frame this good relative to the one
# read replaces it (see ``TrackRecord.offer_crop``).
REREAD_MIN_QUALITY = 0.8


def crop_quality(box: Box, crop: np.ndarray) -> float:
    """Bigger and sharper is better; sharpness saturates so size still counts."""
    h = max(1.0, box[3] - box[1])
    w = max(1.0, box[2] - box[0])
    return float(np.sqrt(w * h) * min(1.0, 0.2 + sharpness(crop) / 500.0))


def crop_box(image: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """A view (no copy) of ``box`` grown by ``margin`` of its size, clipped to the image."""
    h, w = image.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    x1 = int(max(0, box[0] - margin * bw))
    y1 = int(max(0, box[1] - margin * bh))
    x2 = int(min(w, box[2] + margin * bw))
    y2 = int(min(h, box[3] + margin * bh))
    return image[y1:y2, x1:x2]


@dataclass
class TrackRecord:
    """What this client knows about one track."""

    track_id: int
    key: str
    label: str
    first_seen: float
    first_frame: int
    first_box: Box
    first_wall: float
    last_seen: float = 0.0
    last_frame: int = 0
    box: Box = (0.0, 0.0, 0.0, 0.0)
    score: float = 0.0
    age: int = 0
    status: TrackStatus = TrackStatus.PENDING
    reads: list[Read] = field(default_factory=list)
    attempts: int = 0
    in_flight: bool = False
    retry_after: float = 0.0  # wall time before which no new read is sent (after errors)
    best_quality: float = 0.0
    best_crop: np.ndarray | None = None
    best_frame: int = -1
    best_box: Box = (0.0, 0.0, 0.0, 0.0)
    best_frame_image: np.ndarray | None = None  # the whole frame of the best crop (save_frame)
    quality_at_last_read: float = 0.0
    adopted: bool = False  # matched to a vehicle reported before a restart
    closing: bool = False  # the tracker dropped it; decide as soon as its reads are in
    plate: str = ""  # the reported plate (for the track's closing `vehicle` event)
    plate_confidence: float = 0.0
    color: str | None = None  # dominant colour, computed once on the best frame
    color_done: bool = False

    def observe(self, tb: TrackedBox, frame: int, timestamp: float) -> None:
        self.last_seen, self.last_frame = timestamp, frame
        self.box, self.score, self.age = tb.box, tb.score, tb.age

    def offer_crop(
        self, crop: np.ndarray, frame: int, box: Box, weight: float = 1.0,
        frame_image: np.ndarray | None = None,
    ) -> bool:  # fmt: skip
        """Keep ``crop`` if it beats the best so far (``frame_image``: its whole frame, kept
        with it when given). While the best crop is one the reader found no text on, a
        crop of another frame at least ``REREAD_MIN_QUALITY`` as good replaces it: the
        reader's text-line search fails on some crops of a plate and succeeds on the next
        frame's, so a retry needs a fresh crop, not a better one."""
        q = weight * crop_quality(box, crop)
        if q > self.best_quality or (
            self.read_nothing_on_best() and frame != self.best_frame
            and q >= REREAD_MIN_QUALITY * self.best_quality
        ):  # fmt: skip  # copy only the keeper: the frame buffer is reused
            self.best_quality, self.best_crop = q, crop.copy()
            self.best_frame, self.best_box = frame, box
            if frame_image is not None:
                self.best_frame_image = frame_image.copy()
            return True
        return False

    def read_nothing_on_best(self) -> bool:
        """The last read found no text, and it read the crop that is still the best."""
        return (
            bool(self.reads) and not self.reads[-1].text and self.reads[-1].frame == self.best_frame
        )


def is_stable(rec: TrackRecord, thr: Thresholds) -> bool:
    return (
        rec.age + 1 >= thr.stable_frames
        and rec.score >= thr.detection
        and (rec.box[3] - rec.box[1]) >= thr.min_box_px
    )


def should_read(rec: TrackRecord, thr: Thresholds, now_wall: float) -> bool:
    """First read once stable; a retry only after a low-confidence read, on a clearly
    better frame (after a read that found no text: on any other frame's crop), within
    the retry budget."""
    if rec.status is not TrackStatus.PENDING or rec.in_flight or rec.best_crop is None:
        return False
    if now_wall < rec.retry_after or not is_stable(rec, thr):
        return False
    if rec.attempts == 0:
        return True
    if rec.attempts > thr.max_retries:
        return False
    confident = any(r.confidence >= thr.read_confidence and r.text for r in rec.reads)
    if confident:
        return False
    last = rec.reads[-1] if rec.reads else None
    if last is not None and not last.text and last.frame >= 0:
        return rec.best_frame != last.frame
    return rec.best_quality > thr.retry_quality_gain * rec.quality_at_last_read


def should_decide(rec: TrackRecord, thr: Thresholds, plausible: bool) -> bool:
    """Decide after a confident plausible read, or once the retry budget is spent."""
    if rec.status is not TrackStatus.PENDING or rec.in_flight or not rec.reads:
        return False
    last = rec.reads[-1]
    if plausible and last.confidence >= thr.read_confidence:
        return True
    return rec.attempts > thr.max_retries
