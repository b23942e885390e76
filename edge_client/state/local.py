"""In-process view of the tracks and plate claims this client knows, used while Redis is
unreachable. It mirrors the Lua scripts of :mod:`edge_client.state.scripts` on plain
dicts of the same string fields, and is bounded in size (LRU) and in time (TTL).
Not thread-safe on its own: :class:`edge_client.state.cache.TrackCache` holds its lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from edge_client.state.keys import TrackState, state_from_hash

Fields = dict[str, str]


class LocalView:
    def __init__(self, ttl_s: float, max_tracks: int, client_id: str) -> None:
        self.ttl_s = ttl_s
        self.max_tracks = max_tracks
        self.client_id = client_id
        self._tracks: OrderedDict[tuple[str, str], tuple[float, Fields]] = OrderedDict()
        self._claims: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    # --- tracks -------------------------------------------------------------------------
    def _fields(self, camera: str, key: str, create: bool = True) -> Fields | None:
        now = time.monotonic()
        entry = self._tracks.get((camera, key))
        if entry is not None and now - entry[0] > self.ttl_s:
            del self._tracks[(camera, key)]
            entry = None
        if entry is None:
            if not create:
                return None
            entry = (now, {"status": "pending", "reads": "0", "votes": "[]"})
        self._tracks[(camera, key)] = (now, entry[1])
        self._tracks.move_to_end((camera, key))
        while len(self._tracks) > self.max_tracks:
            self._tracks.popitem(last=False)
        return entry[1]

    def _touch(self, f: Fields) -> None:
        f["updated_at"] = f"{time.time():.6f}"
        f["updated_by"] = self.client_id

    @staticmethod
    def _seen(f: Fields, fs: str, ls: str, box: str, vc: str) -> None:
        if fs and ("first_seen" not in f or float(fs) < float(f["first_seen"])):
            f["first_seen"] = fs
        newest = not ls or "last_seen" not in f or float(ls) >= float(f["last_seen"])
        if ls and newest:
            f["last_seen"] = ls
        if newest and box:
            f["box"] = box
        if newest and vc:
            f["vehicle_class"] = vc

    def upsert_seen(self, camera: str, key: str, fs: str, ls: str, box: str, vc: str) -> None:
        f = self._fields(camera, key)
        assert f is not None
        self._seen(f, fs, ls, box, vc)
        self._touch(f)

    def add_vote(self, camera: str, key: str, vote: str, vote_id: str, max_votes: int) -> int:
        f = self._fields(camera, key)
        assert f is not None
        votes = f.get("votes") or "[]"
        if f'"id":"{vote_id}"' in votes:
            return -1
        n = int(f.get("reads") or 0) + 1
        f["reads"] = str(n)
        if n <= max_votes:
            f["votes"] = f"[{vote}]" if votes in ("[]", "{}") else f"{votes[:-1]},{vote}]"
        self._touch(f)
        return n

    def mark_reported(
        self, camera: str, key: str, event_id: str, seen: tuple[str, str, str, str], extra: Fields
    ) -> tuple[bool, str]:
        f = self._fields(camera, key)
        assert f is not None
        if f.get("status") == "read" and f.get("event_id", "") != event_id:
            return False, f.get("event_id", "")
        f.update(status="read", event_id=event_id, **extra)
        self._seen(f, *seen)
        self._touch(f)
        return True, event_id

    def lost_report(self, camera: str, key: str, event_id: str, plate: str) -> None:
        """Record that another client reported this track (seen on a replay or a loss)."""
        f = self._fields(camera, key)
        assert f is not None
        f.update(status="read", event_id=event_id)
        if plate:
            f["plate"] = plate

    def set_status(self, camera: str, key: str, status: str) -> bool:
        f = self._fields(camera, key)
        assert f is not None
        if f.get("status") == "read" and status != "read":
            return False
        f["status"] = status
        self._touch(f)
        return True

    def put(self, camera: str, key: str, fields: Fields) -> None:
        """Replace the view of a track with what Redis returned."""
        f = self._fields(camera, key)
        assert f is not None
        f.clear()
        f.update(fields)

    def forget(self, camera: str, key: str) -> None:
        self._tracks.pop((camera, key), None)

    def get(self, camera: str, key: str) -> TrackState | None:
        f = self._fields(camera, key, create=False)
        return state_from_hash(camera, key, f) if f else None

    def status_of(self, camera: str, key: str) -> tuple[str, str]:
        f = self._fields(camera, key, create=False) or {}
        return f.get("status", ""), f.get("event_id", "")

    def list(self, camera: str, limit: int) -> list[TrackState]:
        now = time.monotonic()
        keys = [
            k for (c, k), (t, _) in self._tracks.items() if c == camera and now - t <= self.ttl_s
        ]
        states = [s for k in keys if (s := self.get(camera, k)) is not None]
        states.sort(key=lambda s: s.updated_at or 0.0, reverse=True)
        return states[:limit]

    def counts(self, camera: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.list(camera, len(self._tracks)):
            out[s.status.value] = out.get(s.status.value, 0) + 1
        return out

    def drop_camera(self, camera: str) -> None:
        for k in [k for k in self._tracks if k[0] == camera]:
            del self._tracks[k]
        for k in [k for k in self._claims if k[0] == camera]:
            del self._claims[k]

    # --- plate claims -------------------------------------------------------------------
    def claim_holder(self, camera: str, plate: str) -> str | None:
        """The event id holding a live local claim on this plate, if any."""
        entry = self._claims.get((camera, plate))
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._claims[(camera, plate)]
            return None
        return entry[0]

    def claim(self, camera: str, plate: str, event_id: str, window_s: float) -> None:
        now = time.monotonic()
        self._claims[(camera, plate)] = (event_id, now + window_s)
        self._claims.move_to_end((camera, plate))
        while self._claims and (
            len(self._claims) > self.max_tracks or next(iter(self._claims.values()))[1] <= now
        ):
            self._claims.popitem(last=False)
