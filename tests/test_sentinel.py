"""Redis high availability through Redis Sentinel (``redis.sentinels``).

Unit part: the ``Redis`` configuration (``sentinels`` addresses) and what
:func:`alpr_common.redis_conn.connect` builds from it (no server needed: redis-py connects
lazily), and the stream sink retrying the error replies a failover causes.

Failover part, with real processes on loopback: a master, a replica (``REPLICAOF``) and
three sentinels (``redis-server --sentinel``, quorum 2, down-after 1 s, failover-timeout
3 s), each in its own process group. A producer writes camera events at a steady rate
through the real ``redis_stream`` sink (a client from ``connect``), the gate's consumer
group (``GateService``: XREADGROUP, XACK, re-delivery of unacknowledged entries) reads
them, and the master is killed with SIGKILL mid-run. Afterwards every event is accounted
for on the promoted master: emitted, in the stream, lost, duplicated, consumed.
``redis_failover_s`` is the time from the kill to the sink's first delivery on the new
master; ``sentinel_switch_s`` the time until the sentinels name the new master. Run with
``-s`` to see the figures.

Table of scenarios: ``wait_replicas`` 0 (asynchronous replication) or 1 (``WAIT 1 100``
after each batch), with a healthy or a "lagging" replica: stopped and its link cut
(``CLIENT KILL TYPE replica``) 0.4 s before the kill, so the master acknowledges events
the replica never gets. Only those can be lost (minus the batch in flight at the kill,
which is re-sent); with ``wait_replicas: 1`` every lost event was counted by the sink as
``unconfirmed``: no acknowledged event is lost silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.connection import SSLConnection
from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from alpr_common import procgroup
from alpr_common.config import ConfigError, RedisStreamSink, parse_model
from alpr_common.config import Redis as RedisConfig
from alpr_common.redis_conn import WaitPolicy, connect, describe, wait_policy
from alpr_common.sinks.redis_stream import BATCH, RedisStreamWriter
from edge_client.contracts import PlateResult
from edge_client.events import camera_event
from edge_client.state.cache import TrackCache
from gate.config import parse_gate_config
from gate.history import History
from gate.service import GateService
from tests.redis_server import REDIS_SERVER, RedisProc, start_redis
from tests.test_sinks import free_port

SERVICE = "mymaster"
STREAM = "alpr:events"
CAMERA = "plate_cam"
RATE_HZ = 150  # events per second from the producer


# --- unit: configuration and the client connect() builds -------------------------------------
@pytest.mark.parametrize(
    ("sentinels", "extra", "error"),
    [
        (["127.0.0.1:26379", "s2.lan:26380", "[::1]:26381"], {}, None),
        ([], {}, None),
        (["127.0.0.1"], {}, "should match pattern"),
        (["127.0.0.1:0"], {}, "port out of range"),
        (["127.0.0.1:70000"], {}, "port out of range"),
        (["a:1", "a:1"], {}, "listed twice"),
        ([], {"sentinel_password_env": "S_PASS"}, "no sentinels"),
        (["a:1"], {"sentinel_service": "my master"}, "should match pattern"),
        (["a:1"], {"wait_replicas": -1}, "greater than or equal"),
    ],
)
def test_sentinel_config(sentinels: list[str], extra: dict[str, Any], error: str | None) -> None:
    data = {"sentinels": sentinels, **extra}
    if error is None:
        cfg = parse_model(RedisConfig, data, "t")
        want = [(a.rsplit(":", 1)[0].strip("[]"), int(a.rsplit(":", 1)[1])) for a in sentinels]
        assert cfg.sentinel_addresses() == want
    else:
        with pytest.raises(ConfigError, match=error):
            parse_model(RedisConfig, data, "t")


def _sentinel_pool(client: redis.Redis) -> SentinelConnectionPool:
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    return pool


@pytest.mark.parametrize(
    ("url", "env", "want"),
    [
        # the URL's db applies to the master; password_env fills in a password
        ("redis://ignored:1/3", {"R_PASS": "pw"}, {"db": 3, "password": "pw", "tls": False}),
        # a password in the URL wins over password_env (as with from_url)
        ("redis://:urlpw@x/0", {"R_PASS": "pw"}, {"db": 0, "password": "urlpw", "tls": False}),
        ("rediss://x/1?ssl_ca_certs=/ca.pem", {}, {"db": 1, "password": None, "tls": True}),
    ],
)
def test_connect_through_sentinels_keeps_url_options(
    monkeypatch: pytest.MonkeyPatch, url: str, env: dict[str, str], want: dict[str, Any]
) -> None:
    for k, v in {**env, "S_PASS": "spw"}.items():
        monkeypatch.setenv(k, v)
    cfg = RedisConfig(
        url=url, password_env="R_PASS", sentinels=["127.0.0.1:26379", "h2:26380"],
        sentinel_service="edge", sentinel_password_env="S_PASS", wait_replicas=1,
    )  # fmt: skip
    client = connect(cfg, socket_timeout=0.7, decode_responses=True)
    pool = _sentinel_pool(client)
    kw = pool.connection_kwargs
    assert pool.service_name == "edge" and pool.is_master
    assert (kw["db"], kw.get("password"), kw["socket_timeout"]) == (
        want["db"], want["password"], 0.7,
    )  # fmt: skip
    assert kw["decode_responses"] is True and "host" not in kw
    assert (pool.connection_class is SentinelManagedSSLConnection) == want["tls"]
    if want["tls"]:
        assert kw["ssl_ca_certs"] == "/ca.pem"
    sentinels = pool.sentinel_manager.sentinels
    kws = [s.connection_pool.connection_kwargs for s in sentinels]
    assert [(k["host"], k["port"]) for k in kws] == [("127.0.0.1", 26379), ("h2", 26380)]
    assert all(k["password"] == "spw" for k in kws)
    assert all(
        (s.connection_pool.connection_class is SSLConnection) == want["tls"] for s in sentinels
    )
    assert wait_policy(client) == WaitPolicy(1, 100)
    assert "pw" not in describe(cfg) and "edge" in describe(cfg)


def test_connect_without_sentinels_is_from_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R_PASS", "secret")
    cfg = RedisConfig(url="redis://10.0.0.5:6390/2", password_env="R_PASS")
    client = connect(cfg, socket_timeout=0.5)
    kw = client.connection_pool.connection_kwargs
    assert (kw["host"], kw["port"], kw["db"], kw["password"]) == ("10.0.0.5", 6390, 2, "secret")
    assert kw["socket_connect_timeout"] == 0.5 and not kw.get("decode_responses")
    assert wait_policy(client) is None
    assert describe(cfg) == "redis://10.0.0.5:6390/2"


class _Replies:
    """A client whose first XADDs fail with ``errors`` (one per call), then succeed."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.added = errors, 0

    def xadd(self, *_a: Any, **_k: Any) -> str:
        if self.errors:
            raise self.errors.pop(0)
        self.added += 1
        return "1-0"


