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
from typing import Any

from edge_client.events import Direction, EventKind, parse_event

from .access import Decision

ObservationKind = EventKind  # plate: decisions are made on these; vehicle: a track ended


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
        """From an edge client's event JSON, validated against the camera event contract
        (``edge_client.events``, any schema version). Raises ``ValueError`` naming the
        offending fields on a malformed event."""
        ev = parse_event(d)
        obs = cls(
            kind=ObservationKind(ev.kind.value),
            event_id=ev.event_id,
            camera=ev.camera,
            track_id=ev.track_id,
            first_seen_wall=ev.reported_at - ev.latency_ms / 1000.0,
            reported_at=ev.reported_at,
            plate=ev.plate,
            confidence=ev.confidence,
            vehicle_class=ev.vehicle_class,
            color=ev.color or None,
            direction=ev.direction,
            dwell_s=ev.dwell_s,
            crop_path=ev.crop_path or None,
            region=ev.region or None,
            format=ev.format or None,
        )
        if not (math.isfinite(obs.reported_at) and math.isfinite(obs.first_seen_wall)):
            raise ValueError("malformed camera event: non-finite times")
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
    decision: Decision | None = None  # None until decided
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
        d["direction"] = Direction(self.direction).value if self.direction else None
        d["decision"] = Decision(self.decision).value if self.decision else None
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
    decision: Decision
    matched: str | None
    label: str
    confidence: float
    latency_ms: float  # first sighting -> this decision
    decided_at: float
    direction: Direction | None = None
    vehicle_class: str = ""
    color: str | None = None
    crop_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = "decision"
        d["decision"] = Decision(self.decision).value
        d["direction"] = Direction(self.direction).value if self.direction else None
        d["latency_ms"] = round(self.latency_ms, 1)
        d["confidence"] = round(self.confidence, 4)
        return d
