"""Redis track cache shared by edge clients: what each vehicle track is, and whether it
was already reported, survives client restarts and is shared between clients.

Key schema (``{camera}`` matches ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$``, ``{track_key}``
``^[A-Za-z0-9_.:-]{1,200}$`` and must be stable across restarts, ``{PLATE}`` is the plate
upper-cased with everything but A-Z0-9 removed):

``alpr:{camera}:track:{track_key}`` (hash, TTL ``track_ttl_s`` refreshed by every write)
    ``status`` pending | read | no_plate; ``plate``, ``raw_text``, ``confidence``,
    ``region``, ``format`` (set when reported; empty = none); ``votes`` JSON list of
    ``{"text", "confidence", "frame", "id"}`` (at most 64 stored); ``reads`` OCR calls
    made; ``first_seen``, ``last_seen`` (the pipeline's timestamps; first_seen only
    decreases, last_seen only increases); ``box`` JSON ``[x1, y1, x2, y2]`` and
    ``vehicle_class`` (from the newest sighting); ``event_id`` of the reported event;
    ``updated_by`` client id of the last writer; ``updated_at`` Redis server time of the
    last write.
``alpr:{camera}:tracks`` (sorted set, TTL ``track_ttl_s`` refreshed by every write)
    member = track_key, score = ``updated_at`` (server time of the track's last write,
    which tracks last_seen for live sources and, unlike media time, matches the hash TTL).
    Every write removes members older than the TTL, so the set holds live tracks only.
``alpr:{camera}:plate:{PLATE}`` (string = event_id, PX = the camera's dedup window)
    Created with ``SET NX PX``: the first client to report a plate within the window
    owns it; the key expires with the window.

Every write is one Lua script (:mod:`edge_client.state.scripts`), so concurrent clients
cannot interleave inside an update, and each is idempotent, so a retry or replay of the
same call has no further effect. Reporting a vehicle: ``mark_reported`` (status=read
unless another event id has it; True when this call won), then ``claim_report`` (True
only for the first claim of the plate within the window); emit the event only if both
are True. A track whose claim lost stays read, its event_id never emitted (a duplicate).

Redis down: no method used by the pipeline raises on Redis errors (``purge`` and
``cameras`` raise :class:`CacheUnavailable`). Writes go to a bounded in-process view
(LRU + TTL) that ``get_track``/``list_tracks``/``stats`` answer from, and to a buffer of
``local_buffer`` writes: sightings of one track merge into one entry; when full, the
oldest write that is not a decision (report/claim) is dropped and counted.
``mark_reported``/``claim_report`` decide locally. After ``retry_interval_s`` (doubling
up to 8x while Redis stays down) the next operation, or any ``reconcile()`` call,
pings Redis and replays the buffer in order, pipelined. A replayed report or claim that
another client made meanwhile counts in ``stats()['conflicts']`` (details in
``recent_conflicts``); its event may already be out: during an outage delivery is
at-least-once across clients, and a restarted client that did not see a track before
the outage may report it again. Tracks survive a Redis restart only with persistence
(AOF/RDB). With ``auto_reconcile=False`` operations never wait on a dead server; call
``reconcile()`` from a background thread instead (its ping does not hold the lock).
Behind Redis Sentinel (:meth:`TrackCache.from_config` with ``redis.sentinels``) a failover
is such an outage: writes are buffered until the sentinels name the promoted replica, then
replayed to it (the scripts are loaded there again on first use).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from alpr_common.config import Redis as RedisConfig
from alpr_common.redis_conn import connect, describe
from edge_client.contracts import PlateResult, Read, TrackStatus
from edge_client.state.admin import list_cameras, namespace_stats, purge_namespace
from edge_client.state.keys import (
    TrackState,
    box_json,
    camera_status,
    check_camera,
    num,
    plate_id,
    result_fields,
    state_from_hash,
    track_hash,
    track_index,
    vote_json,
)
from edge_client.state.link import CacheAuthError, CacheUnavailable, Op, RedisLink, redact_url

__all__ = ["CacheAuthError", "CacheUnavailable", "TrackCache", "TrackState", "redact_url"]

MAX_VOTES = 64


class TrackCache(RedisLink):
    """See the module docstring. Thread-safe: one lock serialises an instance's calls."""

    @classmethod
    def from_url(
        cls,
        url: str,
        password: str | None = None,
        ttl_s: float = 3600,
        local_buffer: int = 10_000,
        client_id: str | None = None,
        *,
        socket_timeout: float = 0.5,
        retry_interval_s: float = 1.0,
        auto_reconcile: bool = True,
        health_check_interval: int = 10,
    ) -> TrackCache:
        """Connect to ``redis://`` or ``rediss://`` (TLS) ``url``; a password in the URL wins
        over ``password``. An unreachable server gives ``available == False`` (no
        exception); refused credentials raise :class:`CacheAuthError`."""
        kwargs: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "health_check_interval": health_check_interval,
            "retry": Retry(NoBackoff(), 1),  # one immediate retry: replaces a stale socket
            "decode_responses": True,
        }
        if password:
            kwargs["password"] = password
        client = redis.Redis.from_url(url, **kwargs)
        return cls._open(
            client,
            url,
            ttl_s=ttl_s,
            local_buffer=local_buffer,
            client_id=client_id,
            retry_interval_s=retry_interval_s,
            auto_reconcile=auto_reconcile,
        )

    @classmethod
    def from_config(
        cls,
        cfg: RedisConfig,
        client_id: str | None = None,
        *,
        socket_timeout: float = 0.5,
        retry_interval_s: float = 1.0,
        auto_reconcile: bool = True,
        health_check_interval: int = 10,
    ) -> TrackCache:
        """Connect as ``cfg`` says (:func:`alpr_common.redis_conn.connect`: a URL, or the
        master behind Redis Sentinel, found again after a failover; writes made meanwhile
        are buffered and replayed), with ``cfg``'s ``track_ttl_s`` and ``local_buffer``.
        Unreachable: ``available == False``; refused credentials: :class:`CacheAuthError`."""
        client = connect(
            cfg,
            socket_timeout=socket_timeout,
            decode_responses=True,
            health_check_interval=health_check_interval,
            retry=Retry(NoBackoff(), 1),
        )
        return cls._open(
            client,
            describe(cfg),
            ttl_s=cfg.track_ttl_s,
            local_buffer=cfg.local_buffer,
            client_id=client_id,
            retry_interval_s=retry_interval_s,
            auto_reconcile=auto_reconcile,
        )

    @classmethod
    def _open(cls, client: redis.Redis, url: str, **kwargs: Any) -> TrackCache:
        """Wrap ``client`` and ping it once (see :meth:`from_url`)."""
        cache = cls(client, url=url, **kwargs)
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            client.close()
            raise CacheAuthError(
                f"Redis at {cache.url} refused authentication ({exc}): password missing or wrong"
            ) from None
        except redis.RedisError as exc:
            cache._down(exc)
        return cache

    # --- track writes -----------------------------------------------------------------------
    def upsert_seen(
        self,
        camera: str,
        track_key: str,
        first_seen: float,
        last_seen: float,
        box: Sequence[float] | None = None,
        vehicle_class: str | None = None,
    ) -> None:
        """Record a sighting: first_seen keeps the minimum, last_seen/box/class the newest."""
        track_hash(camera, track_key)
        args = (num(first_seen), num(last_seen), box_json(box), vehicle_class or "")
        with self._lock:
            self._local.upsert_seen(camera, track_key, *args)
            self._write(Op("seen", camera, track_key, args))

    def add_vote(self, camera: str, track_key: str, read: Read) -> int:
        """Append one OCR read to ``votes`` and increment ``reads``; returns ``reads``."""
        track_hash(camera, track_key)
        vid = uuid.uuid4().hex[:16]
        args = (vote_json(read, vid), vid, str(MAX_VOTES))
        with self._lock:
            n = self._local.add_vote(camera, track_key, args[0], vid, MAX_VOTES)
            res = self._write(Op("vote", camera, track_key, args))
            return int(res) if res is not None else n

    def set_status(self, camera: str, track_key: str, status: TrackStatus | str) -> bool:
        """Set pending/no_plate; refused (False) once the track is read. Use
        :meth:`mark_reported` for ``read``."""
        status = TrackStatus(status)
        if status is TrackStatus.READ:
            raise ValueError("set status=read with mark_reported (it decides who reports)")
        track_hash(camera, track_key)
        with self._lock:
            local = self._local.set_status(camera, track_key, status.value)
            res = self._write(Op("status", camera, track_key, (status.value,)))
            return bool(int(res)) if res is not None else local

    def mark_reported(
        self,
        camera: str,
        track_key: str,
        result: PlateResult,
        event_id: str,
        *,
        first_seen: float | None = None,
        last_seen: float | None = None,
        box: Sequence[float] | None = None,
        vehicle_class: str | None = None,
    ) -> bool:
        """Atomically set status=read with the result unless the track is already read by
        another event; True when this call won (emit the event only then)."""
        track_hash(camera, track_key)
        if not event_id:
            raise ValueError("event_id must not be empty")
        seen = (
            "" if first_seen is None else num(first_seen),
            "" if last_seen is None else num(last_seen),
            box_json(box),
            vehicle_class or "",
        )
        extra = result_fields(result)
        op = Op("mark", camera, track_key, (event_id, *seen), extra=extra)
        with self._lock:
            status, holder = self._local.status_of(camera, track_key)
            if status == TrackStatus.READ.value and holder != event_id:
                return False
            if self._usable():
                try:
                    won, holder, plate = self._exec(op)
                except redis.RedisError as exc:
                    self._down(exc)
                else:
                    if int(won):
                        self._local.mark_reported(camera, track_key, event_id, seen, extra)
                    else:
                        self._local.lost_report(camera, track_key, holder, plate)
                    return bool(int(won))
            self._local.mark_reported(camera, track_key, event_id, seen, extra)
            self._enqueue(op)
            return True

    def claim_report(self, camera: str, plate: str, event_id: str, window_s: float) -> bool:
        """True for the first claim of ``plate`` on ``camera`` within ``window_s`` (atomic
        across clients; the same event_id claiming again also gets True). A window of 0
        disables dedup (always True)."""
        check_camera(camera)
        pid = plate_id(plate)
        if window_s <= 0:
            return True
        op = Op("claim", camera, pid, (event_id,), deadline=time.monotonic() + window_s)
        with self._lock:
            holder = self._local.claim_holder(camera, pid)
            if holder is not None and holder != event_id:
                return False
            if self._usable():
                try:
                    won, holder, pttl = self._exec(op)
                except redis.RedisError as exc:
                    self._down(exc)
                else:
                    if int(won):
                        self._local.claim(camera, pid, event_id, window_s)
                    elif int(pttl) > 0:
                        self._local.claim(camera, pid, holder, int(pttl) / 1000)
                    return bool(int(won))
            self._local.claim(camera, pid, event_id, window_s)
            self._enqueue(op)
            return True

    # --- reads ------------------------------------------------------------------------------
    def get_track(self, camera: str, track_key: str) -> TrackState | None:
        key = track_hash(camera, track_key)
        with self._lock:
            if self._usable():
                try:
                    h = cast(dict[str, str], self._r.hgetall(key))
                except redis.RedisError as exc:
                    self._down(exc)
                else:
                    if h:
                        self._local.put(camera, track_key, h)
                    else:
                        self._local.forget(camera, track_key)
                    return state_from_hash(camera, track_key, h)
            return self._local.get(camera, track_key)

    def list_tracks(self, camera: str, limit: int = 50) -> list[TrackState]:
        """Most recently updated tracks first (from the local view while Redis is down)."""
        index = track_index(camera)
        with self._lock:
            if self._usable():
                try:
                    keys = cast(list[str], self._r.zrevrange(index, 0, max(0, limit - 1)))
                    pipe = self._r.pipeline(transaction=False)
                    for k in keys:
                        pipe.hgetall(track_hash(camera, k))
                    hashes = pipe.execute()
                except redis.RedisError as exc:
                    self._down(exc)
                else:
                    states = (
                        state_from_hash(camera, k, h) for k, h in zip(keys, hashes, strict=True)
                    )
                    return [s for s in states if s is not None]
            return self._local.list(camera, limit)

    def heartbeat(self, camera: str, fields: dict[str, str | int | float], ttl_s: int) -> bool:
        """Publish the camera's status hash (read by the gate dashboard). Best effort: not
        buffered while Redis is down (a stale heartbeat is worthless)."""
        key = camera_status(camera)
        with self._lock:
            if not self._usable():
                return False
            try:
                pipe = self._r.pipeline(transaction=True)
                pipe.hset(key, mapping={k: str(v) for k, v in fields.items()})
                pipe.expire(key, ttl_s)
                pipe.execute()
                return True
            except redis.RedisError as exc:
                self._down(exc)
                return False

    def cameras(self) -> list[str]:
        """Cameras with a track index in Redis. Raises :class:`CacheUnavailable`."""
        with self._lock:
            try:
                return list_cameras(self._r)
            except redis.RedisError as exc:
                self._down(exc)
                raise CacheUnavailable(f"Redis {self.url} unreachable: {self.last_error}") from None

    def stats(self, camera: str | None = None) -> dict[str, Any]:
        """Client counters (available, buffered, dropped, replayed, conflicts, ...); with
        ``camera`` also its tracks per status, key count, live plate claims and memory
        (``source``: "redis", or "local" from the local view while Redis is down)."""
        if camera is not None:
            check_camera(camera)
        counts = {s.value: 0 for s in TrackStatus}
        with self._lock:
            ns: dict[str, Any] | None = None
            if camera is not None and self._usable():
                try:
                    ns = namespace_stats(self._r, camera, counts)
                except redis.RedisError as exc:
                    self._down(exc)
            out: dict[str, Any] = {
                "client_id": self.client_id,
                "available": self._available,
                "buffered": self.buffered,
                "dropped": self.dropped,
                "replayed": self.replayed,
                "conflicts": self.conflicts,
                "last_error": self.last_error,
            }
            if camera is None:
                return out
            if ns is None:
                counts.update(self._local.counts(camera))
                ns = {"camera": camera, "source": "local", "tracks": sum(counts.values())}
                ns.update(status=counts, keys=None, plates=None, memory_bytes=None)
            return out | ns

    def purge(self, camera: str) -> int:
        """Delete every key of ``camera`` (SCAN + UNLINK), then its local state and buffered
        writes; returns the number of keys deleted. Raises :class:`CacheUnavailable` (and
        changes nothing) when Redis is unreachable."""
        check_camera(camera)
        with self._lock:
            try:
                n = purge_namespace(self._r, camera)
            except redis.RedisError as exc:  # nothing changed, locally either
                self._down(exc)
                raise CacheUnavailable(f"Redis {self.url} unreachable: {self.last_error}") from None
            self._local.drop_camera(camera)
            self._drop_camera_ops(camera)
            return n
