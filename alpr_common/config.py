"""Configuration pieces shared by every process: the strict base model, readable
validation errors, YAML loading, the Redis connection and the event sinks (chosen by
``type:``). Each process's own tree (``edge_client.config``, ``gate.config``) builds on
these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


HTTP_TOKEN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$"  # an HTTP header name (RFC 9110 token)
ENV_VAR = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class HttpHeader(Strict):
    """One extra request header: a literal `value` or, for credentials, `value_env` (the
    environment variable holding it). Values are never logged."""

    name: str = Field(pattern=HTTP_TOKEN, description="header name, e.g. `X-Api-Key`")
    value: str | None = Field(
        None, repr=False, pattern=r"^[^\r\n\x00]*$", description="literal value"
    )
    value_env: str | None = Field(
        None, pattern=ENV_VAR, description="environment variable holding the value"
    )

    @model_validator(mode="after")
    def _one_source(self) -> HttpHeader:
        if (self.value is None) == (self.value_env is None):
            raise ValueError(f"header {self.name}: give exactly one of value or value_env")
        return self


class EventImageOptions(Strict):
    """An image sent with each event (a mix-in of the sink configs that can carry one).
    ``IMAGE_ENCODINGS`` lists the encodings the sink supports."""

    IMAGE_ENCODINGS: ClassVar[tuple[str, ...]] = ("base64", "url")

    image: Literal["none", "plate", "vehicle", "frame"] = Field(
        "none",
        description="which image goes with an event: the plate crop, the vehicle crop, the "
        "whole frame, or none; an event without that image is sent without one "
        "(counted as image_missing)",
    )
    image_encoding: Literal["base64", "multipart", "url"] = Field(
        "base64",
        description="base64: `image: {kind, content_type, data}` in the JSON; multipart: "
        "multipart/form-data with a `json` and an `upload` part (webhook only); url: "
        "`image_url`, an expiring signed link to the edge's crop server",
    )
    image_max_bytes: int = Field(
        200_000,
        ge=1_024,
        le=10_000_000,
        description="a larger JPEG is re-encoded smaller, or left out (image_too_large); "
        "not applied to url",
    )
    image_url_base: str | None = Field(
        None,
        pattern=r"^https?://[^?#\s]+$",
        description="url: the crop server as receivers reach it, e.g. `http://edge1:8765`",
    )
    image_url_secret_env: str | None = Field(
        None,
        pattern=ENV_VAR,
        description="url: environment variable with the link-signing secret (the crop server's)",
    )
    image_url_ttl_s: int = Field(
        86_400, ge=60, le=30 * 86_400, description="url: how long a link stays valid"
    )

    @model_validator(mode="after")
    def _image_rules(self) -> EventImageOptions:
        if self.image == "none":
            return self
        if self.image_encoding not in self.IMAGE_ENCODINGS:
            raise ValueError(
                f"image_encoding {self.image_encoding} is not supported by this sink "
                f"(one of: {', '.join(self.IMAGE_ENCODINGS)})"
            )
        if self.image_encoding == "url" and not (self.image_url_base and self.image_url_secret_env):
            raise ValueError("image_encoding url needs image_url_base and image_url_secret_env")
        return self


class WebhookSink(EventImageOptions):
    """An HTTP POST per event, through a durable outbox (see ``alpr_common.sinks.webhook``)."""

    IMAGE_ENCODINGS: ClassVar[tuple[str, ...]] = ("base64", "multipart", "url")

    type: Literal["webhook"] = "webhook"
    url: str = Field(
        pattern=r"^https?://", description="HTTP(S) endpoint receiving a POST per event"
    )
    timeout_s: float = Field(5.0, gt=0, le=60, description="per-attempt timeout")
    max_retries: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="retries (429, 5xx, network errors) before an event is given up and "
        "dead-lettered; null: retry until delivered",
    )
    backoff_s: float = Field(0.5, gt=0, le=30, description="first retry delay; doubles each time")
    max_backoff_s: float = Field(
        30.0, gt=0, le=3600, description="longest wait between retries (Retry-After included)"
    )
    queue_size: int = Field(
        1000, ge=1, le=1_000_000, description="events held while the endpoint is down"
    )
    max_age_s: float | None = Field(
        None,
        gt=0,
        description="an event still undelivered this long after it was emitted is "
        "dead-lettered instead of sent (e.g. a barrier controller); null: no limit",
    )
    outbox_path: str = Field(
        "outbox/webhook-{camera}-{url}.sqlite3",
        min_length=1,
        description="SQLite outbox (relative to output_dir; {camera} and {url}, a hash of the "
        "URL, are replaced); `:memory:` keeps it in memory (lost on restart)",
    )
    headers: list[HttpHeader] = Field(
        default_factory=list, description="extra request headers (e.g. `x-api-key`)"
    )
    secret_env: str | None = Field(
        None,
        pattern=ENV_VAR,
        description="environment variable with the HMAC-SHA256 signing secret (unset: unsigned)",
    )
    signature_header: str = Field(
        "X-OVR-Signature",
        pattern=HTTP_TOKEN,
        description="header carrying `sha256=<hex>` of `<timestamp>.<body>`",
    )
    timestamp_header: str = Field(
        "X-OVR-Timestamp", pattern=HTTP_TOKEN, description="header carrying the signing time"
    )

    @model_validator(mode="after")
    def _header_names(self) -> WebhookSink:
        names = [h.name.lower() for h in self.headers]
        own = {"content-type", "content-length", "host", "transfer-encoding", "idempotency-key"}
        own |= {self.signature_header.lower(), self.timestamp_header.lower()}
        bad = sorted({n for n in names if n in own or names.count(n) > 1})
        if bad:
            raise ValueError(f"headers: duplicate or reserved header name(s): {', '.join(bad)}")
        if self.signature_header.lower() == self.timestamp_header.lower():
            raise ValueError("signature_header and timestamp_header must differ")
        return self


class MqttTls(Strict):
    """TLS to the broker. The broker's certificate chain is always verified (against
    ``ca_file``, or the system's CAs when it is unset)."""

    ca_file: Path | None = Field(
        None, description="PEM CA certificate(s) the broker's certificate must chain to"
    )
    cert_file: Path | None = Field(
        None, description="PEM client certificate, for brokers that require one"
    )
    key_file: Path | None = Field(None, description="PEM private key of `cert_file`")
    insecure: bool = Field(
        False,
        description="skip the check that the certificate names `host` (the chain is still "
        "verified); for tests and IP-addressed brokers only",
    )

    @model_validator(mode="after")
    def _cert_and_key(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: cert_file and key_file go together")
        return self


class MqttDiscovery(Strict):
    """Home Assistant MQTT discovery for this sink's camera or gate: one HA device with its
    entities, announced (retained) under ``prefix`` on every connection."""

    prefix: str = Field(
        "homeassistant",
        pattern=r"^[^#+\x00]+$",
        description="HA's discovery prefix (its MQTT integration setting)",
    )
    role: Literal["camera", "gate"] = Field(
        "camera",
        description="camera: last-plate sensor + crop image; gate: decision sensor + "
        "authorised-vehicle-present binary sensor (the gate service sets `gate` itself)",
    )
    node_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="discovery node id and device identifier; default `ovr_alpr_<id>`",
    )
    name: str | None = Field(
        None, max_length=100, description="device name in HA; default `ALPR camera <id>`"
    )
    state_topic: str = Field(
        "ovr-alpr/{camera}",
        min_length=1,
        description="base of the entities' retained state topics; {camera}/{gate} is replaced",
    )
    max_image_bytes: int = Field(
        512 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="camera: a plate crop JPEG larger than this is not published",
    )
    present_timeout_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="gate: the present sensor turns OFF this long after the last allow",
    )


