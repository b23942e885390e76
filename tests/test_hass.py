"""Home Assistant MQTT discovery: the payload builders (unit) and what a real mosquitto
holds for HA after an MQTT sink with ``discovery:`` ran (configs, retained states, the
plate crop, availability through the last will)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alpr_common import hass
from alpr_common.config import MqttDiscovery, MqttSink
from alpr_common.sinks import MqttPublisher, build_sink
from edge_client.crops import save_crop
from edge_client.events import Direction, VehicleEvent
from gate.access import Decision
from gate.contracts import DecisionEvent
from gate.service import _for_gate
from tests.test_sinks import Broker, broker, make_event, wait_until

__all__ = ["broker"]  # the mosquitto fixture (marks these tests `mqtt`)

REPO = Path(__file__).resolve().parent.parent


def device(role: hass.Role = "camera", ident: str = "cam1", **kw: Any) -> hass.HassDevice:
    fields: dict[str, Any] = {
        "prefix": "homeassistant",
        "base": f"ovr-alpr/{ident}",
        "availability": f"ovr-alpr/{ident}/availability",
        "sw_version": "9.9.9",
        **kw,
    }
    return hass.HassDevice(role=role, ident=ident, **fields)


def decision(
    verdict: Decision = Decision.ALLOW, direction: Direction | None = Direction.ENTRY, n: int = 0
) -> DecisionEvent:
    return DecisionEvent(
        event_id=f"north-{n}", gate="north", camera="cam1", record_id=f"rec{n}",
        plate="AB12CDE", decision=verdict, matched="AB12CDE" if verdict == "allow" else None,
        label="staff", confidence=0.93, latency_ms=420.0, decided_at=1_700_000_050.0 + n,
        direction=direction,
    )  # fmt: skip


# --- builders (unit) ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "ident", "node_id"),
    [
        ("camera", "cam1", "ovr_alpr_camera_cam1"),
        ("gate", "north", "ovr_alpr_gate_north"),
        ("camera", "cam.1 a/b", "ovr_alpr_camera_cam_1_a_b"),
        ("gate", "", "ovr_alpr_gate__"),
    ],
)
def test_node_id(role: hass.Role, ident: str, node_id: str) -> None:
    assert hass.node_id_for(role, ident) == node_id
    assert device(role, ident or "x", node_id=node_id).node_id == node_id


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"node_id": "a.b"}, "node id"),
        ({"prefix": "home/#"}, "invalid MQTT topic"),
        ({"base": "a/+/b"}, "invalid MQTT topic"),
        ({"availability": ""}, "invalid MQTT topic"),
    ],
)
def test_device_rejects(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        device(**kw)


@pytest.mark.parametrize(
    ("role", "entities"),
    [
        ("camera", [("sensor", "last_plate", "state_topic", "last_plate", True),
                    ("image", "last_crop", "image_topic", "last_crop", False)]),
        ("gate", [("sensor", "decision", "state_topic", "decision", True),
                  ("binary_sensor", "authorised_present", "state_topic", "present", False)]),
    ],
)  # fmt: skip
def test_discovery_messages(
    role: hass.Role, entities: list[tuple[str, str, str, str, bool]]
) -> None:
    dev = device(role, "north" if role == "gate" else "cam1")
    messages = hass.discovery_messages(dev)
    assert len(messages) == len(entities)
    for m, (component, object_id, key, leaf, attributes) in zip(messages, entities, strict=True):
        assert m.topic == f"homeassistant/{component}/{dev.node_id}/{object_id}/config"
        assert m.retain
        body = json.loads(m.payload)
        assert body["unique_id"] == f"{dev.node_id}_{object_id}"
        assert body[key] == f"{dev.base}/{leaf}"
        assert body["availability"] == [
            {"topic": dev.availability, "payload_available": "online",
             "payload_not_available": "offline"}
        ]  # fmt: skip
        assert body["device"] == {
            "identifiers": [dev.node_id], "name": dev.name, "manufacturer": "OVR-ALPR",
            "model": hass.MODELS[role], "sw_version": "9.9.9",
        }  # fmt: skip
        assert ("json_attributes_topic" in body) is attributes
        if attributes:
            assert body["json_attributes_topic"] == f"{dev.base}/{leaf}/attributes"
    names = {json.loads(m.payload)["name"] for m in messages}
    assert len(names) == len(entities)


def test_camera_messages() -> None:
    dev = device()
    ev = make_event(3, direction="entry", reported_at=1_700_000_000.0).to_json()
    attrs_m, state_m, crop_m = hass.camera_messages(dev, ev, b"\xff\xd8jpeg")
    assert (state_m.topic, state_m.payload, state_m.retain) == ("ovr-alpr/cam1/last_plate",
                                                                ev["plate"], True)  # fmt: skip
    assert (crop_m.topic, crop_m.payload) == ("ovr-alpr/cam1/last_crop", b"\xff\xd8jpeg")
    attrs = json.loads(attrs_m.payload)
    assert attrs_m.topic == "ovr-alpr/cam1/last_plate/attributes"
    assert {k: attrs[k] for k in ("plate", "confidence", "region", "direction", "camera")} == {
        k: ev[k] for k in ("plate", "confidence", "region", "direction", "camera")
    }
    assert attrs["time"] == "2023-11-14T22:13:20+00:00"
    assert len(hass.camera_messages(dev, ev, None)) == 2  # no crop, no image update
    vehicle = VehicleEvent(event_id="v1", camera="cam1", track_id="t1").to_json()
    assert hass.camera_messages(dev, vehicle, b"\xff\xd8") == []


@pytest.mark.parametrize(
    ("verdict", "direction", "present"),
    [
        (Decision.ALLOW, Direction.ENTRY, True),
        (Decision.ALLOW, None, True),
        (Decision.ALLOW, Direction.EXIT, False),
        (Decision.DENY, Direction.ENTRY, None),
        (Decision.UNKNOWN, None, None),
        (Decision.DENY, Direction.EXIT, False),
    ],
)
def test_gate_messages_and_present(
    verdict: Decision, direction: Direction | None, present: bool | None
) -> None:
    dev = device("gate", "north")
    ev = decision(verdict, direction).to_json()
    attrs_m, state_m = hass.gate_messages(dev, ev)
    assert (state_m.topic, state_m.payload) == ("ovr-alpr/north/decision", verdict.value)
    attrs = json.loads(attrs_m.payload)
    assert attrs["decision"] == verdict.value and attrs["gate"] == "north"
    assert attrs["direction"] == (direction.value if direction else None)
    assert hass.present_after(ev) is present
    assert hass.gate_messages(dev, make_event(1).to_json()) == []  # not a decision


@pytest.mark.parametrize(
    ("content", "max_bytes", "sent"),
    [
        (b"\xff\xd8" + b"x" * 100, 1024, True),
        (b"\xff\xd8" + b"x" * 2000, 1024, False),  # too large
        (b"GIF89a", 1024, False),  # not a JPEG
        (None, 1024, False),  # missing file
    ],
)
def test_read_crop(tmp_path: Path, content: bytes | None, max_bytes: int, sent: bool) -> None:
    path = tmp_path / "crop.jpg"
    if content is not None:
        path.write_bytes(content)
    assert hass.read_crop(path, max_bytes) == (content if sent else None)
    assert hass.read_crop(None, max_bytes) is None


def test_gate_sinks_announce_a_gate() -> None:
    cfg = MqttSink(topic="gate/{gate}/decision", discovery=MqttDiscovery(), availability_topic=None)
    built = _for_gate(cfg)
    assert built.discovery.role == "gate" and built.topic == "gate/{camera}/decision"
    assert cfg.discovery is not None and cfg.discovery.role == "camera"  # not mutated


# --- against mosquitto ------------------------------------------------------------------
class Recorder:
    """Every message on ``topics``, raw, with its retain flag (True only for a message the
    broker held before this client subscribed)."""

    def __init__(self, port: int, *topics: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"ha-{uuid.uuid4().hex}"
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(5), "recorder did not subscribe"

    def _on_message(self, client: Any, userdata: Any, m: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self._lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def last(self, topic: str) -> bytes | None:
        got = self.on(topic)
        return got[-1][0] if got else None

    def configs(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {t: json.loads(p) for t, p, _ in self.messages if t.endswith("/config")}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def hass_sink(port: int, ident: str, output_dir: Path, **discovery: Any) -> MqttPublisher:
    cfg = MqttSink(host="127.0.0.1", port=port, discovery=MqttDiscovery(**discovery))
    sink = build_sink(cfg, camera=ident, output_dir=output_dir)
    assert isinstance(sink, MqttPublisher)
    assert sink.wait_connected(5)
    return sink


def test_camera_entities_as_home_assistant_reads_them(broker: Broker, tmp_path: Path) -> None:
    live = Recorder(broker.port, "homeassistant/#", "ovr-alpr/#")
    sink = hass_sink(broker.port, "cam1", tmp_path)
    try:
        crop = save_crop(tmp_path, "cam1", "evt-0001", np.full((40, 100, 3), 90, np.uint8))
        event = make_event(1, direction="entry", reported_at=1_700_000_000.0, crop_path=str(crop))
        sink.emit(event)
        sink.emit(VehicleEvent(event_id="v1", camera="cam1", track_id="t9"))  # no plate
        sink.emit(make_event(2, plate="ZZ99ZZZ", crop_path=str(tmp_path / "gone.jpg")))
        assert wait_until(lambda: live.last("ovr-alpr/cam1/last_plate") == b"ZZ99ZZZ")

        ha = Recorder(broker.port, "homeassistant/#")  # HA starting later: retained only
        assert wait_until(lambda: len(ha.configs()) == 2)
        configs = ha.configs()
        node = "ovr_alpr_camera_cam1"
        plate_cfg = configs[f"homeassistant/sensor/{node}/last_plate/config"]
        image_cfg = configs[f"homeassistant/image/{node}/last_crop/config"]
        assert all(retained for t in configs for _, retained in ha.on(t))
        assert plate_cfg["device"] == image_cfg["device"]
        assert plate_cfg["device"]["identifiers"] == [node]
        assert plate_cfg["device"]["manufacturer"] == "OVR-ALPR"
        assert {plate_cfg["unique_id"], image_cfg["unique_id"]} == {
            f"{node}_last_plate",
            f"{node}_last_crop",
        }
        avail = plate_cfg["availability"][0]
        assert image_cfg["availability"] == plate_cfg["availability"]

        # follow the configs' topics, as HA does: retained state, attributes, image, status
        state = Recorder(
            broker.port,
            plate_cfg["state_topic"],
            plate_cfg["json_attributes_topic"],
            image_cfg["image_topic"],
            avail["topic"],
        )
        assert wait_until(lambda: len(state.messages) == 4)
        assert state.on(plate_cfg["state_topic"]) == [(b"ZZ99ZZZ", True)]
        assert state.on(image_cfg["image_topic"]) == [(crop.read_bytes(), True)]  # event 1's
        assert state.on(avail["topic"]) == [(avail["payload_available"].encode(), True)]
        attrs = json.loads(state.last(plate_cfg["json_attributes_topic"]) or b"")
        assert attrs["plate"] == "ZZ99ZZZ" and attrs["camera"] == "cam1"
        assert live.on(image_cfg["image_topic"]) == [(crop.read_bytes(), False)]
        first = json.loads(live.on(plate_cfg["json_attributes_topic"])[0][0])
        sent = event.to_json()
        assert {k: first[k] for k in ("confidence", "region", "direction")} == {
            "confidence": sent["confidence"], "region": sent["region"], "direction": "entry"
        }  # fmt: skip
        assert first["time"] == "2023-11-14T22:13:20+00:00"

        # HA restarting announces itself on <prefix>/status: the sink announces again
        before = len(live.on(f"homeassistant/sensor/{node}/last_plate/config"))
        live.client.publish("homeassistant/status", "online")
        assert wait_until(
            lambda: len(live.on(f"homeassistant/sensor/{node}/last_plate/config")) > before
        )
        state.close()
        ha.close()
    finally:
        sink.close()
        live.close()
    late = Recorder(broker.port, avail["topic"])  # a clean close says offline itself
    assert wait_until(lambda: late.on(avail["topic"]) == [(b"offline", True)])
    late.close()
    assert sink.stats()["delivered"] == 3 and sink.stats()["ha_dropped"] == 0


def test_gate_entities_decision_and_present(broker: Broker, tmp_path: Path) -> None:
    live = Recorder(broker.port, "homeassistant/#", "ovr-alpr/#")
    quick = hass_sink(broker.port, "north", tmp_path, role="gate", present_timeout_s=0.3)
    slow = hass_sink(broker.port, "south", tmp_path, role="gate", present_timeout_s=3600)
    try:
        assert wait_until(lambda: len(live.configs()) == 4)
        configs = live.configs()
        present_cfg = configs[
            "homeassistant/binary_sensor/ovr_alpr_gate_north/authorised_present/config"
        ]
        decision_cfg = configs["homeassistant/sensor/ovr_alpr_gate_north/decision/config"]
        assert present_cfg["device"]["model"] == decision_cfg["device"]["model"] == "ALPR gate"
        present, verdict = present_cfg["state_topic"], decision_cfg["state_topic"]
        assert wait_until(lambda: live.on(present) == [(b"OFF", False)])  # announced state

        quick.emit(decision(Decision.ALLOW))
        assert wait_until(lambda: live.last(verdict) == b"allow")
        assert wait_until(lambda: [p for p, _ in live.on(present)] == [b"OFF", b"ON", b"OFF"])

        south_present = present.replace("north", "south")
        slow.emit(decision(Decision.ALLOW, n=1))
        assert wait_until(lambda: live.last(south_present) == b"ON")
        slow.emit(decision(Decision.DENY, n=2))  # entering, denied: still the allowed one
        assert wait_until(lambda: live.last(verdict.replace("north", "south")) == b"deny")
        assert live.last(south_present) == b"ON"
        slow.emit(decision(Decision.UNKNOWN, Direction.EXIT, n=3))  # a vehicle leaves
        assert wait_until(lambda: live.last(south_present) == b"OFF")
        attrs = json.loads(live.last("ovr-alpr/south/decision/attributes") or b"")
        assert attrs["decision"] == "unknown" and attrs["direction"] == "exit"
    finally:
        quick.close()
        slow.close()
        live.close()


KILLED_CLIENT = """
import sys, time
from alpr_common.config import MqttDiscovery, MqttSink
from alpr_common.sinks.mqtt import MqttPublisher
cfg = MqttSink(host="127.0.0.1", port=int(sys.argv[1]), discovery=MqttDiscovery())
sink = MqttPublisher.from_config(cfg, camera="cam9")
assert sink.wait_connected(10)
print("connected", flush=True)
time.sleep(120)
"""


def test_killed_client_goes_offline_through_last_will(broker: Broker) -> None:
    watch = Recorder(broker.port, "ovr-alpr/cam9/availability")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT, str(broker.port)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
        assert wait_until(lambda: watch.last("ovr-alpr/cam9/availability") == b"online")
        proc.kill()  # no DISCONNECT: the broker sends the will
        proc.wait(10)
        assert wait_until(lambda: watch.last("ovr-alpr/cam9/availability") == b"offline")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        watch.close()
    late = Recorder(broker.port, "ovr-alpr/cam9/availability")
    assert wait_until(lambda: late.on("ovr-alpr/cam9/availability") == [(b"offline", True)])
    late.close()
