"""Result types of the gate service: what it receives, what it stores, what it publishes.

Data flow: edge clients publish camera events (``kind: plate`` when a track's plate is
decided, ``kind: vehicle`` when a track leaves the view) to a Redis stream ->
``Observation`` -> the gate merges a plate camera's and an overview camera's observations
of one vehicle into a ``VehicleRecord`` -> access decision (``gate.access``) ->
``DecisionEvent`` published to the gate's MQTT topic / webhook / JSONL, and the record is
stored in the history database (``history.History``).

All times are wall-clock epoch seconds (floats) unless named ``*_ms``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from edge_client.contracts import Direction


class ObservationKind(StrEnum):
    PLATE = "plate"  # a track's plate was decided (fast path: decisions are made on these)
    VEHICLE = "vehicle"  # a track ended: final direction, dwell, class, colour


@dataclass(frozen=True)
class Observation:
    """One camera event as the gate sees it (parsed from the edge client's event JSON)."""

    kind: ObservationKind
    event_id: str
    camera: str
    track_id: str
    first_seen_wall: float  # wall time of the track's first sighting
    reported_at: float  # wall time the edge client emitted the event
    plate: str = ""  # empty for vehicle observations without a read
    confidence: float = 0.0
    vehicle_class: str = ""
    color: str | None = None
    direction: Direction | None = None
    dwell_s: float | None = None
    crop_path: str | None = None
    region: str | None = None
    format: str | None = None

    @classmethod
    def from_event(cls, d: dict[str, Any]) -> Observation:
        """From an edge event's JSON (``PlateEvent.to_json``). Raises ``ValueError`` on a
        malformed event (missing or mistyped fields)."""
        try:
            kind = ObservationKind(d.get("kind", "plate"))
            reported = float(d.get("reported_at") or 0.0)
            latency = float(d.get("latency_ms") or 0.0)
            direction = d.get("direction")
            dwell = d.get("dwell_s")
            obs = cls(
                kind=kind,
                event_id=str(d["event_id"]),
                camera=str(d["camera"]),
                track_id=str(d["track_id"]),
                first_seen_wall=reported - latency / 1000.0,
                reported_at=reported,
                plate=str(d.get("plate") or ""),
                confidence=float(d.get("confidence") or 0.0),
                vehicle_class=str(d.get("vehicle_class") or ""),
                color=d.get("color") or None,
                direction=Direction(direction) if direction else None,
                dwell_s=float(dwell) if dwell is not None else None,
                crop_path=d.get("crop_path") or None,
                region=d.get("region") or None,
                format=d.get("format") or None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed camera event: {exc!r}") from None
        if not (math.isfinite(obs.reported_at) and math.isfinite(obs.first_seen_wall)):
            raise ValueError("malformed camera event: non-finite times")
        if obs.kind is ObservationKind.PLATE and not obs.plate:
            raise ValueError("malformed camera event: a plate event without a plate")
        return obs


@dataclass(frozen=True)
class VehicleRecord:
    """One vehicle at one gate: its plate, what the cameras saw, and the access decision.
    Stored in the history database (one row per record, keyed by ``record_id``)."""

    record_id: str
    gate: str
    first_seen: float  # wall time of the earliest sighting by any of the gate's cameras
    plate: str = ""
    plate_confidence: float = 0.0
    plate_camera: str | None = None
    overview_camera: str | None = None
    vehicle_class: str = ""
    color: str | None = None
    direction: Direction | None = None
    dwell_s: float | None = None
    decision: str | None = None  # allow / deny / unknown; None until decided
    matched: str | None = None  # list entry (plate or pattern) that decided it
    list_label: str = ""
    decided_at: float | None = None
    decision_latency_ms: float | None = None  # first sighting -> decision
    crop_path: str | None = None  # plate camera's crop
    overview_crop_path: str | None = None
    event_ids: tuple[str, ...] = ()

    def with_(self, **changes: Any) -> VehicleRecord:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["event_ids"] = list(self.event_ids)
        d["direction"] = self.direction.value if self.direction else None
        return d


@dataclass(frozen=True)
class DecisionEvent:
    """What a gate publishes (MQTT gate topic, webhook, JSONL) for each decided vehicle.
    Satisfies the edge client's ``Sink`` input (``event_id``, ``camera``, ``plate``,
    ``to_json``) so the same sinks carry it."""

    event_id: str
    gate: str
    camera: str  # the plate camera
    record_id: str
    plate: str
    decision: str
    matched: str | None
    label: str
    confidence: float
    latency_ms: float  # first sighting -> this decision
    decided_at: float
    direction: str | None = None
    vehicle_class: str = ""
    color: str | None = None
    crop_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = "decision"
        d["latency_ms"] = round(self.latency_ms, 1)
        d["confidence"] = round(self.confidence, 4)
        return d