class MqttSink(Strict):
    type: Literal["mqtt"] = "mqtt"
    host: str = Field("localhost", description="broker host")
    port: int = Field(1883, ge=1, le=65535, description="broker port (TLS: usually 8883)")
    topic: str = Field("alpr/{camera}/plate", description="topic template; {camera} is replaced")
    qos: Literal[0, 1, 2] = 1
    username_env: str | None = Field(None, description="environment variable holding the user")
    password_env: str | None = Field(None, description="environment variable holding the password")
    tls: MqttTls | None = Field(None, description="connect with TLS (absent: plain TCP)")
    availability_topic: str | None = Field(
        None,
        description="retained `online`/`offline` status of this client ({camera} replaced); "
        "`offline` is the broker's last will, sent when the client dies. Default: none, or "
        "`<discovery.state_topic>/availability` with discovery",
    )
    discovery: MqttDiscovery | None = Field(
        None, description="Home Assistant MQTT discovery (absent: off)"
    )


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
    sentinels: list[
        Annotated[str, Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]{1,253}):[0-9]{1,5}$")]
    ] = Field(
        default_factory=list,
        max_length=16,
        description="Redis Sentinel addresses (`host:port`, `[v6]:port`): when set, the master "
        "of `sentinel_service` is asked of them (again after every failover); the URL's "
        "host:port is then ignored, its db, user/password and TLS still apply",
    )
    sentinel_service: str = Field(
        "mymaster", pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="the Sentinel master name"
    )
    sentinel_password_env: str | None = Field(
        None,
        pattern=ENV_VAR,
        description="environment variable with the sentinels' own password (requirepass)",
    )
    wait_replicas: int = Field(
        0,
        ge=0,
        le=16,
        description="event streams: after each XADD batch, WAIT for this many replicas "
        "(0: no wait); an acknowledged event then survives a failover, and a batch the "
        "replicas did not confirm in time is counted as `unconfirmed`",
    )
    wait_timeout_ms: int = Field(
        100, ge=1, le=10_000, description="longest WAIT for `wait_replicas` (milliseconds)"
    )

    @model_validator(mode="after")
    def _sentinel_addresses(self) -> Redis:
        for addr in self.sentinels:
            if not 1 <= int(addr.rsplit(":", 1)[1]) <= 65535:
                raise ValueError(f"sentinels: port out of range 1-65535 in {addr!r}")
        if len(set(self.sentinels)) != len(self.sentinels):
            raise ValueError(f"sentinels: an address is listed twice in {self.sentinels}")
        if self.sentinel_password_env and not self.sentinels:
            raise ValueError("sentinel_password_env is set but no sentinels are")
        return self

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``sentinels`` as ``(host, port)`` pairs (IPv6 brackets removed)."""
        pairs = (a.rsplit(":", 1) for a in self.sentinels)
        return [(h.strip("[]"), int(p)) for h, p in pairs]


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
