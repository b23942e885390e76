"""MQTT sink (paho-mqtt 2.x): publishes ``event.to_json()`` to ``topic`` with ``{camera}``
replaced by the sanitised camera id.

The client runs paho's network thread (``loop_start``), connects asynchronously and
reconnects on its own (``reconnect_delay_set``), so ``emit`` never waits on the broker.
While the broker is away paho keeps QoS 1/2 messages in its outgoing queue (bounded by
``max_queued``) and sends them after reconnecting; a full queue, or a QoS 0 message with no
connection, is dropped and counted. Credentials are read from the environment variables
named in the configuration and never logged. ``close`` waits briefly for unacknowledged
publishes, then disconnects; what is still unacknowledged is counted as dropped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from alpr_common.config import MqttSink
from alpr_common.files import safe_name
from alpr_common.secrets import secret_from_env

from .base import SinkEvent

log = logging.getLogger(__name__)


def mqtt_topic(template: str, camera: str) -> str:
    """The publish topic for ``camera``: ``{camera}`` becomes one safe topic level (no
    ``/``, ``+``, ``#``). Raises ``ValueError`` when the template itself is not a valid
    publish topic (empty, wildcards, NUL)."""
    topic = template.replace("{camera}", safe_name(camera))
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise ValueError(f"invalid MQTT publish topic template {template!r}")
    if len(topic.encode("utf-8")) > 65535:
        raise ValueError("MQTT topic is longer than 65535 bytes")
    return topic


def _env(name: str | None) -> str | None:
    return secret_from_env(name, "MQTT credential")


class MqttPublisher:
    def __init__(
        self,
        host: str = "localhost",
        port: int = 1883,
        topic: str = "alpr/{camera}/plate",
        qos: int = 1,
        *,
        camera: str,
        username: str | None = None,
        password: str | None = None,
        max_queued: int = 10_000,
        keepalive_s: int = 30,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
        close_timeout_s: float = 2.0,
        client_id: str | None = None,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        self.host, self.port, self.qos = host, port, qos
        self.topic = mqtt_topic(topic, camera)
        self.close_timeout_s = close_timeout_s
        self._lock = threading.Lock()
        self._pending: set[int] = set()  # mids published, not acknowledged yet
        self._early_acks: set[int] = set()  # acknowledged before publish() returned
        self._counts = {"delivered": 0, "failed": 0, "dropped": 0}
        self._connected = threading.Event()
        self._ever_connected = False
        self._closed = False

        cid = client_id or f"ovr-alpr-{safe_name(camera, 32)}-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cid,
            protocol=mqtt.MQTTv311,
        )
        self.client.max_queued_messages_set(max_queued)
        self.client.max_inflight_messages_set(100)
        # paho annotates the delays as int but computes with them as floats
        self.client.reconnect_delay_set(
            min_delay=reconnect_min_s,  # type: ignore[arg-type]
            max_delay=reconnect_max_s,  # type: ignore[arg-type]
        )
        if username is not None or password is not None:
            self.client.username_pw_set(username or "", password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.connect_async(host, port, keepalive=keepalive_s)
        self.client.loop_start()

    @classmethod
    def from_config(
        cls,
        cfg: MqttSink,
        *,
        camera: str,
        redis_client: Any = None,
        output_dir: Path | None = None,
    ) -> MqttPublisher:
        return cls(
            cfg.host,
            cfg.port,
            cfg.topic,
            cfg.qos,
            camera=camera,
            username=_env(cfg.username_env),
            password=_env(cfg.password_env),
        )

    # --- paho callbacks (network thread) ----------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("mqtt %s:%d: connection refused (%s)", self.host, self.port, reason)
            return
        self._connected.set()
        log.info(
            "mqtt %s:%d: %s",
            self.host,
            self.port,
            "reconnected" if self._ever_connected else "connected",
        )
        self._ever_connected = True

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._closed:
            log.warning("mqtt %s:%d: disconnected (%s), reconnecting", self.host, self.port, reason)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
                self._counts["delivered"] += 1
            else:
                self._early_acks.add(mid)

    # --- Sink ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def emit(self, event: SinkEvent) -> None:
        if self._closed:
            self._count("dropped")
            return
        payload = json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":"))
        info = self.client.publish(self.topic, payload, qos=self.qos)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            dropped = self._count("dropped")
            if dropped == 1 or dropped % 1000 == 0:
                log.warning("mqtt %s: outgoing queue full, %d dropped so far", self.topic, dropped)
        elif self.qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._count("dropped")  # QoS 0 is not queued by paho while disconnected
        else:
            with self._lock:  # never held while calling paho (its thread takes it in on_publish)
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                    self._counts["delivered"] += 1
                else:
                    self._pending.add(info.mid)

    def close(self, timeout_s: float | None = None) -> None:
        if self._closed:
            return
        deadline = time.monotonic() + (self.close_timeout_s if timeout_s is None else timeout_s)
        while True:
            with self._lock:
                left = len(self._pending)
            if not left or time.monotonic() >= deadline or not self.connected:
                break
            time.sleep(0.01)
        self._closed = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
        with self._lock:
            left = len(self._pending)
            self._pending.clear()
            self._early_acks.clear()
            self._counts["dropped"] += left
        if left:
            log.warning("mqtt %s: %d unacknowledged event(s) dropped at close", self.topic, left)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "pending": len(self._pending)}

    # --- internals -------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> int:
        with self._lock:
            self._counts[key] += n
            return self._counts[key]

    def __repr__(self) -> str:
        return f"MqttPublisher({self.host}:{self.port}, topic={self.topic!r}, qos={self.qos})"
