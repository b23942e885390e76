"""Event sinks against real transports: a file, redis-server, a local HTTP server, mosquitto."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import TypeAdapter

from alpr_common.config import JsonlSink, MqttSink, RedisStreamSink, Sink
from alpr_common.sinks import (
    JsonlWriter,
    MqttPublisher,
    RedisStreamWriter,
    SinkSet,
    build_sink,
    build_sinks,
    mqtt_topic,
)
from edge_client.crops import safe_name, save_crop
from edge_client.events import PlateEvent
from tests.redis_server import RedisProc, start_redis

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def make_event(n: int = 0, camera: str = "cam1", plate: str = "AB12CDE", **kw: Any) -> PlateEvent:
    fields: dict[str, Any] = {
        "event_id": f"evt-{n:04d}",
        "camera": camera,
        "track_id": f"{camera}:{n}",
        "plate": plate,
        "raw_text": plate,
        "confidence": 0.97312,
        "region": "uk",
        "format": "uk_current",
        "first_seen": 1_700_000_000.0 + n,
        "last_seen": 1_700_000_001.5 + n,
        "box": (10.04, 20.0, 110.0, 60.06),
        "vehicle_class": "car",
        "frame": 100 + n,
        "latency_ms": 42.123,
        "votes": 3,
        "extra": {"n": n},
    }
    fields.update(kw)
    return PlateEvent(**fields)


def wait_until(cond: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 5.0) -> None:
    def is_open() -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0

    if not wait_until(is_open, timeout, 0.02):
        raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- JSONL ------------------------------------------------------------------------------
def test_jsonl_round_trip(tmp_path: Path) -> None:
    sink = build_sink(
        JsonlSink(path=Path("events/{camera}.jsonl")), camera="cam1", output_dir=tmp_path
    )
    assert isinstance(sink, JsonlWriter)
    assert sink.path == tmp_path / "events" / "cam1.jsonl"
    events = [make_event(i, plate=p) for i, p in enumerate(["AB12CDE", "ÆØÅ123", 'X"\\Y'])]
    for e in events[:2]:
        sink.emit(e)
    # flushed per event: readable before close
    assert len(sink.path.read_text("utf-8").splitlines()) == 2
    sink.emit(events[2])
    sink.close()
    lines = sink.path.read_text("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [e.to_json() for e in events]
    # appends across instances
    again = JsonlWriter(sink.path)
    again.emit(events[0])
    again.close()
    assert len(sink.path.read_text("utf-8").splitlines()) == 4


def test_jsonl_path_camera_is_sanitised(tmp_path: Path) -> None:
    sink = build_sink(
        JsonlSink(path=Path("{camera}/events.jsonl")), camera="../../etc", output_dir=tmp_path
    )
    assert isinstance(sink, JsonlWriter)
    sink.emit(make_event())
    sink.close()
    assert sink.path.resolve().is_relative_to(tmp_path.resolve())
    assert sink.path.parent.name == "_.._etc"


# --- Redis stream -----------------------------------------------------------------------
@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProc]:
    server = start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


StreamEntries = list[tuple[str, dict[str, str]]]


def xrange(client: redis.Redis, stream: str) -> StreamEntries:
    return cast(StreamEntries, client.xrange(stream))


def redis_client(port: int) -> redis.Redis:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        port=port,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def test_redis_stream_xadd_capped(redis_server: RedisProc, tmp_path: Path) -> None:
    client = redis_client(redis_server.port)
    sink = build_sink(
        RedisStreamSink(stream="alpr:test", maxlen=10),
        camera="cam1",
        redis_client=client,
        output_dir=tmp_path,
    )
    assert isinstance(sink, RedisStreamWriter)
    events = [make_event(i) for i in range(300)]
    for e in events:
        sink.emit(e)
    assert sink.flush(5)
    sink.close()
    assert sink.stats() == {"delivered": 300, "failed": 0, "dropped": 0, "buffered": 0}
    n = client.xlen("alpr:test")
    assert 10 <= n < 300  # MAXLEN ~ trims whole macro nodes (100 entries by default)
    entries = xrange(client, "alpr:test")
    assert len(entries) == n
    last = entries[-1][1]
    assert json.loads(last["event"]) == events[-1].to_json()
    assert last["camera"] == "cam1" and last["plate"] == "AB12CDE"
    # every entry parses, in order, and they are the newest ones
    ids = [json.loads(fields["event"])["event_id"] for _, fields in entries]
    assert ids == [e.event_id for e in events[-n:]]


def test_redis_outage_buffers_then_delivers(redis_server: RedisProc) -> None:
    client = redis_client(redis_server.port)
    sink = RedisStreamWriter(
        client, "alpr:events", 1000, camera="cam1", retry_interval_s=0.02, max_retry_interval_s=0.05
    )
    sink.emit(make_event(0))
    assert sink.flush(5)
    redis_server.stop()
    t0 = time.perf_counter()
    for i in range(1, 6):
        sink.emit(make_event(i))  # must neither raise nor block
    assert time.perf_counter() - t0 < 0.25
    assert not sink.flush(0.2)
    assert sink.stats() == {"delivered": 1, "failed": 0, "dropped": 0, "buffered": 5}
    redis_server.start()  # fresh server (no persistence): only the buffered events arrive
    sink.emit(make_event(6))
    assert sink.flush(5)
    assert sink.stats() == {"delivered": 7, "failed": 0, "dropped": 0, "buffered": 0}
    ids = [json.loads(f["event"])["event_id"] for _, f in xrange(client, "alpr:events")]
    assert ids == [f"evt-{i:04d}" for i in range(1, 7)]
    sink.close()


def test_redis_default_client_outage_does_not_block() -> None:
    # redis-py's default client retries a refused connection for seconds; emit must not wait
    sink = RedisStreamWriter(redis.Redis(port=free_port()), "s", 100)
    t0 = time.perf_counter()
    for i in range(50):
        sink.emit(make_event(i))
    assert time.perf_counter() - t0 < 0.25
    sink.close(timeout_s=0.1)
    assert sink.stats() == {"delivered": 0, "failed": 0, "dropped": 50, "buffered": 0}


def test_redis_buffer_overflow_counts_drops_and_close_drops_rest() -> None:
    client = redis_client(free_port())  # nothing listens there
    sink = RedisStreamWriter(client, "s", 100, buffer_size=3, retry_interval_s=60)
    for i in range(5):
        sink.emit(make_event(i))
    assert sink.stats() == {"delivered": 0, "failed": 0, "dropped": 2, "buffered": 3}
    sink.close()  # wakes the writer for one last (failing) attempt
    assert sink.stats() == {"delivered": 0, "failed": 0, "dropped": 5, "buffered": 0}
    sink.emit(make_event(9))  # after close: counted, not raised
    assert sink.stats()["dropped"] == 6


def test_redis_retry_interval_limits_attempts() -> None:
    client = redis_client(free_port())
    calls = 0
    real_xadd, real_pipeline = client.xadd, client.pipeline

    def count(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            return real(*a, **kw)

        return wrapper

    client.xadd = count(real_xadd)  # type: ignore[method-assign]
    client.pipeline = count(real_pipeline)  # type: ignore[method-assign]
    sink = RedisStreamWriter(client, "s", 100, retry_interval_s=60)
    for i in range(20):
        sink.emit(make_event(i))
    assert wait_until(lambda: calls >= 1)
    time.sleep(0.1)
    assert calls == 1  # one failed attempt, then waiting out the retry interval
    sink.close()
    assert calls == 2  # close asked for one last attempt
    assert sink.stats()["dropped"] == 20


def test_build_redis_sink_needs_client(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Redis client"):
        build_sink(RedisStreamSink(), camera="cam1", output_dir=tmp_path)


# --- webhook receiver (also used by test_gate_service; the sink's tests: test_webhook.py) ---
@dataclass
class Hook:
    """A scripted local endpoint: answers the next status in ``script`` (then 200)."""

    script: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self.gate.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def start(self, port: int = 0) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.entered.set()
                hook.gate.wait(10)
                status = hook.script.pop(0) if hook.script else 200
                hook.statuses.append(status)
                hook.headers.append(dict(self.headers))
                if status == 200:
                    hook.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        if self.server is not None:
            self.gate.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    h = Hook()
    h.start()
    try:
        yield h
    finally:
        h.stop()


# --- MQTT -------------------------------------------------------------------------------
FAST_RECONNECT: dict[str, Any] = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.2}


@dataclass
class Broker:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.dir / f"mosquitto-{self.port}.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        log = (self.dir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class Subscriber:
    def __init__(self, port: int, topic: str = "alpr/#") -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}"
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, json.loads(m.payload))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscriber did not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(free_port(), tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_mqtt_publishes_json(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port)
    try:
        sink = build_sink(
            MqttSink(host="127.0.0.1", port=broker.port, qos=1),
            camera="cam1",
            output_dir=tmp_path,
        )
        assert isinstance(sink, MqttPublisher)
        assert sink.wait_connected(5)
        events = [make_event(i) for i in range(3)]
        for e in events:
            sink.emit(e)
        assert wait_until(lambda: len(sub.messages) == 3)
        sink.close()
        assert sub.messages == [("alpr/cam1/plate", e.to_json()) for e in events]
        assert sink.stats() == {
            "delivered": 3, "failed": 0, "dropped": 0, "pending": 0, "connect_failed": 0
        }  # fmt: skip
    finally:
        sub.close()


def test_mqtt_broker_outage_queues_qos1(tmp_path: Path) -> None:
    broker = Broker(free_port(), tmp_path)
    sink = MqttPublisher(
        "127.0.0.1", broker.port, "alpr/{camera}/plate", 1, camera="cam2", **FAST_RECONNECT
    )
    sub: Subscriber | None = None
    try:
        for i in range(3):
            sink.emit(make_event(i, camera="cam2"))  # broker down: queued by paho, no raise
        assert sink.stats()["pending"] == 3
        broker.start()
        sub = Subscriber(broker.port)
        # paho reconnects on its own and then sends the queued messages
        assert wait_until(lambda: len(sub.messages) == 3, timeout=8)
        assert [m[1]["event_id"] for m in sub.messages] == ["evt-0000", "evt-0001", "evt-0002"]
        sink.close()
        assert sink.stats()["delivered"] == 3
    finally:
        if sub is not None:
            sub.close()
        sink.close()
        broker.stop()


def test_mqtt_qos0_without_broker_counts_drops() -> None:
    sink = MqttPublisher("127.0.0.1", free_port(), qos=0, camera="cam1", **FAST_RECONNECT)
    try:
        sink.emit(make_event(0))
        assert sink.stats()["dropped"] == 1
    finally:
        sink.close()


def test_mqtt_queue_bound_counts_drops() -> None:
    sink = MqttPublisher(
        "127.0.0.1", free_port(), qos=1, camera="cam1", max_queued=4, **FAST_RECONNECT
    )
    try:
        for i in range(10):
            sink.emit(make_event(i))
        assert event_stats(sink) == {"delivered": 0, "failed": 0, "dropped": 6, "pending": 4}
    finally:
        sink.close()
    assert event_stats(sink) == {"delivered": 0, "failed": 0, "dropped": 10, "pending": 0}


def event_stats(sink: MqttPublisher) -> dict[str, int]:
    return {k: v for k, v in sink.stats().items() if k != "connect_failed"}


@pytest.mark.parametrize(
    ("template", "camera", "topic"),
    [
        ("alpr/{camera}/plate", "cam1", "alpr/cam1/plate"),
        ("alpr/{camera}/plate", "gate/north", "alpr/gate_north/plate"),
        ("alpr/{camera}/plate", "+", "alpr/_/plate"),
        ("alpr/{camera}/plate", "#", "alpr/_/plate"),
        ("alpr/{camera}/plate", "a+b#c", "alpr/a_b_c/plate"),
        ("alpr/{camera}/plate", "../x", "alpr/_x/plate"),
        ("alpr/{camera}/plate", "", "alpr/_/plate"),
        ("site1/alpr", "cam1", "site1/alpr"),
        ("{camera}", "cam.1-a_B", "cam.1-a_B"),
    ],
)
def test_mqtt_topic_sanitised(template: str, camera: str, topic: str) -> None:
    assert mqtt_topic(template, camera) == topic


@pytest.mark.parametrize("template", ["alpr/+/plate", "alpr/#", "", "a\0b"])
def test_mqtt_topic_template_rejected(template: str) -> None:
    with pytest.raises(ValueError):
        mqtt_topic(template, "cam1")


def test_mqtt_credentials_from_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, broker: Broker
) -> None:
    cfg = MqttSink(
        host="127.0.0.1", port=broker.port, username_env="T_MQTT_USER", password_env="T_MQTT_PASS"
    )
    monkeypatch.delenv("T_MQTT_USER", raising=False)
    with pytest.raises(ValueError, match="T_MQTT_USER"):
        build_sink(cfg, camera="cam1", output_dir=tmp_path)
    monkeypatch.setenv("T_MQTT_USER", "user")
    monkeypatch.setenv("T_MQTT_PASS", "s3cret-value")
    sink = build_sink(cfg, camera="cam1", output_dir=tmp_path)
    assert isinstance(sink, MqttPublisher)
    assert "s3cret" not in repr(sink)
    assert sink.wait_connected(5)  # the anonymous test broker accepts any credentials
    sink.close()


# --- SinkSet / factory ------------------------------------------------------------------
class ListSink:
    def __init__(self) -> None:
        self.events: list[PlateEvent] = []
        self.closed = False

    def emit(self, event: PlateEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True


class BrokenSink:
    def emit(self, event: PlateEvent) -> None:
        raise OSError("disk on fire")

    def close(self) -> None:
        raise RuntimeError("cannot close either")

    def stats(self) -> dict[str, int]:
        return {"delivered": 0, "failed": 0, "dropped": 7}


def test_sinkset_isolates_failures(caplog: pytest.LogCaptureFixture) -> None:
    before, after = ListSink(), ListSink()
    sinks = SinkSet([("a", before), ("broken", BrokenSink()), ("a", after)])
    assert [name for name, _ in sinks.sinks] == ["a", "broken", "a#2"]
    for i in range(150):
        sinks.emit(make_event(i))
    sinks.close()  # a raising close does not stop the others closing
    assert len(before.events) == len(after.events) == 150
    assert before.closed and after.closed
    stats = sinks.stats()
    assert stats["a"] == {"emitted": 150, "failed": 0, "dropped": 0}
    assert stats["broken"] == {"emitted": 0, "failed": 150, "dropped": 7, "delivered": 0}
    warnings = [r for r in caplog.records if "disk on fire" in r.getMessage()]
    assert len(warnings) == 2  # rate-limited: 1st and 101st failure


def test_build_sinks_from_config(tmp_path: Path, hook: Hook) -> None:
    cfgs = TypeAdapter(list[Sink]).validate_python(
        [{"type": "jsonl", "path": "ev.jsonl"}, {"type": "webhook", "url": hook.url}]
    )
    with build_sinks(cfgs, camera="cam1", output_dir=tmp_path) as sinks:
        sinks.emit(make_event(1))
    assert json.loads((tmp_path / "ev.jsonl").read_text()) == make_event(1).to_json()
    assert hook.bodies == [make_event(1).to_json()]
    stats = sinks.stats()
    assert stats["jsonl"]["emitted"] == 1 and stats["webhook"]["delivered"] == 1


def test_build_sink_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown sink"):
        build_sink(object(), camera="c", output_dir=tmp_path)  # type: ignore[arg-type]


# --- crops ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("cam1", "cam1"),
        ("../../etc", "_.._etc"),
        ("..", "_"),
        (".hidden", "hidden"),
        ("a/b\\c", "a_b_c"),
        ("", "_"),
        ("gâte 1", "g_te_1"),
        ("x\0y", "x_y"),
        ("Cam-1_a.b", "Cam-1_a.b"),
    ],
)
def test_safe_name(raw: str, safe: str) -> None:
    assert safe_name(raw) == safe


@pytest.mark.parametrize(
    ("camera", "event_id", "folder", "name"),
    [
        ("cam1", "evt-1", "cam1", "evt-1.jpg"),
        ("../../etc", "../passwd", "_.._etc", "_passwd.jpg"),
        ("/abs", "a/b", "_abs", "a_b.jpg"),
        ("..", "..", "_", "_.jpg"),
    ],
)
def test_save_crop_paths(
    tmp_path: Path, camera: str, event_id: str, folder: str, name: str
) -> None:
    image = np.full((40, 100, 3), 128, np.uint8)
    ts = datetime(2024, 5, 17, 23, 30, tzinfo=UTC).timestamp()
    path = save_crop(tmp_path, camera, event_id, image, timestamp=ts)
    assert path == tmp_path / "crops" / folder / "2024-05-17" / name
    assert path.resolve().is_relative_to((tmp_path / "crops").resolve())
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary left behind


def test_save_crop_downscales_to_small_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1200, 1920, 3), dtype=np.uint8)
    path = save_crop(tmp_path, "cam1", "big", image, max_side=320, quality=80)
    data = path.read_bytes()
    assert data[:3] == b"\xff\xd8\xff"
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (200, 320, 3)
    # a small image is not upscaled
    small = save_crop(tmp_path, "cam1", "small", image[:50, :80], max_side=320)
    small_img = cv2.imdecode(np.frombuffer(small.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert small_img.shape == (50, 80, 3)
    # the same event id overwrites (atomic replace)
    again = save_crop(tmp_path, "cam1", "small", image[:30, :30], max_side=320)
    assert again == small
    assert cv2.imdecode(np.frombuffer(again.read_bytes(), np.uint8), 1).shape == (30, 30, 3)


@pytest.mark.parametrize(
    "bad", [np.zeros((0, 10, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros(5, np.uint8)]
)
def test_save_crop_rejects_non_images(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        save_crop(tmp_path, "cam1", "e", bad)