def _event(n: int, camera: str = CAMERA) -> Any:
    return camera_event(
        event_id=f"{camera}-ev-{n}", camera=camera, track_id=f"t{n}", plate=f"HA{n:05d}",
        raw_text=f"HA{n:05d}", confidence=0.9, first_seen=1.0, last_seen=2.0,
        box=(1, 2, 30, 40), vehicle_class="car", frame=n, latency_ms=5.0, votes=1,
        reported_at=time.time(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("error", "delivered", "failed"),
    [
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), 1, 0),
        (redis.ResponseError("NOREPLICAS Not enough good replicas to write."), 1, 0),
        (redis.exceptions.MasterDownError("Link with MASTER is down"), 1, 0),
        (redis.ConnectionError("Connection refused"), 1, 0),
        (redis.ResponseError("WRONGTYPE Operation against a key"), 0, 1),
    ],
)
def test_stream_sink_retries_failover_replies(
    error: Exception, delivered: int, failed: int
) -> None:
    client = _Replies([error])
    sink = RedisStreamWriter(client, retry_interval_s=0.01)  # type: ignore[arg-type]
    sink.emit(_event(1))
    assert sink.flush(5)
    sink.close()
    assert (client.added, sink.stats()["delivered"], sink.stats()["failed"]) == (
        delivered, delivered, failed,
    )  # fmt: skip


# --- a master, a replica and three sentinels on loopback -------------------------------------
def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


