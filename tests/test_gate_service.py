"""The gate service: camera events -> merged records -> decisions, published and stored.

Against real parts where they exist: a real redis-server (the edge clients' stream), a
real SQLite history database, a real mosquitto broker for the gate's MQTT topic. One
fake: a history whose ``save`` fails a few times, to show unacknowledged events are
re-delivered after a database outage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_client.events import camera_event as make_event
from edge_client.state.keys import camera_status
from gate.access import ListEntry
from gate.config import GateConfig, parse_gate_config
from gate.contracts import Direction, ObservationKind
from gate.history import History, HistoryQuery
from gate.service import GateService
from tests.redis_server import RedisProc, start_redis
from tests.test_sinks import Broker, Hook, Subscriber, free_port, wait_until

NOW = 1_790_000_000.0


def camera_event(
    plate: str = "KV65BZR", camera: str = "plate_cam", track: str = "r1-1", *,
    kind: str = "plate", reported_at: float = NOW, latency_ms: float = 250.0, n: int = 0,
    **kw: Any,
) -> dict[str, Any]:  # fmt: skip
    """An edge client's event JSON, exactly as its sinks write it."""
    ev = make_event(
        event_id=f"{camera}-{track}-{kind}-{n}", camera=camera, track_id=track, plate=plate,
        raw_text=plate, confidence=0.97, region="uk", format="uk_current", first_seen=12.0,
        last_seen=13.0, box=(10, 20, 110, 50), vehicle_class=kw.pop("vehicle_class", "plate"),
        frame=30, latency_ms=latency_ms, votes=2, kind=kind, reported_at=reported_at, **kw,
    )  # fmt: skip
    return ev.to_json()


def gate_config(
    tmp_path: Path, publish: list[dict[str, Any]] | None = None, **gate: Any
) -> GateConfig:
    return parse_gate_config({
        "database": {"url": f"sqlite:///{tmp_path / 'h.db'}"},
        "crops_dir": str(tmp_path / "crops"),
        "gates": {"g1": {
            "plate_camera": "plate_cam", "overview_camera": "front_cam", "merge_window_s": 5,
            "lists": {
                "allow_tolerance": 1,
                "allow": [{"plate": "KV65BZR", "label": "resident"},
                          {"plate": "OLD1", "valid_until": "2020-01-01T00:00:00Z"},
                          {"pattern": "^FLEET[0-9]{2}$", "label": "fleet"}],
                "deny": [{"plate": "BAD123", "label": "banned"}, {"plate": "FLEET13"}],
            },
            "publish": publish or [{"type": "jsonl", "path": str(tmp_path / "{gate}.jsonl")}],
            **gate,
        }},
    })  # fmt: skip


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    h = History(f"sqlite:///{tmp_path / 'h.db'}", crops_dir=tmp_path / "crops")
    yield h
    h.close()


def service(tmp_path: Path, history: History, redis_client: Any = None, **kw: Any) -> GateService:
    return GateService(
        gate_config(tmp_path, **kw), history, redis_client, output_dir=tmp_path,
        clock=lambda: NOW + 0.05,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("plate", "decision", "matched"),
    [
        ("KV65BZR", "allow", "KV65BZR"),
        ("KV65BZP", "allow", "KV65BZR"),  # one OCR slip tolerated on the allow list
        ("BAD123", "deny", "BAD123"),
        ("BAD128", "unknown", None),  # deny lists match exactly
        ("FLEET07", "allow", "^FLEET[0-9]{2}$"),
        ("FLEET13", "deny", "FLEET13"),  # deny wins over an allow pattern
        ("OLD1", "unknown", None),  # its validity ended
        ("ZZ99ZZZ", "unknown", None),
    ],
    ids=[
        "exact",
        "one-slip",
        "deny",
        "deny-exact-only",
        "pattern",
        "deny-wins",
        "expired",
        "unknown",
    ],
)
def test_decisions(
    tmp_path: Path, history: History, plate: str, decision: str, matched: str | None
) -> None:
    svc = service(tmp_path, history)
    out = svc.handle(camera_event(plate))
    assert out is not None
    assert (out.decision, out.matched, out.plate) == (decision, matched, plate)
    # latency = event latency (first sighting -> emitted) + emitted -> decided
    assert out.latency_ms == pytest.approx(250.0 + 50.0, abs=1.0)
    (rec,) = history.search(HistoryQuery(plate=plate))
    assert (rec.decision, rec.gate, rec.plate_camera) == (decision, "g1", "plate_cam")
    assert rec.decision_latency_ms == pytest.approx(out.latency_ms)
    svc.stop()
    lines = [json.loads(x) for x in (tmp_path / "g1.jsonl").read_text().splitlines()]
    assert [(x["type"], x["plate"], x["decision"]) for x in lines] == [
        ("decision", plate, decision)
    ]


