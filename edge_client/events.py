"""The camera event contract: what an edge client publishes, once per vehicle.

Defined once, here. It is a versioned discriminated union on ``kind``:

- ``PlateEvent`` (``kind: plate``): a track's plate was decided (the gate decides on it);
- ``VehicleEvent`` (``kind: vehicle``): a zone track ended, or an overview camera's track
  (no plate read): final direction, dwell, class, colour.

``to_json`` is the wire format of every sink (JSONL line, Redis stream ``event`` field,
webhook body, MQTT payload). ``parse_event`` is how a consumer (the gate) reads it back:
it validates against the same models, accepts events of earlier schema versions (no
``schema_version``; no ``kind`` means a plate event) and ignores fields it does not know,
so an older gate keeps working beside a newer edge. ``event_json_schema`` is the
generated JSON Schema (``docs/event.schema.json``) and ``schema_table`` the README table;
``tests/test_events.py`` fails when either is stale (``python scripts/gen_event_schema.py``
rewrites them).

This module is the only part of ``edge_client`` the gate imports.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_serializer

from alpr_common.geometry import Box  # x1, y1, x2, y2 in frame pixels

SCHEMA_VERSION = 4  # 1: plate fields only; 2: + kind, reported_at, color, direction, dwell_s;
# 3: + schema_version; 4: + images


class ImageKind(StrEnum):
    PLATE = "plate"  # the plate crop read (plates mode)
    VEHICLE = "vehicle"  # the vehicle crop (vehicles mode)
    FRAME = "frame"  # the whole frame of the best crop (`crops.save_frame`)


class Direction(StrEnum):
    """Which way a vehicle crossed a zone's counting line."""

    ENTRY = "entry"
    EXIT = "exit"


class EventKind(StrEnum):
    PLATE = "plate"  # a track's plate was decided
    VEHICLE = "vehicle"  # a track ended (zone or overview camera): direction, dwell, colour


def status_key(camera: str) -> str:
    """The Redis hash where an edge client publishes a camera's heartbeat (fps, frames,
    events, updated_at; it expires when the client stops). The gate's dashboard reads it."""
    return f"alpr:{camera}:status"


class _CameraEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", use_enum_values=False)

    schema_version: int = Field(
        SCHEMA_VERSION, description="contract version (absent in events before version 3)"
    )
    event_id: str = Field(min_length=1, description="unique id (`camera-trackkey-random`)")
    camera: str = Field(min_length=1, description="camera id from the edge configuration")
    track_id: str = Field(min_length=1, description="track key (client run id + tracker id)")
    plate: str = Field(
        "",
        description=(
            "final plate text after voting and format-guided correction (A-Z, 0-9); "
            "empty when none was read"
        ),
    )
    raw_text: str = Field("", description="the recogniser's text of the winning read")
    confidence: float = Field(0.0, ge=0.0, le=1.0, description="combined confidence 0-1")
    region: str | None = Field(
        None, description="matching regional format's region (e.g. `uk`), or null"
    )
    format: str | None = Field(
        None, description="matching format's name (e.g. `uk_current`), or null"
    )
    first_seen: float = Field(
        0.0, description="seconds (media time for files, Unix time for live sources)"
    )
    last_seen: float = Field(0.0, description="seconds, as `first_seen`")
    box: Box = Field(
        (0.0, 0.0, 0.0, 0.0), description="`[x1, y1, x2, y2]` of the best frame, frame pixels"
    )
    vehicle_class: str = Field(
        "", description="`car`/`motorcycle`/`bus`/`truck`, or `plate` in plates mode"
    )
    frame: int = Field(-1, description="frame number of the crop that was read")
    latency_ms: float = Field(0.0, description="first sighting to event, wall clock (ms)")
    votes: int = Field(0, ge=0, description="reads agreeing with the winner")
    crop_path: str | None = Field(
        None, description="JPEG crop under `output_dir/crops/{camera}/{date}/`, or null"
    )
    images: dict[ImageKind, str] = Field(
        default_factory=dict,
        description=(
            "local JPEGs saved with the event, by kind (`plate`, `vehicle`, `frame`); a sink "
            "with `image:` attaches one (base64, multipart or a signed URL)"
        ),
    )
    extra: dict[str, Any] = Field(
        default_factory=dict, description="free-form additions (a sink or plugin may add keys)"
    )
    reported_at: float = Field(0.0, description="Unix time the event was emitted")
    color: str | None = Field(
        None, description="dominant body colour (vehicles mode, best frame), or null"
    )
    direction: Direction | None = Field(
        None, description="`entry`/`exit` across the zone's counting line, or null"
    )
    dwell_s: float | None = Field(
        None, ge=0.0, description="seconds spent in the camera's zone so far, or null"
    )

    @field_serializer("box")
    def _box(self, box: Box) -> list[float]:
        return [round(float(v), 1) for v in box]

    @field_serializer("confidence")
    def _confidence(self, v: float) -> float:
        return round(float(v), 4)

    @field_serializer("latency_ms")
    def _latency(self, v: float) -> float:
        return round(float(v), 1)

    @field_serializer("reported_at")
    def _reported(self, v: float) -> float:
        return round(float(v), 3)

    @field_serializer("dwell_s")
    def _dwell(self, v: float | None) -> float | None:
        return None if v is None else round(float(v), 2)

    def to_json(self) -> dict[str, Any]:
        """The wire format: one JSON object (README "Event schema")."""
        return self.model_dump(mode="json")


