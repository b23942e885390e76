"""Camera modes: what the detector finds and what the loop does with each track.

A camera's ``mode:`` picks one class from ``MODES`` (no if/elif on the mode in the loop):

- ``vehicles``: the vehicle detector; crops are vehicle boxes grown by
  ``crops.vehicle_margin`` (a box cut by the frame border still competes, weighted by
  ``crops.cut_weight``); each vehicle gets a dominant colour (``vehicle_colour``); reads
  go through the ``alpr`` ensemble (plate found inside the vehicle crop).
- ``plates``: a dedicated plate camera; per frame only ``plate_locator`` (the YOLO plate
  model, ``plate_finder: locator``, the default); crops are plate boxes of the
  full-resolution frame grown by ``crops.plate_margin``, read once per track through the
  ``alpr`` ensemble (text-line refinement + OCR). ``plate_finder: detector`` is the
  previous path: the heavy ``plate_detector`` on every frame, crops read by ``plate_ocr``.
  A plate cut by the border is never read (a partial plate reads as a wrong one); tracks
  are labelled ``plate``.

``read_plates`` means the same for both: true, a track is offered crops and read until its
plate is decided, and a ``vehicle`` event closes it only with a zone's
``vehicle_events``; false (an overview camera), no OCR at all, the track keeps its best
crop, and every stable track ends in a ``vehicle`` event carrying that crop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from edge_client.config import Camera
from edge_client.contracts import Box, TrackStatus
from edge_client.detect import (
    FrameDetector,
    PlateFrameDetector,
    PlateLocatorDetector,
    VehicleFrameDetector,
)
from edge_client.events import ImageKind
from edge_client.plates.formats import PlateFormat
from edge_client.reader import BatchReader, alpr_batch_reader, plate_batch_reader
from edge_client.trackbook import TrackRecord, crop_box, should_read
from edge_client.triton_client import AlprClient
from edge_client.zones.colour import dominant_colour


class CameraMode(Protocol):
    """One camera's mode strategy (see the module docstring)."""

    name: str
    image_kind: ImageKind  # what a track's crop shows (the event's `images` key)

    def label(self, class_id: int, labels: Mapping[int, str]) -> str:
        """A new track's class name."""
        ...

    def crop(self, image: np.ndarray, box: Box) -> tuple[np.ndarray, float] | None:
        """The crop of ``box`` a track is offered, with its quality weight (None: none)."""
        ...

    def colour(self, rec: TrackRecord) -> str | None:
        """The track's colour for its events (computed once)."""
        ...

    def offers(self, rec: TrackRecord) -> bool:
        """Whether the track still looks for a better crop."""
        ...

    def wants_read(self, rec: TrackRecord, now: float) -> bool:
        """Whether to send the track's best crop for reading now (wall time ``now``)."""
        ...

    def awaits_read(self, rec: TrackRecord) -> bool:
        """Whether a closing track must be read or decided before it retires."""
        ...

    def ends_with_vehicle_event(self, rec: TrackRecord) -> bool:
        """Whether a retiring track emits a ``vehicle`` event."""
        ...

    def vehicle_event_crop(self, rec: TrackRecord) -> np.ndarray | None:
        """The crop saved with a ``vehicle`` event (an overview camera's view)."""
        ...

    def detector(self, client: AlprClient) -> FrameDetector:
        """The frame detector for this mode."""
        ...

    def reader(self, client: AlprClient, formats: Sequence[PlateFormat]) -> BatchReader:
        """The batch reader for this mode's crops."""
        ...


class _Mode:
    """What both modes share: the meaning of ``read_plates`` and the vehicle events."""

    name: str

    def __init__(self, cam: Camera) -> None:
        self.cam, self.crops, self.thr = cam, cam.crops, cam.thresholds
        self.reads = cam.read_plates
        zone_events = cam.zone is not None and cam.zone.vehicle_events
        self.vehicle_events = (not self.reads) or zone_events

    def _cut(self, image: np.ndarray, box: Box) -> bool:
        h, w = image.shape[:2]
        e = self.crops.edge_px
        x1, y1, x2, y2 = box
        return x1 <= e or y1 <= e or x2 >= w - e or y2 >= h - e

    def offers(self, rec: TrackRecord) -> bool:
        return not self.reads or rec.status is TrackStatus.PENDING

    def wants_read(self, rec: TrackRecord, now: float) -> bool:
        return self.reads and should_read(rec, self.thr, now)

    def awaits_read(self, rec: TrackRecord) -> bool:
        return self.reads and rec.status is TrackStatus.PENDING

    def ends_with_vehicle_event(self, rec: TrackRecord) -> bool:
        stable = rec.age + 1 >= self.thr.stable_frames
        return self.vehicle_events and not rec.adopted and stable

    def vehicle_event_crop(self, rec: TrackRecord) -> np.ndarray | None:
        return None if self.reads else rec.best_crop


class VehicleMode(_Mode):
    name = "vehicles"
    image_kind = ImageKind.VEHICLE

    def label(self, class_id: int, labels: Mapping[int, str]) -> str:
        return labels.get(class_id, str(class_id))

    def crop(self, image: np.ndarray, box: Box) -> tuple[np.ndarray, float] | None:
        weight = self.crops.cut_weight if self._cut(image, box) else 1.0
        return crop_box(image, box, self.crops.vehicle_margin), weight

    def colour(self, rec: TrackRecord) -> str | None:
        if not rec.color_done and self.cam.vehicle_colour:
            rec.color_done = True
            if rec.best_crop is not None:
                rec.color = dominant_colour(rec.best_crop)
        return rec.color

    def detector(self, client: AlprClient) -> FrameDetector:
        return VehicleFrameDetector(client)

    def reader(self, client: AlprClient, formats: Sequence[PlateFormat]) -> BatchReader:
        return alpr_batch_reader(client, formats)  # format-aware choice, top-k


class PlateMode(_Mode):
    name = "plates"
    image_kind = ImageKind.PLATE

    def label(self, class_id: int, labels: Mapping[int, str]) -> str:
        return labels.get(class_id, "plate")

    def crop(self, image: np.ndarray, box: Box) -> tuple[np.ndarray, float] | None:
        if self._cut(image, box):
            return None
        return crop_box(image, box, self.crops.plate_margin), 1.0

    def colour(self, rec: TrackRecord) -> str | None:
        return rec.color

    def detector(self, client: AlprClient) -> FrameDetector:
        if self.cam.plate_finder == "detector":
            return PlateFrameDetector(client)
        return PlateLocatorDetector(client)

    def reader(self, client: AlprClient, formats: Sequence[PlateFormat]) -> BatchReader:
        if self.cam.plate_finder == "detector":
            return plate_batch_reader(client, formats)  # crops already refined: plate_ocr
        return alpr_batch_reader(client, formats)  # refine + read the track's best crop


MODES: dict[str, type[VehicleMode | PlateMode]] = {
    VehicleMode.name: VehicleMode,
    PlateMode.name: PlateMode,
}


def mode_for(cam: Camera) -> CameraMode:
    """The mode strategy a camera's ``mode:`` names."""
    return MODES[cam.mode](cam)
