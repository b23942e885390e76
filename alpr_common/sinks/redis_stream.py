"""Redis Streams sink: ``XADD stream MAXLEN ~ maxlen * event <json> camera <id> plate <text>``.

``emit`` only appends to a bounded in-memory buffer; a daemon writer thread XADDs it in
order (pipelined batches of up to 100). So a Redis outage never raises into, nor blocks,
the pipeline, even with redis-py's default client, whose built-in retries can stall a
command for seconds. While Redis is unreachable the writer retries after
``retry_interval_s``, doubling up to ``max_retry_interval_s``; a full buffer drops the new
event (counted). ``close`` wakes the writer for a last attempt, waits up to
``close_timeout_s``, and counts what is still buffered as dropped.
Delivery is at-least-once: a connection lost in the middle of a batch re-sends that batch.
An error reply that a failover explains (READONLY from a demoted master, NOREPLICAS,
MASTERDOWN, TRYAGAIN, CLUSTERDOWN) is retried like a lost connection; any other error
reply (e.g. WRONGTYPE) fails the batch (counted as failed).

With a ``WaitPolicy`` (``redis.wait_replicas``, see :mod:`alpr_common.redis_conn`), each
batch ends with ``WAIT replicas timeout_ms``: an event leaves the buffer only once the
master acknowledged it, and when fewer replicas than asked confirmed it in time the batch
is counted as ``unconfirmed`` (still delivered: re-sending would duplicate it; such a batch
is lost if the master dies before replicating it). Without it, replication is
asynchronous: an event the master acknowledged just before dying may never reach the
replica that takes over.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from pathlib import Path

import redis

from alpr_common.config import RedisStreamSink
from alpr_common.files import safe_name
from alpr_common.redis_conn import WaitPolicy, wait_policy

from .base import SinkEvent

log = logging.getLogger(__name__)

Fields = dict[str, str]
BATCH = 100
# error replies a failover explains: retried, not counted as failed
TRANSIENT_REPLIES = (redis.exceptions.ReadOnlyError, redis.exceptions.TryAgainError,
                     redis.exceptions.ClusterDownError)  # fmt: skip


class RedisStreamWriter:
    def __init__(
        self,
        client: redis.Redis,
        stream: str = "alpr:events",
        maxlen: int = 10_000,
        *,
        camera: str = "",
        buffer_size: int = 10_000,
        retry_interval_s: float = 1.0,
        max_retry_interval_s: float = 30.0,
        close_timeout_s: float = 5.0,
        wait: WaitPolicy | None = None,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        self.client = client
        # ``{camera}`` in the stream name gives one stream per camera
        self.stream = stream.replace("{camera}", safe_name(camera))
        self.maxlen = int(maxlen)
        self.buffer_size = buffer_size
        self.close_timeout_s = close_timeout_s
        self.wait = wait
        self._retry_min = max(0.001, retry_interval_s)
        self._retry_max = max(self._retry_min, max_retry_interval_s)
        self._buffer: deque[Fields] = deque()
        self._cond = threading.Condition()
        self._counts = {"delivered": 0, "failed": 0, "dropped": 0}
        if wait is not None:
            self._counts["unconfirmed"] = 0  # delivered, but not confirmed by the replicas
        self._closing = False
        self._stopped = False  # the writer has exited or was abandoned by close()
        self._down = False
        self._thread = threading.Thread(
            target=self._run, name=f"redis-stream-{self.stream}", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_config(
        cls,
        cfg: RedisStreamSink,
        *,
        camera: str,
        redis_client: redis.Redis | None = None,
        output_dir: Path | None = None,
    ) -> RedisStreamWriter:
        if redis_client is None:
            raise ValueError("a redis_stream sink needs a Redis client (redis_client=...)")
        return cls(
            redis_client, cfg.stream, cfg.maxlen, camera=camera, wait=wait_policy(redis_client)
        )

    # --- Sink ------------------------------------------------------------------------
    def emit(self, event: SinkEvent) -> None:
        fields: Fields = {
            "event": json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":")),
            "camera": event.camera,
            "plate": event.plate,
        }
        with self._cond:
            if self._closing or len(self._buffer) >= self.buffer_size:
                self._counts["dropped"] += 1
                dropped = self._counts["dropped"]
                if not self._closing and (dropped == 1 or dropped % 1000 == 0):
                    log.warning(
                        "redis stream %s: buffer full (%d), %d event(s) dropped so far",
                        self.stream,
                        self.buffer_size,
                        dropped,
                    )
                return
            self._buffer.append(fields)
            self._cond.notify_all()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything emitted so far is written; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._cond.notify_all()
            while self._buffer and not self._stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return not self._buffer

    def close(self, timeout_s: float | None = None) -> None:
        """Last attempt to write the buffer (within ``timeout_s``, default
        ``close_timeout_s``); what is left is counted as dropped. The Redis client is
        shared and is not closed here."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(self.close_timeout_s if timeout_s is None else max(0.0, timeout_s))
        with self._cond:
            self._stopped = True  # a writer still stuck in a command no longer counts
            left = len(self._buffer)
            self._buffer.clear()
            self._counts["dropped"] += left
            self._cond.notify_all()
        if left:
            log.warning(
                "redis stream %s: %d buffered event(s) dropped at close (Redis unreachable)",
                self.stream,
                left,
            )

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {**self._counts, "buffered": len(self._buffer)}

    # --- writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        delay = self._retry_min
        while True:
            with self._cond:
                while not self._buffer and not self._closing:
                    self._cond.wait()
                if not self._buffer or self._stopped:
                    return
                # emit only appends on the right, so the head is stable while we write
                batch = [self._buffer[i] for i in range(min(BATCH, len(self._buffer)))]
            ok, refused = self._write(batch)
            with self._cond:
                if self._stopped:
                    return
                if ok or refused:
                    for _ in batch:
                        self._buffer.popleft()
                    self._counts["delivered" if ok else "failed"] += len(batch)
                    delay = self._retry_min
                    self._cond.notify_all()
                    continue
                if self._closing:  # the attempt close() asked for failed: give up
                    return
                self._cond.wait(delay)  # close() wakes us for a last attempt
                delay = min(self._retry_max, delay * 2)

    def _write(self, batch: list[Fields]) -> tuple[bool, bool]:
        """(written, refused): refused means Redis answered with an error (e.g. WRONGTYPE)
        that retrying cannot fix; the batch is then counted as failed."""
        try:
            if len(batch) == 1 and self.wait is None:
                self.client.xadd(self.stream, batch[0], maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            else:
                pipe = self.client.pipeline(transaction=False)
                for fields in batch:
                    pipe.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
                if self.wait is not None:
                    pipe.wait(self.wait.replicas, self.wait.timeout_ms)
                replies = pipe.execute()
                if self.wait is not None and int(replies[-1]) < self.wait.replicas:
                    self._unconfirmed(len(batch), int(replies[-1]), self.wait)
        except redis.ResponseError as exc:
            if isinstance(exc, TRANSIENT_REPLIES) or str(exc).startswith("NOREPLICAS"):
                return self._failed(exc)
            log.error(
                "redis stream %s: XADD refused (%s); %d event(s) lost", self.stream, exc, len(batch)
            )
            return False, True
        except Exception as exc:  # ConnectionError, TimeoutError, ... : retry later
            return self._failed(exc)
        if self._down:
            log.info("redis stream %s: Redis reachable again", self.stream)
            self._down = False
        return True, False

    def _failed(self, exc: Exception) -> tuple[bool, bool]:
        """A batch to retry later (Redis unreachable, or a failover under way)."""
        if not self._down and not self._stopped:
            log.warning(
                "redis stream %s: XADD failed (%s: %s); buffering up to %d event(s)",
                self.stream,
                type(exc).__name__,
                exc,
                self.buffer_size,
            )
            self._down = True
        return False, False

    def _unconfirmed(self, n: int, replicas: int, wait: WaitPolicy) -> None:
        with self._cond:
            self._counts["unconfirmed"] += n
            total = self._counts["unconfirmed"]
        if total == n or total // 1000 != (total - n) // 1000:  # the first, then every 1000
            log.warning(
                "redis stream %s: WAIT: %d of %d replica(s) confirmed in %d ms; %d event(s) "
                "unconfirmed so far (lost if the master fails before replicating them)",
                self.stream, replicas, wait.replicas, wait.timeout_ms, total,
            )  # fmt: skip

    def __repr__(self) -> str:
        return f"RedisStreamWriter(stream={self.stream!r}, maxlen={self.maxlen})"
