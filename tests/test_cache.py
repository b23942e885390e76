"""Redis track cache and ``alpr-cache`` CLI against real redis-server processes."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from edge_client.cli.cache import main as cli
from edge_client.contracts import PlateResult, Read, TrackStatus
from edge_client.state.cache import (
    CacheAuthError,
    CacheUnavailable,
    TrackCache,
    redact_url,
)
from edge_client.state.link import Op
from edge_client.state.local import LocalView
from tests.redis_server import RedisProc, free_port, redis_factory, start_redis

__all__ = ["redis_factory"]  # the fixture, used by the outage and password tests

TTL = 60
RESULT = PlateResult("AB123CD", "AB123CO", 0.93, "eu", "eu_generic", 3)


def result(plate: str = "AB123CD") -> PlateResult:
    return PlateResult(plate, plate, 0.9, "eu", None, 2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProc]:
    proc = start_redis(tmp_path_factory.mktemp("redis"))
    yield proc
    proc.stop()


@pytest.fixture
def r(server: RedisProc) -> redis.Redis:
    """A plain client on the shared server, emptied for each test."""
    client = server.client()
    client.flushall()
    return client


@pytest.fixture
def make_cache() -> Iterator[Callable[..., TrackCache]]:
    made: list[TrackCache] = []

    def make(url: str, **kw: object) -> TrackCache:
        kw.setdefault("ttl_s", TTL)
        kw.setdefault("retry_interval_s", 0.0)
        cache = TrackCache.from_url(url, **kw)  # type: ignore[arg-type]
        made.append(cache)
        return cache

    yield make
    for c in made:
        c.close()


# --- schema, TTLs, round trips ----------------------------------------------------------
def test_key_schema_and_ttls(r: redis.Redis, server: RedisProc, make_cache) -> None:
    c = make_cache(server.url, client_id="edge-a")
    c.upsert_seen("cam1", "src:7:120", 10.0, 11.0, (1, 2, 3, 4), "car")
    c.add_vote("cam1", "src:7:120", Read("AB123CD", 0.9, frame=130))
    assert c.mark_reported("cam1", "src:7:120", RESULT, "ev-1")
    assert c.claim_report("cam1", "ab 123-cd", "ev-1", 30)

    expected = [  # key, type, upper bound of PTTL in ms
        ("alpr:cam1:track:src:7:120", "hash", TTL * 1000),
        ("alpr:cam1:tracks", "zset", TTL * 1000),
        ("alpr:cam1:plate:AB123CD", "string", 30_000),
    ]
    assert sorted(r.keys("*")) == sorted(k for k, _, _ in expected)
    for key, kind, max_ms in expected:
        assert r.type(key) == kind, key
        assert max_ms - 2000 < r.pttl(key) <= max_ms, key
        assert 0 < r.ttl(key) <= max_ms // 1000
    h = r.hgetall("alpr:cam1:track:src:7:120")
    assert set(h) == {
        "status", "plate", "raw_text", "confidence", "region", "format", "votes", "reads",
        "first_seen", "last_seen", "box", "vehicle_class", "event_id", "updated_by", "updated_at",
    }  # fmt: skip
    assert h["status"] == "read" and h["updated_by"] == "edge-a" and h["event_id"] == "ev-1"
    assert json.loads(h["votes"])[0]["text"] == "AB123CD" and h["reads"] == "1"
    assert r.get("alpr:cam1:plate:AB123CD") == "ev-1"
    score = r.zscore("alpr:cam1:tracks", "src:7:120")
    assert score is not None
    assert score == pytest.approx(float(h["updated_at"])) and abs(score - time.time()) < 5


@pytest.mark.parametrize(
    "ops, expect",
    [
        ([(5.0, 6.0, (1, 1, 2, 2), "car")], (5.0, 6.0, (1, 1, 2, 2), "car")),
        (  # a later sighting moves last_seen and the box; first_seen stays
            [(5.0, 6.0, (1, 1, 2, 2), "car"), (5.5, 9.0, (3, 3, 4, 4), "truck")],
            (5.0, 9.0, (3, 3, 4, 4), "truck"),
        ),
        (  # a stale (replayed) sighting changes neither last_seen nor the box
            [(5.0, 9.0, (3, 3, 4, 4), "bus"), (4.0, 7.0, (1, 1, 2, 2), "car")],
            (4.0, 9.0, (3, 3, 4, 4), "bus"),
        ),
    ],
)
def test_upsert_get_round_trip(r, server, make_cache, ops, expect) -> None:
    c = make_cache(server.url)
    assert c.get_track("cam1", "t1") is None
    for fs, ls, box, vc in ops:
        c.upsert_seen("cam1", "t1", fs, ls, box, vc)
    s = c.get_track("cam1", "t1")
    assert s is not None and s.status is TrackStatus.PENDING
    assert (s.first_seen, s.last_seen, s.box, s.vehicle_class) == expect
    assert s.reads == 0 and s.votes == () and s.plate is None and s.event_id is None


@pytest.mark.parametrize("camera", ["", "-cam", "cam:1", "cam 1", "c*", "x" * 65])
def test_bad_camera_rejected(server, make_cache, camera) -> None:
    c = make_cache(server.url)
    with pytest.raises(ValueError, match="camera id"):
        c.upsert_seen(camera, "t1", 0, 1)


@pytest.mark.parametrize("key", ["", "a b", "a/b", "a*", "a{b}", "é", "k" * 201])
def test_bad_track_key_rejected(server, make_cache, key) -> None:
    c = make_cache(server.url)
    with pytest.raises(ValueError, match="track key"):
        c.get_track("cam1", key)


def test_votes_append_atomically_across_clients(r, server, make_cache) -> None:
    caches = [make_cache(server.url, client_id=f"edge-{i}") for i in range(2)]
    per_thread, threads = 12, []
    for t in range(4):
        cache = caches[t % 2]

        def vote(cache: TrackCache = cache, t: int = t) -> None:
            for i in range(per_thread):
                cache.add_vote("cam1", "t1", Read(f"P{t}X{i}", 0.5, frame=t * 100 + i))

        threads.append(threading.Thread(target=vote))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    s = caches[0].get_track("cam1", "t1")
    assert s is not None and s.reads == 4 * per_thread
    assert sorted(v.frame for v in s.votes) == sorted(
        t * 100 + i for t in range(4) for i in range(per_thread)
    )


def test_votes_capped_and_replay_idempotent(r, server, make_cache) -> None:
    from edge_client.state.cache import MAX_VOTES

    c = make_cache(server.url)
    for i in range(MAX_VOTES + 6):
        assert c.add_vote("cam1", "t1", Read("AB1", 0.5, frame=i)) == i + 1
    s = c.get_track("cam1", "t1")
    assert s is not None and s.reads == MAX_VOTES + 6 and len(s.votes) == MAX_VOTES
    # the same vote written twice (a retry after a lost reply, or a replay) counts once
    op = Op("vote", "cam1", "t2", ('{"text":"X","confidence":1,"frame":1,"id":"v1"}', "v1", "64"))
    assert c._exec(op) == 1 and c._exec(op) == -1
    assert r.hget("alpr:cam1:track:t2", "reads") == "1"


def test_mark_reported_wins_once_across_clients_and_restarts(r, server, make_cache) -> None:
    a, b = make_cache(server.url, client_id="edge-a"), make_cache(server.url, client_id="edge-b")
    for n in range(10):
        key, wins = f"src:1:{n}", list[str]()
        barrier = threading.Barrier(2)

        def report(
            cache: TrackCache, ev: str, key: str = key, wins: list = wins, b=barrier
        ) -> None:
            b.wait()
            if cache.mark_reported("cam1", key, RESULT, ev):
                wins.append(ev)

        ts = [threading.Thread(target=report, args=(x, f"{x.client_id}-{n}")) for x in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(wins) == 1, wins
        assert r.hget(f"alpr:cam1:track:{key}", "event_id") == wins[0]
        assert not a.mark_reported("cam1", key, RESULT, "late")  # read already
    # a restarted client (new instance, same track key) sees the track as read
    first = r.hget("alpr:cam1:track:src:1:0", "event_id")
    restarted = make_cache(server.url, client_id="edge-a")
    s = restarted.get_track("cam1", "src:1:0")
    assert s is not None and s.status is TrackStatus.READ and s.plate == "AB123CD"
    assert not restarted.mark_reported("cam1", "src:1:0", RESULT, "ev-after-restart")
    assert restarted.mark_reported("cam1", "src:1:0", RESULT, first)  # its own event: idempotent


def test_claim_report_dedup_window(r, server, make_cache) -> None:
    a, b = make_cache(server.url), make_cache(server.url)
    assert a.claim_report("cam1", "AB123CD", "ev-1", 0.3)
    assert not b.claim_report("cam1", "ab-123 cd", "ev-2", 0.3)  # same plate, normalised
    assert not a.claim_report("cam1", "AB123CD", "ev-3", 0.3)
    assert b.claim_report("cam1", "AB123CD", "ev-1", 0.3)  # the holder itself: idempotent
    assert b.claim_report("cam2", "AB123CD", "ev-4", 0.3)  # other camera: own namespace
    assert 0 < r.pttl("alpr:cam1:plate:AB123CD") <= 300
    time.sleep(0.35)
    assert r.exists("alpr:cam1:plate:AB123CD") == 0
    assert b.claim_report("cam1", "AB123CD", "ev-5", 0.3)  # window over: a new report
    assert a.claim_report("cam1", "AB123CD", "ev-6", 0) and r.get("alpr:cam1:plate:X") is None
    with pytest.raises(ValueError, match="plate"):
        a.claim_report("cam1", "--", "ev-7", 1)


def test_set_status(r, server, make_cache) -> None:
    c = make_cache(server.url)
    assert c.set_status("cam1", "t1", TrackStatus.NO_PLATE)
    assert c.get_track("cam1", "t1").status is TrackStatus.NO_PLATE
    assert c.set_status("cam1", "t1", "pending")
    assert c.mark_reported("cam1", "t1", RESULT, "ev-1")
    assert not c.set_status("cam1", "t1", TrackStatus.NO_PLATE)  # read is final
    assert c.get_track("cam1", "t1").status is TrackStatus.READ
    with pytest.raises(ValueError, match="mark_reported"):
        c.set_status("cam1", "t1", TrackStatus.READ)


def test_index_trimmed_and_listed(r, server, make_cache) -> None:
    c = make_cache(server.url, ttl_s=10)
    now = float(r.time()[0])
    r.zadd("alpr:cam1:tracks", {"ancient": now - 11, "old-but-live": now - 9})
    for i in range(3):
        c.upsert_seen("cam1", f"t{i}", i, i + 0.5)
    members = r.zrange("alpr:cam1:tracks", 0, -1)
    assert "ancient" not in members and "old-but-live" in members
    assert 8000 < r.pttl("alpr:cam1:tracks") <= 10_000
    listed = c.list_tracks("cam1", limit=2)
    assert [s.track_key for s in listed] == ["t2", "t1"]
    assert [s.track_key for s in c.list_tracks("cam1")] == ["t2", "t1", "t0"]  # no hash: skipped


def test_stats_cameras_and_purge(r, server, make_cache) -> None:
    c = make_cache(server.url)
    c.upsert_seen("camA", "t1", 0, 1)
    c.set_status("camA", "t2", TrackStatus.NO_PLATE)
    c.mark_reported("camA", "t3", RESULT, "ev-1")
    c.claim_report("camA", "AB123CD", "ev-1", 60)
    c.upsert_seen("camB", "t1", 0, 1)
    c.upsert_seen("camA.b", "t1", 0, 1)  # a camera whose id starts like camA's
    st = c.stats("camA")
    assert st["status"] == {"pending": 1, "no_plate": 1, "read": 1}
    assert (st["tracks"], st["keys"], st["plates"], st["source"]) == (3, 5, 1, "redis")
    assert st["memory_bytes"] > 0 and st["available"] and st["buffered"] == 0
    assert c.cameras() == ["camA", "camA.b", "camB"]
    assert c.purge("camA") == 5
    assert sorted(r.keys("*")) == sorted(
        ["alpr:camB:track:t1", "alpr:camB:tracks", "alpr:camA.b:track:t1", "alpr:camA.b:tracks"]
    )
    assert c.stats("camA")["tracks"] == 0 and c.cameras() == ["camA.b", "camB"]


# --- CLI ------------------------------------------------------------------------------
def test_cli_list_show_stats_purge(r, server, make_cache, capsys, monkeypatch) -> None:
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    c = make_cache(server.url)
    c.upsert_seen("cam1", "src:1:5", 1.0, 2.0, (1, 2, 3, 4), "car")
    c.add_vote("cam1", "src:1:5", Read("AB123CD", 0.91, frame=7))
    c.mark_reported("cam1", "src:1:5", RESULT, "ev-1")
    c.upsert_seen("cam2", "t9", 1.0, 2.0)
    u = ["--redis", server.url]
    cases = [  # argv, exit code, substrings of the text output
        (["list", "cam1"], 0, ["TRACK_KEY", "src:1:5", "read", "AB123CD", "car"]),
        (["show", "cam1", "src:1:5"], 0, ["event_id", "ev-1", "votes:", "AB123CD", "0.910"]),
        (["stats"], 0, ["CAMERA", "cam1", "cam2", "NO_PLATE"]),
        (["stats", "cam2"], 0, ["cam2"]),
        (["show", "cam1", "nope"], 1, []),
        (["list", "bad:cam"], 2, []),
    ]
    for argv, code, needles in cases:
        assert cli([*u, *argv]) == code, argv
        out = capsys.readouterr().out
        for n in needles:
            assert n in out, (argv, n, out)
    assert cli([*u, "--json", "list", "cam1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["event_id"] == "ev-1"
    assert cli([*u, "show", "cam1", "src:1:5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["votes"][0]["frame"] == 7
    assert cli([*u, "--json", "stats"]) == 0
    assert [s["camera"] for s in json.loads(capsys.readouterr().out)] == ["cam1", "cam2"]
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli([*u, "purge", "cam1"]) == 2  # no --yes and no terminal to ask
    assert "--yes" in capsys.readouterr().err and r.exists("alpr:cam1:tracks")
    assert cli([*u, "--json", "purge", "cam1", "--yes"]) == 0
    assert json.loads(capsys.readouterr().out) == {"camera": "cam1", "deleted": 2}
    assert r.keys("alpr:cam1:*") == [] and r.exists("alpr:cam2:tracks")


def test_cli_unreachable(capsys) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    for argv in (["stats"], ["list", "cam1"], ["purge", "cam1", "--yes"]):
        assert cli(["--redis", url, *argv]) == 2
        err = capsys.readouterr().err
        assert "unreachable" in err and "Traceback" not in err
    assert cli(["--redis", "http://x", "stats"]) == 2
    assert "bad --redis URL" in capsys.readouterr().err


# --- Redis down ---------------------------------------------------------------------------
def test_outage_buffers_then_replays(redis_factory, make_cache, caplog) -> None:
    srv = redis_factory()
    c = make_cache(srv.url, local_buffer=10, client_id="edge-a")
    c.upsert_seen("cam1", "t1", 1.0, 2.0, (1, 2, 3, 4), "car")
    assert c.available
    srv.stop()
    t0 = time.monotonic()
    c.upsert_seen("cam1", "t1", 1.0, 3.0, (5, 6, 7, 8), "car")  # no exception
    c.add_vote("cam1", "t1", Read("AB123CD", 0.8, frame=3))
    assert not c.available and c.buffered == 2 and "unavailable" in caplog.text
    assert c.mark_reported("cam1", "t1", RESULT, "ev-1")  # decided locally
    assert not c.mark_reported("cam1", "t1", RESULT, "ev-2")
    assert c.claim_report("cam1", "AB123CD", "ev-1", 30)
    assert not c.claim_report("cam1", "AB123CD", "ev-2", 30)
    s = c.get_track("cam1", "t1")  # answered from the local view
    assert s is not None and s.status is TrackStatus.READ and s.last_seen == 3.0 and s.reads == 1
    assert [t.track_key for t in c.list_tracks("cam1")] == ["t1"]
    assert c.set_status("cam1", "t2", "no_plate")
    st = c.stats("cam1")
    assert st["source"] == "local" and st["status"]["read"] == 1 and st["buffered"] == 5
    with pytest.raises(CacheUnavailable):
        c.purge("cam1")
    for i in range(8):  # overflow (capacity 10): the oldest non-decision writes go first
        c.upsert_seen("cam1", f"x{i}", 0.0, 1.0)
    assert c.buffered == 10 and c.dropped == 3  # seen t1, vote t1, status t2
    assert time.monotonic() - t0 < 2  # connection refused is fast; nothing blocks
    assert c.reconcile() == 0 and not c.available

    srv.start()  # empty (no persistence): only the replay brings data back
    assert c.reconcile() == 10 and c.available and c.buffered == 0 and c.replayed == 10
    r = srv.client()
    h = r.hgetall("alpr:cam1:track:t1")
    assert (h["status"], h["event_id"], h["plate"]) == ("read", "ev-1", "AB123CD")
    assert r.get("alpr:cam1:plate:AB123CD") == "ev-1"
    assert 25_000 < r.pttl("alpr:cam1:plate:AB123CD") <= 30_000  # the rest of the window
    assert not r.exists("alpr:cam1:track:t2")
    assert r.zcard("alpr:cam1:tracks") == 9 and c.stats()["conflicts"] == 0
    r.close()


def test_outage_next_operation_reconciles(redis_factory, make_cache) -> None:
    srv = redis_factory()
    c = make_cache(srv.url, retry_interval_s=0.2)
    srv.stop()
    for i in range(50):  # sightings of one track coalesce into one buffered write
        c.upsert_seen("cam1", "t1", 10.0 - i, 20.0 + i, (i, i, i + 1, i + 1), f"c{i}")
    c.upsert_seen("cam1", "t1", 5.0, 21.0, (0, 0, 1, 1), "stale")
    assert c.buffered == 1
    srv.start()
    c.upsert_seen("cam1", "t2", 0.0, 1.0)  # within the retry interval: buffered too
    assert c.buffered == 2
    time.sleep(0.25)
    c.upsert_seen("cam1", "t3", 0.0, 1.0)  # replays first, keeps the order
    assert c.available and c.buffered == 0
    r = srv.client()
    assert r.zrange("alpr:cam1:tracks", 0, -1) == ["t1", "t2", "t3"]
    s = c.get_track("cam1", "t1")
    assert s is not None and (s.first_seen, s.last_seen) == (-39.0, 69.0)
    assert (s.box, s.vehicle_class) == ((49, 49, 50, 50), "c49")


def test_outage_conflict_no_duplicate_after_reconcile(redis_factory, make_cache) -> None:
    srv = redis_factory()
    a = make_cache(srv.url, client_id="edge-a")
    b = make_cache(srv.url, client_id="edge-b")
    srv.stop()
    # a cannot reach Redis: it decides alone and (at-least-once) emits its events
    assert a.claim_report("cam1", "AB123CD", "a-1", 30)
    assert a.mark_reported("cam1", "t1", RESULT, "a-1")
    srv.start()
    # b reaches Redis first and reports the same vehicle
    assert b.claim_report("cam1", "AB123CD", "b-1", 30)
    assert b.mark_reported("cam1", "t1", RESULT, "b-1")
    assert a.reconcile() == 2
    st = a.stats()
    assert st["conflicts"] == 2 and st["replayed"] == 2 and st["buffered"] == 0
    assert {x["theirs"] for x in a.recent_conflicts} == {"b-1"}
    assert a.get_track("cam1", "t1").event_id == "b-1"
    # after reconciliation a decides nothing new for this vehicle or plate
    assert not a.claim_report("cam1", "AB123CD", "a-2", 30)
    assert not a.mark_reported("cam1", "t1", RESULT, "a-2")
    assert srv.client().get("alpr:cam1:plate:AB123CD") == "b-1"


def test_replay_batches_idempotent_and_manual_mode(redis_factory, make_cache) -> None:
    srv = redis_factory()
    c = make_cache(srv.url, auto_reconcile=False)
    srv.stop()
    n = 450  # more than one pipelined replay batch
    for i in range(n):
        c.upsert_seen("cam1", f"t{i:03d}", 0.0, float(i))
    assert c.mark_reported("cam1", "t000", RESULT, "ev-1")
    assert c.claim_report("cam1", "AB123CD", "ev-1", 30)
    srv.start()
    c.upsert_seen("cam1", "late", 0.0, 1.0)  # manual mode: no reconcile on the way
    assert not c.available and c.buffered == n + 3
    pending = list(c._pending)
    assert c.reconcile() == n + 3 and c.available and c.stats()["conflicts"] == 0
    r = srv.client()
    assert r.zcard("alpr:cam1:tracks") == n + 1
    assert r.hget("alpr:cam1:track:t449", "last_seen") == "449.0"
    for op in pending[-3:]:  # a batch cut short runs again: no effect, no conflict
        res = c._exec(op)  # mark, claim: [won, holder, ...]; seen: 1
        assert (res[0] if isinstance(res, list) else res) == 1, op.kind
    assert r.hget("alpr:cam1:track:t000", "event_id") == "ev-1"


def test_silent_server_times_out(make_cache) -> None:
    """A host that accepts TCP but never answers (a partition): bounded waits, no raise."""
    import socket

    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)  # never accepted: connects succeed, replies never come
        url = f"redis://127.0.0.1:{lsock.getsockname()[1]}/0"
        t0 = time.monotonic()
        c = make_cache(url, socket_timeout=0.1, retry_interval_s=30)
        assert not c.available and "Timeout" in (c.last_error or "")
        for i in range(20):  # within the retry delay: no further waiting
            c.upsert_seen("cam1", f"t{i}", 0.0, 1.0)
        assert c.mark_reported("cam1", "t1", RESULT, "ev-1") and c.buffered == 21
        assert time.monotonic() - t0 < 1.5


def test_unreachable_at_start(make_cache) -> None:
    c = make_cache(f"redis://127.0.0.1:{free_port()}/0")
    assert not c.available and "ConnectionError" in (c.last_error or "")
    c.upsert_seen("cam1", "t1", 0.0, 1.0)
    assert c.get_track("cam1", "t1") is not None and c.get_track("cam1", "t2") is None
    assert c.mark_reported("cam1", "t1", RESULT, "ev-1")
    assert c.stats("cam1")["tracks"] == 1 and c.buffered == 2
    with pytest.raises(CacheUnavailable):
        c.cameras()


def test_local_view_bounded() -> None:
    v = LocalView(ttl_s=0.05, max_tracks=3, client_id="x")
    for i in range(5):
        v.upsert_seen("cam1", f"t{i}", "0.0", "1.0", "", "")
    assert [s.track_key for s in v.list("cam1", 10)] == ["t4", "t3", "t2"]
    for i in range(5):
        v.claim("cam1", f"P{i}", "ev", 10)
    assert len(v._claims) == 3
    time.sleep(0.06)
    assert v.get("cam1", "t4") is None and v.list("cam1", 10) == []


# --- auth, TLS, URLs --------------------------------------------------------------------
def test_password(redis_factory, make_cache, capsys, monkeypatch, caplog) -> None:
    secret = "s3cret-pw"
    srv = redis_factory(password=secret)
    caplog.set_level(logging.DEBUG)
    c = make_cache(srv.url, password=secret)
    c.upsert_seen("cam1", "t1", 0.0, 1.0)
    assert c.available and c.get_track("cam1", "t1") is not None
    for pw in (None, "not-the-pw-42"):
        with pytest.raises(CacheAuthError, match="authentication") as exc:
            make_cache(srv.url, password=pw)
        assert secret not in str(exc.value) and (pw is None or pw not in str(exc.value))
    monkeypatch.setenv("REDIS_PASSWORD", secret)
    assert cli(["--redis", srv.url, "list", "cam1"]) == 0 and "t1" in capsys.readouterr().out
    monkeypatch.delenv("REDIS_PASSWORD")
    assert cli(["--redis", srv.url, "stats"]) == 2
    err = capsys.readouterr().err
    assert "authentication" in err and "Traceback" not in err
    url_pw = srv.url.replace("redis://", f"redis://:{secret}@")  # a password in the URL
    c2 = make_cache(url_pw)
    assert c2.available and secret not in c2.url
    assert secret not in caplog.text


def test_redact_url() -> None:
    cases = {
        "redis://localhost:6379/0": "redis://localhost:6379/0",
        "redis://:pw@h:1/0": "redis://:***@h:1/0",
        "rediss://user:p%40ss@h:1/2": "rediss://user:***@h:1/2",
    }
    for url, want in cases.items():
        assert redact_url(url) == want


def test_tls(redis_factory, make_cache) -> None:
    srv = redis_factory(tls=True)
    c = make_cache(srv.url)
    assert c.url.startswith("rediss://")
    assert c.mark_reported("cam1", "t1", RESULT, "ev-1") and c.available
    assert c.get_track("cam1", "t1").event_id == "ev-1"
    plain = make_cache(srv.url.replace("rediss://", "redis://").split("?")[0])
    assert not plain.available  # plain text to a TLS port fails, without raising


def test_helper_restart_same_port(tmp_path: Path) -> None:
    srv = start_redis(tmp_path)
    port = srv.port
    srv.client().set("k", "v")
    srv.stop()
    assert not srv.running
    srv.start()
    assert srv.port == port and srv.client().get("k") is None
    srv.stop()
