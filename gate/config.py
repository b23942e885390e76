"""The gate service's configuration (``config/gate.yaml``), one pydantic tree like the edge
client's: unknown keys are rejected, errors name the key and the value."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from alpr_common.config import CAMERA_ID, Redis, Sink, Strict, load_model, parse_model
from gate.access import GateLists


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
        description="environment variable holding a bearer token required for list changes",
    )


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
    publish: list[Sink] = Field(
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
