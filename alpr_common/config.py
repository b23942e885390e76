"""Configuration pieces shared by every process: the strict base model, readable
validation errors, YAML loading, the Redis connection and the event sinks (chosen by
``type:``). Each process's own tree (``edge_client.config``, ``gate.config``) builds on
these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
