"""One configuration tree for the edge client, loaded from YAML and validated by pydantic.

Every section rejects unknown keys (a typo fails loudly), every field is described and
bounded, secrets come from the environment. ``load_config`` turns validation errors into
one readable message naming each bad key and value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .yaml_file import read_yaml

CAMERA_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """The configuration is invalid; the message names every bad key and value."""


# --- sinks (chosen by `type:`) ---------------------------------------------------------
class JsonlSink(Strict):
    type: Literal["jsonl"] = "jsonl"
    path: Path = Field(description="JSON Lines file events are appended to")


class RedisStreamSink(Strict):
    type: Literal["redis_stream"] = "redis_stream"
    stream: str = Field("alpr:events", min_length=1, description="stream key")
    maxlen: int = Field(
        10_000, ge=10, le=10_000_000, description="approximate stream cap (XADD MAXLEN ~)"
    )


class WebhookSink(Strict):
    type: Literal["webhook"] = "webhook"
    url: str = Field(
        pattern=r"^https?://", description="HTTP(S) endpoint receiving a POST per event"
    )
    timeout_s: float = Field(5.0, gt=0, le=60, description="per-attempt timeout")
    max_retries: int = Field(5, ge=0, le=20, description="retries with exponential backoff")
    backoff_s: float = Field(0.5, gt=0, le=30, description="first retry delay; doubles each time")
    queue_size: int = Field(
        1000, ge=1, le=100_000, description="events buffered while the endpoint is down"
    )


class MqttSink(Strict):
    type: Literal["mqtt"] = "mqtt"
    host: str = Field("localhost", description="broker host")
    port: int = Field(1883, ge=1, le=65535)
    topic: str = Field("alpr/{camera}/plate", description="topic template; {camera} is replaced")
    qos: Literal[0, 1, 2] = 1
    username_env: str | None = Field(None, description="environment variable holding the user")
    password_env: str | None = Field(None, description="environment variable holding the password")


Sink = Annotated[JsonlSink | RedisStreamSink | WebhookSink | MqttSink, Field(discriminator="type")]


# --- per camera -----------------------------------------------------------------------
class Roi(Strict):
    """Region of interest as fractions of the frame (0..1)."""

    x1: float = Field(0.0, ge=0, le=1)
    y1: float = Field(0.0, ge=0, le=1)
    x2: float = Field(1.0, ge=0, le=1)
    y2: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Roi:
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(f"roi must have x1 < x2 and y1 < y2, got {self.model_dump()}")
        return self


Point = tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]


class Zone(Strict):
    """A camera's gate zone, in fractions of the frame: where vehicles are tracked and
    read, a counting line that tells entries from exits, and how cheap empty frames are."""

    polygon: list[Point] = Field(
        min_length=3, description="zone outline [[x, y], ...]; a vehicle is in it by box centre"
    )
    line: tuple[Point, Point] | None = Field(
        None, description="counting line [[x1, y1], [x2, y2]]; crossing it sets the direction"
    )
    entry: Literal["down", "up", "left", "right"] = Field(
        "down", description="image direction of motion across the line that counts as entry"
    )
    idle_every: int = Field(
        3, ge=1, le=100,
        description="with no vehicle in the zone, run the detector on one frame in N",
    )  # fmt: skip
    crop_detection: bool = Field(
        True, description="send only the zone's bounding box to the detector"
    )
    vehicle_events: bool = Field(
        True, description="emit a `vehicle` event (direction, dwell) when a zone track ends"
    )

    @model_validator(mode="after")
    def _not_degenerate(self) -> Zone:
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        if max(xs) - min(xs) <= 0 or max(ys) - min(ys) <= 0:
            raise ValueError("zone polygon has no area")
        if self.line is not None and self.line[0] == self.line[1]:
            raise ValueError("zone line needs two distinct points")
        return self


class Thresholds(Strict):
    detection: float = Field(0.35, gt=0, le=1, description="minimum detector score to track")
    min_box_px: int = Field(48, ge=4, le=4096, description="minimum box height in px to read")
    stable_frames: int = Field(
        3, ge=1, le=300, description="frames a track must last before reading"
    )
    read_confidence: float = Field(0.85, gt=0, le=1, description="below this a read may be retried")
    max_retries: int = Field(2, ge=0, le=20, description="extra reads of a track on better frames")
    min_plate_len: int = Field(4, ge=1, le=12, description="shorter reads are ignored")


class Tracking(Strict):
    """ByteTrack knobs (raising ``lost_frames`` keeps ids through occlusions but may merge
    vehicles; raising ``match_iou`` makes association stricter)."""

    high_score: float = Field(0.5, gt=0, le=1, description="detections above start/continue tracks")
    low_score: float = Field(0.1, gt=0, le=1, description="second-stage association floor")
    match_iou: float = Field(0.2, gt=0, le=1, description="minimum IoU to associate")
    lost_frames: int = Field(30, ge=1, le=3000, description="frames a lost track is kept")


class Camera(Strict):
    source: str = Field(description="video file, rtsp:// URL, or V4L2 device (/dev/video0 or 0)")
    mode: Literal["vehicles", "plates"] = Field("vehicles", description="what the detector finds")
    process_every: int = Field(1, ge=1, le=100, description="process one frame in N (frame skip)")
    max_fps: float | None = Field(
        None, gt=0, le=240, description="cap on processed frames per second"
    )
    inference_size: Literal[640] = Field(
        640, description="detector input size (fixed by the model)"
    )
    roi: Roi = Field(default_factory=Roi)
    zone: Zone | None = Field(None, description="gate zone: polygon, counting line, idle rate")
    read_plates: bool = Field(
        True, description="false for an overview camera: track and describe vehicles, no OCR"
    )
    vehicle_colour: bool = Field(
        True, description="name each vehicle's dominant colour (vehicles mode, best frame)"
    )
    thresholds: Thresholds = Field(default_factory=Thresholds)
    tracking: Tracking = Field(default_factory=Tracking)
    regions: list[str] = Field(
        default_factory=lambda: ["eu"], min_length=1, description="plate formats"
    )
    dedup_window_s: float = Field(
        60.0, ge=0, le=86_400, description="same plate within this = duplicate"
    )
    sinks: list[Sink] = Field(default_factory=list, description="where events go (besides the log)")
    decoder: Literal["auto", "nvdec", "cpu"] = Field("auto", description="video decoder")
    loop: bool = Field(False, description="restart a file source at its end (soak tests)")


class Redis(Strict):
    url: str = Field(
        "redis://localhost:6379/0", pattern=r"^rediss?://", description="redis:// or rediss://"
    )
    password_env: str | None = Field(
        None, description="environment variable with the AUTH password"
    )
    track_ttl_s: int = Field(3600, ge=10, le=30 * 86_400, description="lifetime of a track's keys")
    local_buffer: int = Field(
        10_000, ge=10, le=1_000_000, description="updates held while Redis is down"
    )


class Triton(Strict):
    urls: list[str] = Field(
        default_factory=lambda: ["localhost:8001"],
        min_length=1,
        description="gRPC host:port, failover order",
    )
    timeout_s: float = Field(10.0, gt=0, le=300)
    max_batch: int = Field(8, ge=1, le=16, description="tracks read in one request")
    read_queue: int = Field(64, ge=1, le=10_000, description="bounded queue of pending reads")


class EdgeConfig(Strict):
    triton: Triton = Field(default_factory=Triton)
    redis: Redis = Field(default_factory=Redis)
    output_dir: Path = Field(Path("runs"), description="crops and default event files go here")
    status_interval_s: float = Field(
        10.0, gt=0, le=3600, description="period of the status log line"
    )
    metrics_port: int | None = Field(None, ge=1, le=65535, description="Prometheus endpoint port")
    cameras: dict[str, Camera] = Field(min_length=1)

    @field_validator("cameras")
    @classmethod
    def _camera_ids(cls, cameras: dict[str, Camera]) -> dict[str, Camera]:
        import re

        for cid in cameras:
            if not re.match(CAMERA_ID, cid):
                raise ValueError(
                    f"camera id {cid!r} must match {CAMERA_ID} (used in keys and paths)"
                )
        return cameras


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        lines.append(f"  {loc or '<root>'}: {e['msg']} (got {shown[:80]})")
    return "\n".join(lines)


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: object, source: str, what: str = "configuration") -> M:
    """Validate ``data`` as ``model``; errors become one ``ConfigError`` naming every bad
    key and value."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what} in {source}:\n{_describe(exc)}") from None


def load_model(model: type[M], path: Path, what: str = "configuration") -> M:
    """Read a YAML mapping from ``path`` and validate it as ``model``."""
    data = read_yaml(path, what, ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return parse_model(model, data, str(path), what)


def parse_config(data: object, source: str = "<config>") -> EdgeConfig:
    return parse_model(EdgeConfig, data, source)


def load_config(path: Path) -> EdgeConfig:
    return load_model(EdgeConfig, path)
