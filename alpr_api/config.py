"""The configuration tree of ``alpr-api`` (YAML, e.g. ``config/api.yaml``; unknown keys
are rejected). ``load_api_config`` also checks what a schema cannot: that the default
plate regions exist in the plate formats file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from alpr_common.config import ConfigError, Strict, load_model
from edge_client.plates.formats import load_formats, select
from ensemble.contracts import MAX_ENCODED_BYTES

__all__ = ["ApiConfig", "ConfigError", "Http", "Reading", "TritonSection", "load_api_config"]

CODEPROJECT_PORT = 32168  # CodeProject.AI Server's port: Blue Iris's default


class TritonSection(Strict):
    urls: list[str] = Field(
        default_factory=lambda: ["localhost:8001"],
        min_length=1,
        description="gRPC host:port of the Triton servers, in failover order",
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="per-request timeout")

    @field_validator("urls")
    @classmethod
    def _host_port(cls, urls: list[str]) -> list[str]:
        for url in urls:
            host, _, port = url.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in url:
                raise ValueError(f"{url!r} is not host:port (gRPC, e.g. localhost:8001)")
        return urls


class Http(Strict):
    host: str = Field("127.0.0.1", description="bind address (0.0.0.0: every interface)")
    port: int = Field(CODEPROJECT_PORT, ge=1, le=65535, description="listening port")
    token_env: str | None = Field(
        None,
        description="environment variable holding the API token; when set, recognition "
        "requests need 'Authorization: Token <token>' (or 'Bearer <token>'). The variable "
        "must then be set: the service refuses to start open by mistake",
    )
    max_upload_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        le=MAX_ENCODED_BYTES,
        description="largest request body accepted (larger: 413); the server refuses "
        f"images over {MAX_ENCODED_BYTES} bytes anyway",
    )
    max_concurrent: int = Field(
        4,
        ge=1,
        le=64,
        description="photos read through Triton at once; more requests wait their turn. "
        "Raising it helps only while Triton has idle capacity",
    )


class Reading(Strict):
    regions: list[str] = Field(
        default_factory=lambda: ["eu", "uk"],
        min_length=1,
        description="plate formats applied when a request names none (edge_client/plates/"
        "plate_formats.yaml regions, e.g. eu, uk, us, br)",
    )
    min_confidence: float = Field(
        0.4,
        ge=0,
        le=1,
        description="plates read less surely are not reported; CodeProject.AI clients may "
        "send their own min_confidence per request",
    )
    require_format: bool = Field(
        False,
        description="report only plates a format of the regions fits (drops slogans and "
        "stickers, and foreign plates too)",
    )
    max_vehicles: int = Field(
        4, ge=1, le=16, description="vehicles per photo whose crops are read (largest first)"
    )
    cascade: bool = Field(
        True,
        description="read the whole photo only when no vehicle crop gave a sure plate (the "
        "edge client's path); false: always read it too (slower, finds plates off vehicles)",
    )

    @field_validator("regions")
    @classmethod
    def _lower(cls, regions: list[str]) -> list[str]:
        return list(dict.fromkeys(r.strip().lower() for r in regions))


class ApiConfig(Strict):
    triton: TritonSection = Field(default_factory=TritonSection)
    http: Http = Field(default_factory=Http)
    reading: Reading = Field(default_factory=Reading)


def load_api_config(path: Path) -> ApiConfig:
    """Read and validate ``path``; ``ConfigError`` names every bad key and value."""
    cfg = load_model(ApiConfig, path, "alpr-api configuration")
    try:
        select(load_formats(), cfg.reading.regions)
    except ValueError as exc:
        where = f"invalid alpr-api configuration in {path}"
        raise ConfigError(f"{where}:\n  reading.regions: {exc}") from None
    return cfg
