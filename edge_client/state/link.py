"""The Redis side of :class:`edge_client.state.cache.TrackCache`: connection state, the bounded
buffer of writes made while Redis is unreachable, and their in-order replay
(reconciliation). Writes are :class:`Op` records run by the Lua scripts of
:mod:`edge_client.state.scripts`.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from alpr_common.backoff import Backoff
from edge_client.state import scripts as lua
from edge_client.state.keys import check_client_id, plate_claim, track_hash, track_index
from edge_client.state.local import LocalView

log = logging.getLogger("edge_client.state.cache")
REPLAY_BATCH = 200  # buffered writes sent per pipeline round trip


class CacheUnavailable(RuntimeError):
    """An administrative operation (purge, cameras) needs Redis and it is unreachable."""


class CacheAuthError(ValueError):
    """Redis refused the connection's credentials (password missing or wrong)."""


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _default_client_id() -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", f"{socket.gethostname()}-{os.getpid()}")[:100]


def merge_seen(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    """Two sightings (first_seen, last_seen, box, vehicle_class) as one, like the script."""
    fs = min((v for v in (old[0], new[0]) if v), key=float, default="")
    newest = not old[1] or (bool(new[1]) and float(new[1]) >= float(old[1]))
    if not newest:
        return (fs, *old[1:])
    return (fs, new[1] or old[1], new[2] or old[2], new[3] or old[3])


@dataclass
class Op:
    kind: str  # seen | vote | mark | status | claim
    camera: str
    key: str  # track key, or the plate id for claims
    args: tuple[str, ...]
    deadline: float = 0.0  # claims: monotonic end of the dedup window
    extra: dict[str, str] = field(default_factory=dict)  # mark: result fields


class RedisLink:
    """Availability, the write buffer and its replay; :class:`TrackCache` adds the API.
    Thread-safe: one lock serialises an instance's calls (Redis I/O included)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_s: float = 3600,
        local_buffer: int = 10_000,
        client_id: str | None = None,
        retry_interval_s: float = 1.0,
        auto_reconcile: bool = True,
        url: str = "redis",
    ) -> None:
        if not client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the track cache needs a redis client made with decode_responses=True")
        if ttl_s <= 0 or local_buffer < 1:
            raise ValueError("ttl_s must be > 0 and local_buffer >= 1")
        self._r = client
        self.ttl_ms = int(ttl_s * 1000)
        self.client_id = check_client_id(client_id or _default_client_id())
        self.retry_interval_s = retry_interval_s
        self.auto_reconcile = auto_reconcile
        # back off 1x, 2x, 4x, 8x retry_interval_s between reconnect attempts
        self._retry = Backoff(retry_interval_s, 8 * retry_interval_s).retry()
        self.url = redact_url(url)
        self._lock = threading.RLock()
        self._local = LocalView(ttl_s, local_buffer, self.client_id)
        self._pending: deque[Op] = deque()
        self._capacity = local_buffer
        self._seen_ops: dict[tuple[str, str], Op] = {}  # the pending "seen" op per track
        self._available = True
        self._next_try = 0.0
        self.last_error: str | None = None
        self.dropped = self.replayed = self.conflicts = 0
        self.recent_conflicts: deque[dict[str, str]] = deque(maxlen=100)
        self._scripts = {
            "seen": client.register_script(lua.UPSERT_SEEN),
            "vote": client.register_script(lua.ADD_VOTE),
            "mark": client.register_script(lua.MARK_REPORTED),
            "status": client.register_script(lua.SET_STATUS),
            "claim": client.register_script(lua.CLAIM_REPORT),
        }

    # --- state ----------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """Whether the last Redis operation succeeded (no I/O)."""
        return self._available

    @property
    def buffered(self) -> int:
        """Writes waiting to be replayed."""
        return len(self._pending)

    def close(self) -> None:
        self._r.close()

    def _down(self, exc: Exception) -> None:
        if self._available:
            log.warning(
                "Redis %s unavailable (%s: %s); buffering writes locally",
                self.url,
                type(exc).__name__,
                exc,
            )
        self._available = False
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._next_try = time.monotonic() + self._retry.fail()

    def _usable(self) -> bool:
        """Redis reachable and the buffer replayed. While Redis is down, an operation
        after the retry delay reconciles first (unless ``auto_reconcile`` is off)."""
        if self._available and not self._pending:
            return True
        if not self._available and (not self.auto_reconcile or time.monotonic() < self._next_try):
            return False
        self.reconcile()
        return self._available and not self._pending

    def reconcile(self) -> int:
        """Ping Redis if it was down, then replay buffered writes in order (pipelined in
        batches); returns how many were replayed. Call it periodically, e.g. from a
        background thread: the ping runs outside the lock, so a dead server blocks only
        the caller (for at most about 2 socket timeouts)."""
        if not self._available:
            try:
                self._r.ping()
            except redis.RedisError as exc:
                with self._lock:
                    self._down(exc)
                return 0
        with self._lock:
            if not self._available:
                log.info("Redis %s reachable again; replaying %d writes", self.url, self.buffered)
                self._available = True
            n = 0
            while self._pending:
                batch = list(itertools.islice(self._pending, REPLAY_BATCH))
                pipe = self._r.pipeline(transaction=False)
                for op in batch:
                    self._exec(op, pipe)
                try:  # every script is idempotent: a batch cut short can run again
                    results = pipe.execute(raise_on_error=False)
                except redis.RedisError as exc:
                    self._down(exc)
                    break
                for op, res in zip(batch, results, strict=True):
                    if isinstance(res, Exception):  # this write itself is refused: give it up
                        log.error("Redis refused a buffered %s write: %s", op.kind, res)
                        self.dropped += 1
                    else:
                        self._settle(op, res)
                        n += 1
                    self._forget(self._pending.popleft())
            self.replayed += n
            if self._available:
                self._retry.reset()
            return n

    def _forget(self, op: Op) -> None:
        if self._seen_ops.get((op.camera, op.key)) is op:
            del self._seen_ops[(op.camera, op.key)]

    def _enqueue(self, op: Op) -> None:
        """Buffer ``op``. Sightings of a track merge into its pending one (same min/max
        rules as the script); when full, the oldest write that is not a report decision
        (mark/claim) is dropped, so decisions are kept for reconciliation longest."""
        if op.kind == "seen":
            queued = self._seen_ops.get((op.camera, op.key))
            if queued is not None:
                queued.args = merge_seen(queued.args, op.args)
                return
            self._seen_ops[(op.camera, op.key)] = op
        if len(self._pending) >= self._capacity:
            victim = next(
                (i for i, o in enumerate(self._pending) if o.kind not in ("mark", "claim")), 0
            )
            self._forget(self._pending[victim])
            del self._pending[victim]
            self.dropped += 1
        self._pending.append(op)

    def _drop_camera_ops(self, camera: str) -> None:
        kept = [op for op in self._pending if op.camera != camera]
        self._pending.clear()
        self._pending.extend(kept)
        self._seen_ops = {k: op for k, op in self._seen_ops.items() if k[0] != camera}

    def _exec(self, op: Op, client: redis.client.Pipeline | None = None) -> Any:
        """Run ``op``'s script (on ``client``, a pipeline, if given: queued only)."""
        if op.kind == "claim":
            px = max(1, int((op.deadline - time.monotonic()) * 1000))
            script = self._scripts["claim"]
            return script([plate_claim(op.camera, op.key)], [op.args[0], px], client)
        keys = [track_hash(op.camera, op.key), track_index(op.camera)]
        head = [op.key, str(self.ttl_ms), self.client_id]
        flat = [x for kv in op.extra.items() for x in kv]
        return self._scripts[op.kind](keys, [*head, *op.args, *flat], client)

    def _settle(self, op: Op, res: Any) -> None:
        """Check a replayed write's result: a lost claim or report is a conflict."""
        if op.kind in ("mark", "claim") and not int(res[0]):
            self.conflicts += 1
            self.recent_conflicts.append(
                {
                    "kind": op.kind,
                    "camera": op.camera,
                    "key": op.key,
                    "ours": op.args[0],
                    "theirs": res[1],
                }
            )
            log.warning(
                "Redis reconcile: %s %s/%s was already reported by event %s; ours (%s)"
                " may be a duplicate",
                op.kind,
                op.camera,
                op.key,
                res[1],
                op.args[0],
            )
            if op.kind == "mark":
                self._local.lost_report(op.camera, op.key, res[1], res[2])
            elif int(res[2]) > 0:  # the other claim's remaining window
                self._local.claim(op.camera, op.key, res[1], int(res[2]) / 1000)

    def _write(self, op: Op) -> Any:
        """Run ``op`` on Redis; None (and the op buffered) when Redis is unusable."""
        if self._usable():
            try:
                return self._exec(op)
            except redis.RedisError as exc:
                self._down(exc)
        self._enqueue(op)
        return None
