"""Namespace-wide Redis operations behind ``TrackCache.cameras/stats/purge`` and the
``alpr-cache`` CLI. They walk keys with SCAN (never KEYS), so they do not block Redis,
and may raise ``redis.RedisError``; the cache turns that into its own handling.
"""

from __future__ import annotations

from typing import Any

import redis

from edge_client.state.keys import PREFIX, camera_of_index, ns_pattern

MEMORY_SCAN_LIMIT = 10_000  # namespace_stats sums MEMORY USAGE only up to this many keys
UNLINK_BATCH = 500


def list_cameras(r: redis.Redis) -> list[str]:
    """Cameras with a track index (``alpr:*:tracks`` sorted sets)."""
    found = {
        camera_of_index(k)
        for k in r.scan_iter(match=f"{PREFIX}:*:tracks", count=1000, _type="zset")
    }
    return sorted(c for c in found if c)


def namespace_stats(r: redis.Redis, camera: str, counts: dict[str, int]) -> dict[str, Any]:
    """Tracks per status (added to ``counts``), key count, live plate claims and, for up
    to MEMORY_SCAN_LIMIT keys, the summed ``MEMORY USAGE`` of the camera's namespace."""
    keys = list(r.scan_iter(match=ns_pattern(camera), count=1000))
    track_prefix, plate_prefix = f"{PREFIX}:{camera}:track:", f"{PREFIX}:{camera}:plate:"
    pipe = r.pipeline(transaction=False)
    for k in keys:
        if k.startswith(track_prefix):
            pipe.hget(k, "status")
    for st in pipe.execute():
        if st is not None:
            counts[st] = counts.get(st, 0) + 1
    memory = None
    if len(keys) <= MEMORY_SCAN_LIMIT:
        pipe = r.pipeline(transaction=False)
        for k in keys:
            pipe.memory_usage(k)
        memory = sum(int(m or 0) for m in pipe.execute())
    return {
        "camera": camera,
        "source": "redis",
        "tracks": sum(counts.values()),
        "status": counts,
        "keys": len(keys),
        "plates": sum(k.startswith(plate_prefix) for k in keys),
        "memory_bytes": memory,
    }


def purge_namespace(r: redis.Redis, camera: str) -> int:
    """UNLINK every key of ``camera`` in batches; returns the number deleted."""
    n, batch = 0, []
    for k in r.scan_iter(match=ns_pattern(camera), count=1000):
        batch.append(k)
        if len(batch) >= UNLINK_BATCH:
            n += int(r.unlink(*batch))
            batch = []
    if batch:
        n += int(r.unlink(*batch))
    return n
