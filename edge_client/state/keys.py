"""Key names, validation and (de)serialisation for the Redis track cache.

The key schema itself is documented in :mod:`edge_client.state.cache`; this module only builds
and checks names and converts a track hash to and from :class:`TrackState`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alpr_common.config import CAMERA_ID
from edge_client.contracts import PlateResult, Read, TrackStatus
from edge_client.events import status_key

PREFIX = "alpr"
TRACK_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
CAMERA_RE = re.compile(CAMERA_ID)
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
MAX_PLATE_LEN = 32


def check_camera(camera: str) -> str:
    if not isinstance(camera, str) or not CAMERA_RE.match(camera):
        raise ValueError(f"camera id {camera!r} must match {CAMERA_ID}")
    return camera


def check_track_key(track_key: str) -> str:
    if not isinstance(track_key, str) or not TRACK_KEY_RE.match(track_key):
        raise ValueError(f"track key {track_key!r} must match {TRACK_KEY_RE.pattern}")
    return track_key


def check_client_id(client_id: str) -> str:
    if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
        raise ValueError(f"client id {client_id!r} must match {CLIENT_ID_RE.pattern}")
    return client_id


def plate_id(plate: str) -> str:
    """The plate as used in dedup keys: upper case, letters and digits only."""
    norm = re.sub(r"[^A-Z0-9]", "", str(plate).upper())
    if not norm or len(norm) > MAX_PLATE_LEN:
        raise ValueError(f"plate {plate!r} has no usable characters or is too long")
    return norm


def ns_pattern(camera: str) -> str:
    """SCAN pattern matching every key of one camera (camera ids hold no glob characters)."""
    return f"{PREFIX}:{check_camera(camera)}:*"


def track_hash(camera: str, track_key: str) -> str:
    return f"{PREFIX}:{check_camera(camera)}:track:{check_track_key(track_key)}"


def track_index(camera: str) -> str:
    return f"{PREFIX}:{check_camera(camera)}:tracks"


def plate_claim(camera: str, plate: str) -> str:
    return f"{PREFIX}:{check_camera(camera)}:plate:{plate_id(plate)}"


def camera_status(camera: str) -> str:
    """A camera's heartbeat hash (fps, frames, events, updated_at), expiring when stale.
    Part of the edge -> gate contract (``edge_client.events.status_key``)."""
    return status_key(check_camera(camera))


def camera_of_index(key: str) -> str | None:
    """``alpr:{camera}:tracks`` -> camera, anything else -> None."""
    parts = key.split(":")
    if len(parts) == 3 and parts[0] == PREFIX and parts[2] == "tracks":
        return parts[1] if CAMERA_RE.match(parts[1]) else None
    return None


def num(value: float | int) -> str:
    """A float written so Lua's tonumber and Python's float read it back exactly."""
    return repr(float(value))


def box_json(box: Sequence[float] | None) -> str:
    if box is None:
        return ""
    vals = [float(v) for v in box]
    if len(vals) != 4:
        raise ValueError(f"box must have 4 values (x1, y1, x2, y2), got {box!r}")
    return json.dumps([round(v, 2) for v in vals], separators=(",", ":"))


def vote_json(read: Read, vote_id: str) -> str:
    return json.dumps(
        {
            "text": read.text,
            "confidence": round(float(read.confidence), 5),
            "frame": int(read.frame),
            "id": vote_id,
        },
        separators=(",", ":"),
    )


def result_fields(result: PlateResult) -> dict[str, str]:
    """Hash fields written by ``mark_reported`` (None is stored as an empty string)."""
    return {
        "plate": result.plate,
        "raw_text": result.raw_text,
        "confidence": num(result.confidence),
        "region": result.region or "",
        "format": result.format or "",
    }


@dataclass(frozen=True)
class TrackState:
    """One track as stored in Redis (or in the local view while Redis is down)."""

    camera: str
    track_key: str
    status: TrackStatus
    plate: str | None = None
    raw_text: str | None = None
    confidence: float | None = None
    region: str | None = None
    format: str | None = None
    votes: tuple[Read, ...] = ()
    reads: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    box: tuple[float, float, float, float] | None = None
    vehicle_class: str | None = None
    event_id: str | None = None
    updated_by: str | None = None
    updated_at: float | None = None  # server clock (Redis TIME) of the last write

    def to_json(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "track_key": self.track_key,
            "status": self.status.value,
            "plate": self.plate,
            "raw_text": self.raw_text,
            "confidence": self.confidence,
            "region": self.region,
            "format": self.format,
            "votes": [
                {"text": v.text, "confidence": v.confidence, "frame": v.frame} for v in self.votes
            ],
            "reads": self.reads,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "box": list(self.box) if self.box else None,
            "vehicle_class": self.vehicle_class,
            "event_id": self.event_id,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
        }


def _opt_float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def parse_votes(raw: Any) -> tuple[Read, ...]:
    try:
        items = json.loads(raw) if raw else []
    except (TypeError, ValueError):
        return ()
    if not isinstance(items, list):  # Lua's cjson writes an empty table as {}
        return ()
    out = []
    for it in items:
        if isinstance(it, dict) and "text" in it:
            out.append(
                Read(
                    text=str(it["text"]),
                    confidence=float(it.get("confidence", 0.0)),
                    frame=int(it.get("frame", -1)),
                )
            )
    return tuple(out)


def parse_box(raw: Any) -> tuple[float, float, float, float] | None:
    try:
        vals = json.loads(raw) if raw else None
    except (TypeError, ValueError):
        return None
    if isinstance(vals, list) and len(vals) == 4:
        return (float(vals[0]), float(vals[1]), float(vals[2]), float(vals[3]))
    return None


def state_from_hash(camera: str, track_key: str, h: dict[str, Any]) -> TrackState | None:
    """A ``HGETALL`` reply (str -> str) or a local-view dict -> TrackState; None if empty."""
    if not h:
        return None
    try:
        status = TrackStatus(h.get("status") or TrackStatus.PENDING.value)
    except ValueError:
        status = TrackStatus.PENDING
    try:
        reads = int(h.get("reads") or 0)
    except (TypeError, ValueError):
        reads = 0
    return TrackState(
        camera=camera,
        track_key=track_key,
        status=status,
        plate=_opt_str(h.get("plate")),
        raw_text=_opt_str(h.get("raw_text")),
        confidence=_opt_float(h.get("confidence")),
        region=_opt_str(h.get("region")),
        format=_opt_str(h.get("format")),
        votes=parse_votes(h.get("votes")),
        reads=reads,
        first_seen=_opt_float(h.get("first_seen")),
        last_seen=_opt_float(h.get("last_seen")),
        box=parse_box(h.get("box")),
        vehicle_class=_opt_str(h.get("vehicle_class")),
        event_id=_opt_str(h.get("event_id")),
        updated_by=_opt_str(h.get("updated_by")),
        updated_at=_opt_float(h.get("updated_at")),
    )
