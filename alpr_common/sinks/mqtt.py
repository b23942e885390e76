"""MQTT sink (paho-mqtt 2.x): publishes ``event.to_json()`` to ``topic`` with ``{camera}``
replaced by the sanitised camera id; optionally over TLS, with an availability topic (MQTT
last will) and Home Assistant discovery (``alpr_common.hass``).

The client runs paho's network thread (``loop_start``), connects asynchronously and
reconnects on its own (``reconnect_delay_set``), so ``emit`` never waits on the broker.
While the broker is away paho keeps QoS 1/2 messages in its outgoing queue (bounded by
``max_queued``) and sends them after reconnecting; a full queue, or a QoS 0 message with no
connection, is dropped and counted. Credentials are read from the environment variables
named in the configuration and never logged. A connection that fails (broker unreachable,
TLS handshake, credentials refused) is logged with its reason (an error the first time and
whenever the reason changes) and counted in ``connect_failed``; the client keeps retrying.

With an ``availability_topic`` the broker holds the client's last will (``offline``,
retained) and the client publishes ``online`` (retained) after each connection, ``offline``
at ``close``. With ``discovery`` the client announces its HA device after each connection
(and again when HA announces ``online`` on ``<prefix>/status``) and updates the entities'
retained state topics on each event. ``close`` waits briefly for unacknowledged
publishes, then disconnects; unacknowledged events are counted as dropped.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from alpr_common import hass
from alpr_common.config import MqttDiscovery, MqttSink, MqttTls
from alpr_common.files import safe_name
from alpr_common.secrets import secret_from_env

from .base import SinkEvent

log = logging.getLogger(__name__)

SERVICE_QOS = 1  # availability, discovery and HA state messages


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


def tls_context(tls: MqttTls) -> ssl.SSLContext:
    """The client TLS context: the broker's chain verified against ``ca_file`` (or the
    system's CAs), its name checked unless ``insecure``. Raises ``ValueError`` naming an
    unreadable or invalid file."""
    for what, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file),
                       ("key_file", tls.key_file)):  # fmt: skip
        if path is not None and not Path(path).is_file():
            raise ValueError(f"MQTT tls.{what} {str(path)!r} is not a readable file")
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"MQTT tls: cannot load the certificates ({exc})") from None
    ctx.check_hostname = not tls.insecure
    return ctx


class _Client(mqtt.Client):
    """paho's client, keeping the error of the last failed connection attempt (paho's
    ``on_connect_fail`` does not say why)."""

    last_error: BaseException | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_error = exc
            raise


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
        tls: MqttTls | None = None,
        availability_topic: str | None = None,
        discovery: MqttDiscovery | None = None,
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
        self.hass = _hass_device(camera, discovery, availability_topic)
        if availability_topic is not None:
            self.availability: str | None = mqtt_topic(availability_topic, camera)
        else:
            self.availability = self.hass.availability if self.hass else None
        self.image_max = discovery.max_image_bytes if discovery else 0
        self.present_timeout_s = discovery.present_timeout_s if discovery else 0.0
        self._lock = threading.Lock()
        self._pending: set[int] = set()  # event mids published, not acknowledged yet
        self._service: set[int] = set()  # availability / HA mids not acknowledged yet
        self._early_acks: set[int] = set()  # acknowledged before publish() returned
        self._counts = {"delivered": 0, "failed": 0, "dropped": 0, "connect_failed": 0}
        if self.hass is not None:
            self._counts |= {"ha_published": 0, "ha_dropped": 0}
        self._connected = threading.Event()
        self._ever_connected = False
        self._closed = False
        self._last_fail = ""
        self._refused = False  # the last CONNACK refused us (counted already)
        self._tls = tls is not None
        self._present = False
        self._present_gen = 0  # bumped by every change; a stale timer does nothing
        self._present_timer: threading.Timer | None = None
        self._ha_lock = threading.Lock()  # HA state is read and published in one step

        cid = client_id or f"ovr-alpr-{safe_name(camera, 32)}-{uuid.uuid4().hex[:8]}"
        self.client = _Client(
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
        if tls is not None:
            self.client.tls_set_context(tls_context(tls))
            self.client.tls_insecure_set(tls.insecure)
        if self.availability is not None:
            self.client.will_set(self.availability, hass.OFFLINE, qos=SERVICE_QOS, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        if self.hass is not None:
            self.client.message_callback_add(self.hass.status_topic, self._on_hass_status)
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
            tls=cfg.tls,
            availability_topic=cfg.availability_topic,
            discovery=cfg.discovery,
        )

    # --- paho callbacks (network thread) ----------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = True
            self._connect_failed(f"refused by the broker: {reason}")
            return
        self._connected.set()
        self._last_fail = ""
        log.info(
            "mqtt %s:%d: %s",
            self.host,
            self.port,
            "reconnected" if self._ever_connected else "connected",
        )
        self._ever_connected = True
        if self.availability is not None:
            self._send([hass.Message(self.availability, hass.ONLINE)])
        if self.hass is not None:
            client.subscribe(self.hass.status_topic, qos=1)
            self._announce()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        exc = getattr(client, "last_error", None)
        self._connect_failed(f"{type(exc).__name__}: {exc}" if exc else "connection failed")

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was, refused = self._connected.is_set(), self._refused
        self._connected.clear()
        self._refused = False
        if self._closed:
            return
        if was:
            log.warning("mqtt %s:%d: disconnected (%s), reconnecting", self.host, self.port, reason)
        elif not refused:  # closed before the broker's answer: TLS or plain to the wrong port?
            self._connect_failed(
                f"connection closed before the broker answered ({reason}): a TLS port "
                "without `tls:`, or a client certificate the broker requires?"
            )

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
                self._counts["delivered"] += 1
            elif mid in self._service:
                self._service.discard(mid)
            else:
                self._early_acks.add(mid)

    def _on_hass_status(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.payload == hass.ONLINE.encode():
            log.info("mqtt: Home Assistant is online; announcing %s", self.hass)
            self._announce()

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
        body = event.to_json()
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        info = self.client.publish(self.topic, payload, qos=self.qos)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            dropped = self._count("dropped")
            if dropped == 1 or dropped % 1000 == 0:
                log.warning("mqtt %s: outgoing queue full, %d dropped so far", self.topic, dropped)
        elif self.qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._count("dropped")  # QoS 0 is not queued by paho while disconnected
        else:
            self._track(info.mid, self._pending)
        if self.hass is not None:
            with self._ha_lock:
                self._send(self._hass_updates(body))

    def close(self, timeout_s: float | None = None) -> None:
        if self._closed:
            return
        deadline = time.monotonic() + (self.close_timeout_s if timeout_s is None else timeout_s)
        if self.hass is not None:
            with self._ha_lock:
                self._cancel_present_timer()
                if self.hass.role == "gate" and self.connected:
                    self._send([hass.present_message(self.hass, False)])
        if self.availability is not None and self.connected:
            self._send([hass.Message(self.availability, hass.OFFLINE)])
        while True:
            with self._lock:
                left = len(self._pending) + len(self._service)
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
            self._service.clear()
            self._early_acks.clear()
            self._counts["dropped"] += left
        if left:
            log.warning("mqtt %s: %d unacknowledged event(s) dropped at close", self.topic, left)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "pending": len(self._pending)}

    # --- Home Assistant --------------------------------------------------------------
    def _announce(self) -> None:
        assert self.hass is not None
        with self._ha_lock:
            messages = hass.discovery_messages(self.hass)
            if self.hass.role == "gate":
                messages.append(hass.present_message(self.hass, self._present))
            self._send(messages)

    def _hass_updates(self, body: dict[str, Any]) -> list[hass.Message]:
        assert self.hass is not None
        if self.hass.role == "camera":
            crop = (
                hass.read_crop(body.get("crop_path"), self.image_max)
                if hass.is_plate_event(body)
                else None
            )
            return hass.camera_messages(self.hass, body, crop)
        messages = hass.gate_messages(self.hass, body)
        present = hass.present_after(body)
        if present is not None:
            messages.append(self._set_present(present))
        return messages

    def _set_present(self, present: bool) -> hass.Message:
        """``present`` now; an ON turns itself OFF after ``present_timeout_s`` unless a
        later allow restarts the timer."""
        assert self.hass is not None
        self._cancel_present_timer()
        with self._lock:
            self._present = present
            self._present_gen += 1
            gen = self._present_gen
        if present:
            timer = threading.Timer(self.present_timeout_s, self._present_expired, (gen,))
            timer.daemon = True
            self._present_timer = timer
            timer.start()
        return hass.present_message(self.hass, present)

    def _present_expired(self, gen: int) -> None:
        with self._ha_lock:
            with self._lock:
                if self._closed or self.hass is None or gen != self._present_gen:
                    return
                self._present = False
            self._send([hass.present_message(self.hass, False)])

    def _cancel_present_timer(self) -> None:
        timer, self._present_timer = self._present_timer, None
        if timer is not None:
            timer.cancel()

    # --- internals -------------------------------------------------------------------
    def _send(self, messages: Iterable[hass.Message]) -> None:
        """Publish availability / HA messages (QoS 1); not counted as events."""
        for m in messages:
            info = self.client.publish(m.topic, m.payload, qos=SERVICE_QOS, retain=m.retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                if "ha_dropped" in self._counts:
                    self._count("ha_dropped")
                continue
            self._track(info.mid, self._service)
            if "ha_published" in self._counts:
                self._count("ha_published")

    def _track(self, mid: int, waiting: set[int]) -> None:
        with self._lock:  # never held while calling paho (its thread takes it in on_publish)
            if mid in self._early_acks:
                self._early_acks.discard(mid)
                if waiting is self._pending:
                    self._counts["delivered"] += 1
            else:
                waiting.add(mid)

    def _connect_failed(self, why: str) -> None:
        n = self._count("connect_failed")
        if why != self._last_fail:
            self._last_fail = why
            tls = " (TLS)" if self._tls else ""
            log.error(
                "mqtt %s:%d%s: cannot connect, %s; %d failed attempt(s), retrying",
                self.host, self.port, tls, why, n,
            )  # fmt: skip
        elif n % 100 == 0:
            log.warning("mqtt %s:%d: still cannot connect (%s); %d failed attempts",
                        self.host, self.port, why, n)  # fmt: skip

    def _count(self, key: str, n: int = 1) -> int:
        with self._lock:
            self._counts[key] += n
            return self._counts[key]

    def __repr__(self) -> str:
        return f"MqttPublisher({self.host}:{self.port}, topic={self.topic!r}, qos={self.qos})"


def _hass_device(
    ident: str, discovery: MqttDiscovery | None, availability_topic: str | None
) -> hass.HassDevice | None:
    if discovery is None:
        return None
    base = mqtt_topic(discovery.state_topic.replace("{gate}", "{camera}"), ident)
    availability = (
        mqtt_topic(availability_topic, ident)
        if availability_topic is not None
        else f"{base}/availability"
    )
    return hass.HassDevice(
        role=discovery.role,
        ident=ident,
        prefix=discovery.prefix,
        base=base,
        availability=availability,
        node_id=discovery.node_id or "",
        name=discovery.name or "",
        sw_version=hass.sw_version(),
    )