class PlateEvent(_CameraEvent):
    """A track's plate was decided."""

    kind: Literal[EventKind.PLATE] = EventKind.PLATE
    plate: str = Field(
        min_length=1,
        description="final plate text after voting and format-guided correction (A-Z, 0-9)",
    )


class VehicleEvent(_CameraEvent):
    """A track ended without (or after) its plate event: direction, dwell, class, colour."""

    kind: Literal[EventKind.VEHICLE] = EventKind.VEHICLE


CameraEvent = Annotated[PlateEvent | VehicleEvent, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[PlateEvent | VehicleEvent] = TypeAdapter(CameraEvent)


def camera_event(**fields: Any) -> PlateEvent | VehicleEvent:
    """Build the event that ``fields["kind"]`` names (default ``plate``); raises
    ``pydantic.ValidationError`` on a field the contract refuses."""
    fields.setdefault("kind", EventKind.PLATE)
    return _ADAPTER.validate_python(fields)


def parse_event(data: dict[str, Any]) -> PlateEvent | VehicleEvent:
    """An event's JSON as published by any edge client version. Raises ``ValueError`` with
    the offending fields named when it does not satisfy the contract."""
    if not isinstance(data, dict):
        raise ValueError(f"malformed camera event: expected an object, got {type(data).__name__}")
    body = dict(data)
    body.setdefault("kind", EventKind.PLATE.value)  # schema 1 had only plate events
    body.setdefault("schema_version", 1 if "reported_at" not in body else 2)
    for key in ("color", "region", "format", "crop_path", "direction"):  # "" meant absent
        if body.get(key) == "":
            body[key] = None
    for key, f in _CameraEvent.model_fields.items():  # null where a default exists: default
        if key in body and body[key] is None and f.default is not None:
            del body[key]
    try:
        return _ADAPTER.validate_python(body)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        errors = getattr(exc, "errors", None)
        if callable(errors):
            named = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors())
            raise ValueError(f"malformed camera event: {named}") from None
        raise ValueError(f"malformed camera event: {exc}") from None


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of a camera event (both kinds), as committed in
    ``docs/event.schema.json``."""
    schema = _ADAPTER.json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"OVR-ALPR camera event, schema version {SCHEMA_VERSION}"
    return schema


def _type_name(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    for long, short in (
        ("typing.", ""), ("edge_client.events.", ""), ("tuple[float, float, float, float]", "box"),
        ("dict[str, Any]", "object"), ("dict[ImageKind, str]", "object"), ("str", "string"),
        ("float", "number"), ("int", "integer"),
        ("Direction", "`entry`\\|`exit`"), (" | None", " \\| null"),
    ):  # fmt: skip
        text = text.replace(long, short)
    return text


def schema_table() -> str:
    """The README's event table (markdown), generated from the models."""
    plate, vehicle = PlateEvent.model_fields, VehicleEvent.model_fields
    rows = ["| field | type | plate | vehicle | meaning |", "|---|---|---|---|---|"]
    names = ["kind", *[n for n in plate if n != "kind"]]
    for name in names:
        f = plate[name]
        ann = _type_name(f.annotation)
        if name == "kind":
            ann, desc = "string", "`plate` or `vehicle` (the union's discriminator)"
        else:
            desc = f.description or ""
        in_plate = "required" if f.is_required() else "optional"
        in_vehicle = "required" if vehicle[name].is_required() else "optional"
        rows.append(f"| `{name}` | {ann} | {in_plate} | {in_vehicle} | {desc} |")
    return "\n".join(rows) + "\n"