def test_list_change_applies_to_the_next_decision(tmp_path: Path, history: History) -> None:
    svc = service(tmp_path, history)
    first = svc.handle(camera_event("NEW1ABC", track="t1", n=1))
    assert first is not None and first.decision == "unknown"
    history.add_entry("g1", "deny", ListEntry(plate="NEW1ABC", label="operator"))
    second = svc.handle(camera_event("NEW1ABC", track="t2", n=2))
    assert second is not None and (second.decision, second.label) == ("deny", "operator")
    svc.stop()


def test_config_lists_are_seeded_once(tmp_path: Path, history: History) -> None:
    GateService(gate_config(tmp_path), history, None, output_dir=tmp_path).stop()
    (kv,) = [e for e in history.entries("g1") if e.entry.plate == "KV65BZR"]
    history.remove_entry("g1", kv.id)  # an operator removes it; a restart must not undo that
    svc = GateService(gate_config(tmp_path), history, None, output_dir=tmp_path)
    assert all(e.entry.plate != "KV65BZR" for e in history.entries("g1"))
    assert svc.lists("g1").allow and all(e.plate != "KV65BZR" for e in svc.lists("g1").allow)
    svc.stop()


@pytest.mark.parametrize("overview_first", [False, True], ids=["plate-first", "overview-first"])
def test_two_cameras_one_record(tmp_path: Path, history: History, overview_first: bool) -> None:
    svc = service(tmp_path, history)
    plate = camera_event("KV65BZR", track="p7", n=1)
    front = camera_event(
        "", camera="front_cam", track="f3", kind="vehicle", n=2, latency_ms=900.0,
        vehicle_class="car", color="red", direction="entry", dwell_s=4.5,
    )  # fmt: skip
    decisions = [svc.handle(e) for e in ([front, plate] if overview_first else [plate, front])]
    assert [d is not None for d in decisions] == (
        [False, True] if overview_first else [True, False]
    )
    (rec,) = history.search(HistoryQuery(gate="g1"))
    assert (rec.plate, rec.vehicle_class, rec.color, rec.direction) == (
        "KV65BZR",
        "car",
        "red",
        Direction.ENTRY,
    )
    assert (rec.plate_camera, rec.overview_camera, rec.decision) == (
        "plate_cam",
        "front_cam",
        "allow",
    )
    assert rec.first_seen == pytest.approx(NOW - 0.9)  # the front camera saw it first
    svc.stop()


def test_malformed_and_foreign_events(tmp_path: Path, history: History) -> None:
    svc = service(tmp_path, history)
    with pytest.raises(ValueError, match="malformed"):
        svc.handle({"camera": "plate_cam"})
    with pytest.raises(ValueError, match="malformed"):
        svc.handle({**camera_event(), "plate": ""})
    with pytest.raises(ValueError, match="malformed"):
        svc.handle({**camera_event(), "direction": "sideways"})
    assert svc.handle(camera_event(camera="other_cam")) is None
    assert svc.counts["ignored_camera"] == 1
    assert history.search(HistoryQuery()) == []
    svc.stop()


