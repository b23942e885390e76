"""The one event factory of the camera loop: a track (and, for a plate, its voted result)
to the camera event contract, ``edge_client.events.camera_event``."""

from __future__ import annotations

from edge_client.contracts import PlateResult
from edge_client.events import EventKind, ImageKind, PlateEvent, VehicleEvent, camera_event
from edge_client.trackbook import TrackRecord
from edge_client.zones.filter import ZoneFields


def event_id(camera: str, rec: TrackRecord, kind: EventKind, suffix: str) -> str:
    """``camera-trackkey-suffix`` (a ``v`` marks a vehicle event's suffix)."""
    mark = "v" if kind is EventKind.VEHICLE else ""
    return f"{camera}-{rec.key}-{mark}{suffix}"


def track_event(
    *,
    event_id: str,
    camera: str,
    rec: TrackRecord,
    reported_at: float,
    zone: ZoneFields,
    color: str | None,
    crop_path: str | None,
    images: dict[ImageKind, str] | None = None,
    result: PlateResult | None = None,
) -> PlateEvent | VehicleEvent:
    """A ``plate`` event with the voted ``result``; without one, the ``vehicle`` event that
    closes the track (carrying the plate it was reported with, if any)."""
    if result is None:
        plate: dict[str, object] = {
            "kind": EventKind.VEHICLE, "plate": rec.plate, "raw_text": "",
            "confidence": rec.plate_confidence, "region": None, "format": None, "votes": 0,
        }  # fmt: skip
    else:
        plate = {
            "kind": EventKind.PLATE, "plate": result.plate, "raw_text": result.raw_text,
            "confidence": result.confidence, "region": result.region, "format": result.format,
            "votes": result.votes,
        }  # fmt: skip
    return camera_event(
        event_id=event_id, camera=camera, track_id=rec.key, first_seen=rec.first_seen,
        last_seen=rec.last_seen, box=rec.best_box, vehicle_class=rec.label,
        frame=rec.best_frame, latency_ms=1000 * (reported_at - rec.first_wall),
        crop_path=crop_path, images=images or {}, reported_at=reported_at, color=color,
        direction=zone.direction, dwell_s=zone.dwell_s, **plate,
    )  # fmt: skip
