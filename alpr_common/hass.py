"""Home Assistant MQTT discovery: what an MQTT sink announces and publishes for HA.

Pure functions over plain data; the MQTT sink (``alpr_common.sinks.mqtt``) sends what they
return. One HA *device* per camera or gate (``HassDevice``), each with two entities
(``ENTITIES``):

- camera: ``sensor`` "Last plate" (state: the plate text; attributes: confidence, region,
  direction, time, camera...) and ``image`` "Last plate crop" (the crop JPEG's raw bytes
  on ``image_topic``);
- gate: ``sensor`` "Decision" (state: ``allow`` / ``deny`` / ``unknown``; attributes: plate,
  list entry, direction, time...) and ``binary_sensor`` "Authorised vehicle present"
  (``ON`` on an allow, ``OFF`` when the vehicle exits or after ``present_timeout_s``).

Discovery configs go to ``<prefix>/<component>/<node_id>/<object_id>/config``, retained;
every entity names the device's availability topic (``online`` / ``offline``, the
client's MQTT last will). State topics (``<state_topic>/<leaf>``) are retained too, so HA
shows the last plate / decision after a restart.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

MANUFACTURER = "OVR-ALPR"
ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
Role = Literal["camera", "gate"]


def sw_version() -> str:
    try:
        return importlib.metadata.version("ovr-alpr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def node_id_for(role: Role, ident: str) -> str:
    """The default discovery node id (HA allows ``[A-Za-z0-9_-]``): ``ovr_alpr_<role>_<id>``."""
    return f"ovr_alpr_{role}_" + (re.sub(r"[^A-Za-z0-9_-]", "_", ident) or "_")


@dataclass(frozen=True)
class Message:
    """One MQTT publish: topic, payload (text or bytes) and the retain flag."""

    topic: str
    payload: str | bytes
    retain: bool = True


@dataclass(frozen=True)
class Entity:
    component: Literal["sensor", "binary_sensor", "image"]
    object_id: str  # also the unique_id suffix
    name: str
    leaf: str  # state topic: <state_topic>/<leaf>
    options: Mapping[str, Any] = field(default_factory=dict)
    attributes: bool = False  # has <state_topic>/<leaf>/attributes (json_attributes_topic)


ENTITIES: dict[Role, tuple[Entity, ...]] = {
    "camera": (
        Entity("sensor", "last_plate", "Last plate", "last_plate",
               {"icon": "mdi:card-text-outline"}, attributes=True),
        Entity("image", "last_crop", "Last plate crop", "last_crop",
               {"content_type": "image/jpeg"}),
    ),
    "gate": (
        Entity("sensor", "decision", "Decision", "decision",
               {"icon": "mdi:boom-gate", "device_class": "enum",
                "options": ["allow", "deny", "unknown"]}, attributes=True),
        Entity("binary_sensor", "authorised_present", "Authorised vehicle present",
               "present", {"device_class": "presence", "payload_on": ON, "payload_off": OFF}),
    ),
}  # fmt: skip
MODELS: dict[Role, str] = {"camera": "ALPR camera", "gate": "ALPR gate"}
_STATE_KEY = {"sensor": "state_topic", "binary_sensor": "state_topic", "image": "image_topic"}


@dataclass(frozen=True)
class HassDevice:
    """One camera or gate as an HA device. ``base`` is the (already substituted) state
    topic base and ``availability`` the client's availability topic."""

    role: Role
    ident: str  # camera or gate id
    prefix: str
    base: str
    availability: str
    node_id: str = ""
    name: str = ""
    sw_version: str = "unknown"

    def __post_init__(self) -> None:
        if not self.node_id:
            object.__setattr__(self, "node_id", node_id_for(self.role, self.ident))
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.node_id):
            raise ValueError(f"HA node id must match [A-Za-z0-9_-]+, got {self.node_id!r}")
        if not self.name:
            object.__setattr__(self, "name", f"{MODELS[self.role]} {self.ident}")
        for topic in (self.prefix, self.base, self.availability):
            if not topic or "+" in topic or "#" in topic or "\0" in topic:
                raise ValueError(f"invalid MQTT topic for HA discovery: {topic!r}")

    def topic(self, leaf: str) -> str:
        return f"{self.base}/{leaf}"

    @property
    def status_topic(self) -> str:
        """Where HA announces itself (``online`` after it starts): rediscover then."""
        return f"{self.prefix}/status"


def device_block(dev: HassDevice) -> dict[str, Any]:
    return {
        "identifiers": [dev.node_id],
        "name": dev.name,
        "manufacturer": MANUFACTURER,
        "model": MODELS[dev.role],
        "sw_version": dev.sw_version,
    }