# --- the stream consumer, against a real redis-server and a real broker ------------------
@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProc]:
    proc = start_redis(tmp_path)
    yield proc
    proc.stop()


def xadd(client: Any, event: dict[str, Any] | str, stream: str = "alpr:events") -> None:
    raw = event if isinstance(event, str) else json.dumps(event)
    client.xadd(stream, {"event": raw, "camera": "x", "plate": "x"})


def test_consumer_decides_publishes_mqtt_and_stores(
    tmp_path: Path, history: History, redis_proc: RedisProc
) -> None:
    broker = Broker(free_port(), tmp_path)
    broker.start()
    sub = Subscriber(broker.port, topic="gate/#")
    client = redis_proc.client()
    publish = [{"type": "mqtt", "host": "127.0.0.1", "port": broker.port,
                "topic": "gate/{gate}/decision", "qos": 1}]  # fmt: skip
    svc = GateService(gate_config(tmp_path, publish=publish), history, client, output_dir=tmp_path)
    try:
        svc.start()
        assert wait_until(lambda: client.exists("alpr:events") == 1, 5)  # group created
        now = time.time()
        xadd(client, camera_event("KV65BZR", track="a", n=1, reported_at=now))
        xadd(client, "{not json")
        xadd(client, camera_event("BAD123", track="b", n=2, reported_at=now))
        assert wait_until(lambda: len(sub.messages) == 2, 10), sub.messages
        topics = {t for t, _ in sub.messages}
        assert topics == {"gate/g1/decision"}
        got = {m["plate"]: m for _, m in sub.messages}
        assert (got["KV65BZR"]["decision"], got["BAD123"]["decision"]) == ("allow", "deny")
        assert all(0 < m["latency_ms"] < 60_000 for m in got.values())
        assert svc.counts["malformed"] == 1
        # everything acknowledged: nothing pending for the group
        assert wait_until(lambda: client.xpending("alpr:events", "gate")["pending"] == 0, 5)
        assert {r.plate for r in history.search(HistoryQuery(gate="g1"))} == {"KV65BZR", "BAD123"}
    finally:
        svc.stop()
        sub.close()
        broker.stop()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    """A real HTTP server standing in for the barrier controller's webhook."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    h = Hook()
    h.start()
    yield h
    h.stop()


def test_decisions_reach_the_gate_webhook_with_retries(
    tmp_path: Path, history: History, receiver: Hook
) -> None:
    """The barrier controller's webhook gets every decision, even after its own errors
    (the webhook sink retries with backoff in the background)."""
    receiver.script = [503, 500]  # the controller fails twice, then recovers
    publish = [{"type": "webhook", "url": receiver.url, "backoff_s": 0.05, "max_retries": 5}]
    svc = service(tmp_path, history, publish=publish)
    sent = [svc.handle(camera_event(p, track=p, n=i)) for i, p in enumerate(["KV65BZR", "BAD123"])]
    assert wait_until(lambda: len(receiver.bodies) == 2, 10), receiver.statuses
    svc.stop()
    assert receiver.statuses[:2] == [503, 500]
    got = {b["plate"]: b for b in receiver.bodies}
    assert {p: b["decision"] for p, b in got.items()} == {"KV65BZR": "allow", "BAD123": "deny"}
    assert {b["event_id"] for b in receiver.bodies} == {d.event_id for d in sent if d is not None}
    assert all(b["type"] == "decision" and b["gate"] == "g1" for b in receiver.bodies)


class FlakyHistory(History):
    """A real SQLite history whose first ``fail`` saves raise (a database outage)."""

    fail = 2

    def save(self, record: Any) -> Any:
        if self.fail > 0:
            self.fail -= 1
            raise OSError("database is down")
        return super().save(record)


def test_database_outage_redelivers_events(tmp_path: Path, redis_proc: RedisProc) -> None:
    history = FlakyHistory(f"sqlite:///{tmp_path / 'f.db'}")
    client = redis_proc.client()
    svc = GateService(gate_config(tmp_path), history, client, output_dir=tmp_path).start()
    try:
        assert wait_until(lambda: client.exists("alpr:events") == 1, 5)
        xadd(client, camera_event("KV65BZR", track="a", n=1, reported_at=time.time()))
        assert wait_until(lambda: len(history.search(HistoryQuery())) == 1, 15)
        assert svc.counts["storage_errors"] == 2
        # decided and published once, although its storing was retried
        published = (tmp_path / "g1.jsonl").read_text().splitlines()
        assert [json.loads(x)["decision"] for x in published] == ["allow"]
        assert wait_until(lambda: client.xpending("alpr:events", "gate")["pending"] == 0, 5)
        (rec,) = history.search(HistoryQuery())
        assert rec.plate == "KV65BZR" and rec.decision == "allow"
    finally:
        svc.stop()
        history.close()


def test_redis_restart_consumer_recovers(
    tmp_path: Path, history: History, redis_proc: RedisProc
) -> None:
    svc = GateService(gate_config(tmp_path), history, redis_proc.client(), output_dir=tmp_path)
    svc.start()
    try:
        assert wait_until(lambda: redis_proc.client().exists("alpr:events") == 1, 5)
        redis_proc.stop()
        assert wait_until(lambda: svc.counts["redis_errors"] >= 1, 10)
        redis_proc.start()  # same port, empty (no persistence): the group is re-created
        client = redis_proc.client()
        assert wait_until(lambda: client.exists("alpr:events") == 1, 15)
        xadd(client, camera_event("KV65BZR", track="z", n=9, reported_at=time.time()))
        assert wait_until(lambda: len(history.search(HistoryQuery())) == 1, 15)
    finally:
        svc.stop()


def test_camera_status_from_heartbeats(
    tmp_path: Path, history: History, redis_proc: RedisProc
) -> None:
    client = redis_proc.client()
    client.hset(
        camera_status("plate_cam"),
        mapping={"fps": "14.5", "frames": "300", "events": "6", "updated_at": str(time.time())},
    )
    client.hset(
        camera_status("front_cam"),
        mapping={"fps": "9", "frames": "10", "events": "0", "updated_at": str(time.time() - 60)},
    )
    svc = GateService(gate_config(tmp_path), history, client, output_dir=tmp_path)
    cams = {c["camera"]: c for c in svc.cameras()}
    assert (cams["plate_cam"]["status"], cams["plate_cam"]["fps"]) == ("live", 14.5)
    assert (cams["plate_cam"]["role"], cams["front_cam"]["role"]) == ("plate", "overview")
    assert cams["front_cam"]["status"] == "stale"
    client.delete(camera_status("front_cam"))
    assert {c["camera"]: c["status"] for c in svc.cameras()}["front_cam"] == "unknown"
    svc.stop()


def test_retention_purge(tmp_path: Path, history: History) -> None:
    svc = service(tmp_path, history)
    svc.handle(camera_event("KV65BZR", reported_at=NOW - 40 * 86_400, n=1, track="old"))
    svc.handle(camera_event("KV65BZR", reported_at=NOW, n=2, track="new"))
    assert svc.purge() == 1  # retention_days defaults to 30
    (left,) = history.search(HistoryQuery())
    assert left.first_seen > NOW - 86_400
    svc.stop()


def test_observation_kinds_round_trip() -> None:
    from gate.contracts import Observation

    obs = Observation.from_event(
        camera_event(kind="vehicle", plate="", direction="exit", dwell_s=2.0)
    )
    assert (obs.kind, obs.direction, obs.dwell_s) == (ObservationKind.VEHICLE, Direction.EXIT, 2.0)
    assert obs.first_seen_wall == pytest.approx(NOW - 0.25)