def start_sentinel(d: Path, master_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """``redis-server --sentinel`` monitoring the master, from a generated config."""
    for _ in range(3):  # the free port can be taken between probing and binding
        port = free_port()
        conf = d / f"sentinel-{port}.conf"  # sentinel rewrites it: one file per sentinel
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {d}\nlogfile {d / f'sentinel-{port}.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        proc = procgroup.spawn(
            [REDIS_SERVER, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if _answers(proc, port):
            return proc, port
        procgroup.stop(proc)
    raise RuntimeError("could not start a sentinel")


def _answers(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Whether the server on ``port`` answers PING before ``proc`` exits."""
    with redis.Redis(port=port, socket_timeout=1) as probe:
        wait_for(f"sentinel on {port}", lambda: proc.poll() is not None or bool(probe.ping()), 10)
    return proc.poll() is None


@dataclass
class SentinelSet:
    master: RedisProc
    replica: RedisProc
    sentinels: list[tuple[subprocess.Popen[bytes], int]] = field(default_factory=list)

    def config(self, **kw: Any) -> RedisConfig:
        addrs = [f"127.0.0.1:{port}" for _, port in self.sentinels]
        return RedisConfig(url="redis://mymaster/0", sentinels=addrs, **kw)

    def sentinel(self, i: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinels[i][1], decode_responses=True, socket_timeout=1)

    def ready(self) -> bool:
        """Every sentinel knows the two others and the replica."""
        for i in range(len(self.sentinels)):
            with self.sentinel(i) as s:
                state = s.sentinel_master(SERVICE)
            if (state["num-other-sentinels"], state["num-slaves"]) != (2, 1):
                return False
        return True

    def master_port(self) -> int:
        with self.sentinel() as s:
            return int(s.sentinel_get_master_addr_by_name(SERVICE)[1])

    def stop(self) -> None:
        if self.replica.proc is not None:  # never leave it stopped: SIGTERM would wait
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.replica.proc.pid, signal.SIGCONT)
        for proc, _ in self.sentinels:
            procgroup.stop(proc, 5)
        self.replica.stop()
        self.master.stop()


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    """A master, its replica and three sentinels, ready for a failover."""
    master = start_redis(tmp_path)
    replica = start_redis(tmp_path)
    cluster = SentinelSet(master, replica)
    try:
        with master.client() as m:
            m.config_set("repl-diskless-sync-delay", 0)  # full sync at once, not after 5 s
        with replica.client() as r:
            r.replicaof("127.0.0.1", master.port)
            wait_for("the replica", lambda: r.info("replication")["master_link_status"] == "up")
        for _ in range(3):
            cluster.sentinels.append(start_sentinel(tmp_path, master.port))
        wait_for("sentinels to find each other and the replica", cluster.ready)
        yield cluster
    finally:
        cluster.stop()


# --- the failover runs ------------------------------------------------------------------------
class Producer(threading.Thread):
    """Emits events into ``sink`` at RATE_HZ; ``emitted`` holds (event_id, monotonic time)."""

    def __init__(self, sink: RedisStreamWriter) -> None:
        super().__init__(name="producer", daemon=True)
        self.sink, self.stop_flag = sink, threading.Event()
        self.emitted: list[tuple[str, float]] = []

    def run(self) -> None:
        n, due = 0, time.monotonic()
        while not self.stop_flag.is_set():
            ev = _event(n)
            self.sink.emit(ev)
            self.emitted.append((ev.event_id, time.monotonic()))
            n += 1
            due += 1.0 / RATE_HZ
            self.stop_flag.wait(max(0.0, due - time.monotonic()))


class CountingGate(GateService):
    """The real gate; ``seen`` counts each event id its consumer handled."""

    seen: Counter[str]

    def handle(self, event: dict[str, Any]) -> Any:
        self.seen[str(event.get("event_id"))] += 1
        return super().handle(event)


def gate_service(tmp_path: Path, client: redis.Redis) -> CountingGate:
    """The gate's camera is not the producer's: each entry is read, counted and
    acknowledged without a decision or a database write (a failover is about the stream,
    and SQLite commits would make the consumer the slowest part of the test)."""
    cfg = parse_gate_config({
        "database": {"url": f"sqlite:///{tmp_path / 'h.db'}"},
        "crops_dir": str(tmp_path / "crops"),
        "gates": {"g1": {"plate_camera": "gate_cam", "merge_window_s": 0.5,
                         "publish": [{"type": "jsonl", "path": str(tmp_path / "{gate}.jsonl")}]}},
    })  # fmt: skip
    history = History(cfg.database.url, crops_dir=cfg.crops_dir)
    svc = CountingGate(cfg, history, client, output_dir=tmp_path)
    svc.seen = Counter()
    return svc


def cut_replication(cluster: SentinelSet) -> str:
    """Stop the replica and cut its link; returns the stream's last id at the cut (what
    the replica holds). Client writes are paused meanwhile, so the id is exact."""
    assert cluster.replica.proc is not None
    os.kill(cluster.replica.proc.pid, signal.SIGSTOP)
    with cluster.master.client() as m:
        m.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
        m.execute_command("CLIENT", "KILL", "TYPE", "replica")
        last = str(m.xinfo_stream(STREAM)["last-generated-id"])
        m.execute_command("CLIENT", "UNPAUSE")
    return last


def unreplicated(cluster: SentinelSet, cut: str) -> set[str]:
    """Pause client writes (they wait, unacknowledged) and list the event ids the master
    acknowledged after the cut."""
    with cluster.master.client() as m:
        m.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
        entries = m.xrange(STREAM, f"({cut}", "+")
    return {json_id(fields) for _, fields in entries}


def json_id(fields: dict[str, str]) -> str:
    return str(json.loads(fields["event"])["event_id"])


@dataclass
class Kill:
    """What happened around the master's SIGKILL."""

    t_kill: float  # monotonic
    failover_s: float  # kill -> the sink's first delivery on the new master
    switch_s: float  # kill -> the sentinels name the new master
    unreplicated: set[str] | None  # lagging replica: acknowledged, never replicated
    unconfirmed_at_kill: int  # events WAIT had not confirmed when the master died


def kill_master_mid_run(cluster: SentinelSet, sink: RedisStreamWriter, lagging: bool) -> Kill:
    """SIGKILL the master while the producer runs; wait for the sink's first write on the
    promoted replica, then let it write there for a second."""
    assert cluster.master.proc is not None and cluster.replica.proc is not None
    time.sleep(2.0)
    missing: set[str] | None = None
    if lagging:
        cut = cut_replication(cluster)
        time.sleep(0.4)  # the master acknowledges events the replica never gets
        missing = unreplicated(cluster, cut)
    os.kill(cluster.master.proc.pid, signal.SIGKILL)
    t_kill = time.monotonic()
    cluster.master.proc.wait(5)
    if lagging:
        os.kill(cluster.replica.proc.pid, signal.SIGCONT)
    time.sleep(0.05)  # a reply read just before the kill is counted by now
    at_kill = sink.stats()
    switch_s = failover_s = 0.0
    while not (switch_s and failover_s) and time.monotonic() < t_kill + 30:
        if not switch_s and cluster.master_port() == cluster.replica.port:
            switch_s = time.monotonic() - t_kill
        if not failover_s and sink.stats()["delivered"] > at_kill["delivered"]:
            failover_s = time.monotonic() - t_kill
        time.sleep(0.005)
    assert switch_s and failover_s, f"no failover within 30 s: {sink.stats()}"
    time.sleep(1.0)  # steady writes on the new master
    return Kill(t_kill, failover_s, switch_s, missing, at_kill.get("unconfirmed", 0))


@dataclass
class Run:
    emitted: list[tuple[str, float]]
    stream: Counter[str]  # event id -> entries on the new master
    seen: Counter[str]  # event id -> times the gate handled it
    stats: dict[str, int]
    kill: Kill

    @property
    def lost(self) -> set[str]:
        return {e for e, _ in self.emitted} - set(self.stream)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.stream.values())

    def summary(self, name: str) -> str:
        k = self.kill
        return (
            f"sentinel failover [{name}]: redis_failover_s={k.failover_s:.2f} "
            f"sentinel_switch_s={k.switch_s:.2f} emitted={len(self.emitted)} "
            f"in_stream={sum(self.stream.values())} lost={len(self.lost)} "
            f"duplicates={self.duplicates} unreplicated_at_kill="
            f"{'-' if k.unreplicated is None else len(k.unreplicated)} "
            f"unconfirmed_at_kill={k.unconfirmed_at_kill} "
            f"unconfirmed={self.stats.get('unconfirmed', '-')} consumed={len(self.seen)} "
            f"consumer_duplicates={sum(n - 1 for n in self.seen.values())}"
        )


def failover_run(
    tmp_path: Path, cluster: SentinelSet, wait_replicas: int, lagging_replica: bool
) -> Run:
    cfg = cluster.config(wait_replicas=wait_replicas)
    gate = gate_service(tmp_path, connect(cfg, socket_timeout=5, decode_responses=True))
    producer_client = connect(cfg, socket_timeout=0.5)  # as the edge client's `raw`
    sink = RedisStreamWriter.from_config(
        RedisStreamSink(stream=STREAM), camera=CAMERA, redis_client=producer_client
    )
    producer = Producer(sink)
    gate.start()
    try:
        with connect(cfg, socket_timeout=5) as probe:  # it reads from "$": create it first
            wait_for("the gate's consumer group", lambda: bool(probe.xinfo_groups(STREAM)))
        producer.start()
        try:
            kill = kill_master_mid_run(cluster, sink, lagging_replica)
        finally:
            producer.stop_flag.set()
            producer.join(5)
        assert sink.flush(15), f"the sink still holds events: {sink.stats()}"
        with connect(cfg, socket_timeout=5, decode_responses=True) as new_master:
            entries = new_master.xrange(STREAM, "-", "+")
            stream = Counter(json_id(fields) for _, fields in entries)
            wait_for(
                "the gate to consume every entry",
                lambda: (
                    set(stream) <= set(gate.seen)
                    and new_master.xpending(STREAM, "gate")["pending"] == 0
                ),
                30,
            )
    finally:
        sink.close()
        gate.stop()
        gate.history.close()
        producer_client.close()
    return Run(producer.emitted, stream, gate.seen, sink.stats(), kill)


@pytest.mark.parametrize(
    ("wait_replicas", "lagging_replica"),
    [(0, False), (1, False), (0, True), (1, True)],
    ids=["async", "wait1", "async-lagging-replica", "wait1-lagging-replica"],
)
def test_stream_events_survive_a_master_kill(
    tmp_path: Path, sentinel_set: SentinelSet, wait_replicas: int, lagging_replica: bool,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    run = failover_run(tmp_path, sentinel_set, wait_replicas, lagging_replica)
    print(run.summary(request.node.callspec.id))
    # the sink's buffer and retries covered the outage: nothing dropped, nothing failed
    assert (run.stats["dropped"], run.stats["failed"], run.stats["buffered"]) == (0, 0, 0)
    emitted_at = dict(run.emitted)
    # loss: only events the old master acknowledged and had not replicated when it died
    if run.kill.unreplicated is not None:
        assert run.lost <= run.kill.unreplicated
        # those that survived were in the one batch in flight at the kill (its reply, or
        # its WAIT's, never came): re-sent to the new master
        assert len(run.kill.unreplicated - run.lost) <= BATCH
    else:
        assert len(run.lost) <= BATCH
    assert all(emitted_at[e] < run.kill.t_kill for e in run.lost)
    if wait_replicas:  # WAIT: no acknowledged event is lost without being counted
        assert len(run.lost) <= run.kill.unconfirmed_at_kill
    # duplicates: a batch re-sent because its reply was lost with the master
    assert run.duplicates <= BATCH
    assert all(emitted_at[e] < run.kill.t_kill for e, n in run.stream.items() if n > 1)
    # the gate consumed every entry of the new master's stream (some twice: XACKs lost
    # with the master are re-delivered)
    assert set(run.stream) <= set(run.seen)


def test_track_cache_replays_to_the_promoted_master(sentinel_set: SentinelSet) -> None:
    """Dedup claims and track writes made while the master is gone are buffered and
    replayed to the promoted replica; claims made before the kill are there too."""
    cache = TrackCache.from_config(sentinel_set.config(), client_id="edge-a", retry_interval_s=0.2)
    assert cache.available
    result = PlateResult("HA00001", "HA00001", 0.9, "uk", None, 2)
    made: list[tuple[str, float]] = []
    t_kill, peak_buffered = 0.0, 0
    for n in range(200):
        key = f"t{n}"
        cache.upsert_seen(CAMERA, key, n, n + 0.5, (1, 2, 3, 4), "car")
        assert cache.mark_reported(CAMERA, key, result, f"ev-{n}")
        assert cache.claim_report(CAMERA, f"HA{n:05d}", f"ev-{n}", 600)
        made.append((key, time.monotonic()))
        peak_buffered = max(peak_buffered, cache.buffered)
        if n == 60:
            assert sentinel_set.master.proc is not None
            os.kill(sentinel_set.master.proc.pid, signal.SIGKILL)
            t_kill = time.monotonic()
        time.sleep(0.02)
    wait_for("the promoted master", lambda: sentinel_set.master_port() == sentinel_set.replica.port)
    wait_for(
        "the replay", lambda: cache.reconcile() >= 0 and cache.available and not cache.buffered
    )
    stats = cache.stats()
    print(
        f"track cache failover: peak_buffered={peak_buffered} replayed={stats['replayed']} "
        f"dropped={stats['dropped']} conflicts={stats['conflicts']}"
    )
    assert peak_buffered > 0 and stats["replayed"] > 0
    assert (stats["dropped"], stats["conflicts"]) == (0, 0)
    with sentinel_set.replica.client() as new_master:
        missing = [k for k, _ in made if not new_master.exists(f"alpr:{CAMERA}:track:{k}")]
        claims = [
            n for n in range(200) if new_master.get(f"alpr:{CAMERA}:plate:HA{n:05d}") != f"ev-{n}"
        ]
    # what was written after the kill was buffered and replayed: all there; before the
    # kill, only a write acknowledged but not yet replicated can be missing
    stamp = dict(made)
    assert all(stamp[k] < t_kill for k in missing)
    assert all(stamp[f"t{n}"] < t_kill for n in claims)
    assert len(missing) <= 1 and len(claims) <= 1