def config_topic(dev: HassDevice, entity: Entity) -> str:
    return f"{dev.prefix}/{entity.component}/{dev.node_id}/{entity.object_id}/config"


def entity_config(dev: HassDevice, entity: Entity) -> dict[str, Any]:
    """The discovery payload HA reads for ``entity`` of ``dev``."""
    body: dict[str, Any] = {
        "name": entity.name,
        "unique_id": f"{dev.node_id}_{entity.object_id}",
        _STATE_KEY[entity.component]: dev.topic(entity.leaf),
        "availability": [
            {
                "topic": dev.availability,
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
            }
        ],
        "device": device_block(dev),
        "origin": {"name": MANUFACTURER, "sw_version": dev.sw_version},
        **entity.options,
    }
    if entity.attributes:
        body["json_attributes_topic"] = dev.topic(f"{entity.leaf}/attributes")
    return body


def discovery_messages(dev: HassDevice) -> list[Message]:
    """The retained discovery configs of ``dev``'s entities."""
    return [
        Message(config_topic(dev, e), _dumps(entity_config(dev, e))) for e in ENTITIES[dev.role]
    ]


def _iso(t: Any) -> str | None:
    try:
        t = float(t)
    except (TypeError, ValueError):
        return None
    if not t > 0 or t > 1e11:  # 0 / media time / nonsense: no wall time
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def camera_attributes(event: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("plate", "confidence", "region", "format", "direction", "vehicle_class", "color")
    return {
        **{k: event.get(k) for k in keys},
        "time": _iso(event.get("reported_at")),
        "camera": event.get("camera"),
        "event_id": event.get("event_id"),
    }


def gate_attributes(event: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("plate", "decision", "matched", "label", "confidence", "direction",
            "vehicle_class", "color", "latency_ms")  # fmt: skip
    return {
        **{k: event.get(k) for k in keys},
        "time": _iso(event.get("decided_at")),
        "gate": event.get("gate"),
        "camera": event.get("camera"),
        "event_id": event.get("event_id"),
        "record_id": event.get("record_id"),
    }


def is_plate_event(event: Mapping[str, Any]) -> bool:
    return event.get("kind", "plate") == "plate" and bool(event.get("plate"))


def is_decision(event: Mapping[str, Any]) -> bool:
    return event.get("type") == "decision" and event.get("decision") in ("allow", "deny", "unknown")


def camera_messages(dev: HassDevice, event: Mapping[str, Any], crop: bytes | None) -> list[Message]:
    """State updates for a camera event: last plate + attributes, and the crop when given.
    None for an event without a plate (a vehicle event)."""
    if not is_plate_event(event):
        return []
    out = [
        Message(dev.topic("last_plate/attributes"), _dumps(camera_attributes(event))),
        Message(dev.topic("last_plate"), str(event["plate"])),
    ]
    if crop:
        out.append(Message(dev.topic("last_crop"), crop))
    return out


def gate_messages(dev: HassDevice, event: Mapping[str, Any]) -> list[Message]:
    """State updates for a gate decision: the decision sensor and its attributes. (The
    present sensor is the caller's: it has a timer, see ``present_after``.)"""
    if not is_decision(event):
        return []
    return [
        Message(dev.topic("decision/attributes"), _dumps(gate_attributes(event))),
        Message(dev.topic("decision"), str(event["decision"])),
    ]


def present_message(dev: HassDevice, present: bool) -> Message:
    return Message(dev.topic("present"), ON if present else OFF)


def present_after(event: Mapping[str, Any]) -> bool | None:
    """What a decision does to "authorised vehicle present": a vehicle exiting turns it
    OFF, an allow (entering or direction unknown) turns it ON, anything else leaves it."""
    if not is_decision(event):
        return None
    if event.get("direction") == "exit":
        return False
    if event.get("decision") == "allow":
        return True
    return None


def read_crop(path: str | Path | None, max_bytes: int) -> bytes | None:
    """The crop JPEG at ``path``, or None (logged) when there is none, it is unreadable,
    larger than ``max_bytes`` or not a JPEG."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        log.warning("HA image: cannot read crop %s (%s)", path, exc)
        return None
    if len(data) > max_bytes:
        log.warning("HA image: crop %s is larger than max_image_bytes=%d; not sent", path,
                    max_bytes)  # fmt: skip
        return None
    if not data.startswith(b"\xff\xd8"):
        log.warning("HA image: %s is not a JPEG; not sent", path)
        return None
    return data


def _dumps(body: Mapping[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
