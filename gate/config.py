"""The gate service's configuration (``config/gate.yaml``), one pydantic tree like the edge
client's: unknown keys are rejected, errors name the key and the value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from alpr_common.config import (
    CAMERA_ID,
    JsonlSink,
    MqttSink,
    Redis,
    RedisStreamSink,
    Strict,
    WebhookSink,
    load_model,
    parse_model,
)
from gate.access import GateLists
from gate.notify import DEFAULT_BODY, DEFAULT_TITLE, check_template


class Database(Strict):
    url: str = Field(
        "sqlite:///runs/gate/history.db",
        description="SQLAlchemy URL: sqlite:///path (default) or postgresql+psycopg://...",
    )
    password_env: str | None = Field(
        None, description="environment variable with the database password (PostgreSQL)"
    )
    retention_days: float = Field(
        30.0, gt=0, le=3650, description="records (and their crops) older than this are purged"
    )

    @field_validator("url")
    @classmethod
    def _supported(cls, v: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", v):
            raise ValueError("database url must start with sqlite:// or postgresql[+driver]://")
        return v


class Http(Strict):
    host: str = Field("127.0.0.1", description="dashboard/API bind address")
    port: int = Field(8080, ge=1, le=65535)
    token_env: str | None = Field(
        None,
        description="environment variable holding the dashboard token: when set, list "
        "changes and reads of the history, crops and live feed need `Authorization: Bearer "
        "<token>` or a login (the token is the login password)",
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="a dashboard login lasts this long"
    )
    secure_cookie: bool = Field(
        False,
        description="mark the login cookie Secure even when the request arrived over plain "
        "HTTP (behind a TLS-terminating proxy); requests over HTTPS always get it",
    )
    metrics: Literal["open", "token", "off"] = Field(
        "open",
        description="/metrics on the dashboard's port: open, behind the token (when "
        "`token_env` is set), or not served",
    )


DecisionName = Literal["allow", "deny", "unknown"]


class AppriseSink(Strict):
    """Notifications to people through Apprise (Telegram, Pushover, ntfy, e-mail, Slack, ...;
    https://github.com/caronc/apprise/wiki). Gate only. A decision is sent when it passes
    every rule given (decisions, labels, cameras)."""

    type: Literal["apprise"] = "apprise"
    urls: list[str] = Field(
        default_factory=list,
        description="Apprise URLs; they embed credentials, so prefer `urls_env`",
    )
    urls_env: str | None = Field(
        None,
        description="environment variable holding the Apprise URLs (separated by spaces, "
        "commas or newlines)",
    )
    decisions: list[DecisionName] = Field(
        default_factory=lambda: list[DecisionName](["deny", "unknown"]),
        min_length=1,
        description="decisions that notify",
    )
    labels: list[str] | None = Field(
        None,
        description="only decisions whose list entry carries one of these labels (unknown "
        "plates match no entry, so they have none); absent: any",
    )
    cameras: list[str] | None = Field(None, description="only these plate cameras; absent: any")
    title: str = Field(
        DEFAULT_TITLE, max_length=250, description="title template ({plate}, {decision}, ...)"
    )
    body: str = Field(
        DEFAULT_BODY,
        min_length=1,
        max_length=4000,
        description="message template: {plate} {decision} {gate} {camera} {label} {time} "
        "{matched} {direction} {vehicle_class} {color} {confidence} {latency_ms} {record_id}",
    )
    attach_crop: bool = Field(True, description="attach the plate crop when there is one")
    queue_size: int = Field(
        100, ge=1, le=10_000, description="notifications waiting to be sent; more are dropped"
    )

    @field_validator("title", "body")
    @classmethod
    def _template(cls, v: str) -> str:
        return check_template(v)

    @model_validator(mode="after")
    def _one_source(self) -> AppriseSink:
        if bool(self.urls) == bool(self.urls_env):
            raise ValueError("apprise: give exactly one of `urls` or `urls_env`")
        for i, url in enumerate(self.urls):
            if "://" not in url:  # the URL itself is not shown: it may hold a secret
                raise ValueError(f"apprise: urls[{i}] is not an Apprise URL (scheme://...)")
        return self


GateSink = Annotated[
    JsonlSink | RedisStreamSink | WebhookSink | MqttSink | AppriseSink,
    Field(discriminator="type"),
]


class GateDef(Strict):
    """One gate: its cameras, how their sightings merge, its lists and where decisions go."""

    plate_camera: str = Field(description="camera whose plate reads decide")
    overview_camera: str | None = Field(
        None, description="camera that sees the whole vehicle (class, colour, direction)"
    )
    merge_window_s: float = Field(
        5.0, gt=0, le=600, description="sightings this close in time are the same vehicle"
    )
    lists: GateLists = Field(
        default_factory=GateLists,
        description="initial allow/deny lists (seeded into the database once; then managed "
        "in the dashboard)",
    )
    publish: list[GateSink] = Field(
        default_factory=list,
        description="where decisions go; `{gate}` in MQTT topics / paths is the gate name",
    )


class GateConfig(Strict):
    redis: Redis = Field(default_factory=Redis)
    stream: str = Field("alpr:events", min_length=1, description="edge clients' event stream")
    group: str = Field("gate", min_length=1, description="Redis consumer group of the service")
    database: Database = Field(default_factory=Database)
    crops_dir: Path = Field(Path("runs/gate/crops"), description="record crops are kept here")
    http: Http = Field(default_factory=Http)
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="also serve /metrics (always open) on this port"
    )
    gates: dict[str, GateDef] = Field(min_length=1)

    @field_validator("gates")
    @classmethod
    def _gate_ids(cls, gates: dict[str, GateDef]) -> dict[str, GateDef]:
        for gid in gates:
            if not re.match(CAMERA_ID, gid):
                raise ValueError(f"gate id {gid!r} must match {CAMERA_ID}")
        return gates

    @model_validator(mode="after")
    def _one_gate_per_camera(self) -> GateConfig:
        owner: dict[str, str] = {}
        for gid, g in self.gates.items():
            for cam in (g.plate_camera, g.overview_camera):
                if cam is None:
                    continue
                if cam in owner and owner[cam] != gid:
                    raise ValueError(f"camera {cam!r} belongs to gates {owner[cam]!r} and {gid!r}")
                owner[cam] = gid
            if g.overview_camera == g.plate_camera:
                raise ValueError(f"gate {gid!r}: overview_camera must differ from plate_camera")
        return self

    def gate_of(self, camera: str) -> str | None:
        for gid, g in self.gates.items():
            if camera in (g.plate_camera, g.overview_camera):
                return gid
        return None


def parse_gate_config(data: object, source: str = "<gate config>") -> GateConfig:
    return parse_model(GateConfig, data, source, "gate configuration")


def load_gate_config(path: Path) -> GateConfig:
    return load_model(GateConfig, path, "gate configuration")
