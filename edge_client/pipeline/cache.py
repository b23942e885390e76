"""The camera loop's view of the track cache: typed calls that never raise into the loop.

``TrackStore`` is what the loop needs from ``edge_client.state.cache.TrackCache`` (tests
pass a fake). ``LoopCache`` binds it to one camera; every method logs and returns a
default when the store raises: a sighting, vote or status is simply not recorded, and a
report or plate claim counts as won (the event goes out; the dedup window and the
cache's own replay protect against doubles), so a failing cache never loses an event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from edge_client.contracts import Box, PlateResult, Read, TrackStatus

log = logging.getLogger("ovr_alpr.pipeline")
T = TypeVar("T")


class TrackStore(Protocol):
    """The part of ``TrackCache`` the camera loop uses."""

    def upsert_seen(
        self, camera: str, track_key: str, first_seen: float, last_seen: float,
        box: Sequence[float] | None = None, vehicle_class: str | None = None,
    ) -> None: ...  # fmt: skip

    def add_vote(self, camera: str, track_key: str, read: Read) -> int: ...

    def set_status(self, camera: str, track_key: str, status: TrackStatus | str) -> bool: ...

    def mark_reported(
        self, camera: str, track_key: str, result: PlateResult, event_id: str, *,
        first_seen: float | None = None, last_seen: float | None = None,
        box: Sequence[float] | None = None, vehicle_class: str | None = None,
    ) -> bool: ...  # fmt: skip

    def claim_report(self, camera: str, plate: str, event_id: str, window_s: float) -> bool: ...

    def heartbeat(self, camera: str, fields: dict[str, str | int | float], ttl_s: int) -> bool: ...


class LoopCache:
    """One camera's typed, never-raising facade over a ``TrackStore``."""

    def __init__(self, store: TrackStore, camera: str) -> None:
        self.store, self.camera = store, camera
        self.failures = 0  # calls that raised (and returned their default)

    def _call(self, op: str, fn: Callable[[], T], default: T) -> T:
        try:
            return fn()
        except Exception as exc:
            self.failures += 1
            log.warning("camera %s: cache %s failed: %s", self.camera, op, exc)
            return default

    def seen(
        self, key: str, first_seen: float, last_seen: float, box: Box, vehicle_class: str
    ) -> None:
        """Record a sighting of a track."""
        self._call(
            "upsert_seen",
            lambda: self.store.upsert_seen(
                self.camera, key, first_seen, last_seen, box, vehicle_class
            ),
            None,
        )

    def vote(self, key: str, read: Read) -> None:
        """Record one read of a track."""
        self._call("add_vote", lambda: self.store.add_vote(self.camera, key, read), None)

    def no_plate(self, key: str) -> None:
        """The track was decided without a plate."""
        self._call(
            "set_status",
            lambda: self.store.set_status(self.camera, key, TrackStatus.NO_PLATE),
            None,
        )

    def report(
        self, key: str, result: PlateResult, event_id: str, *, first_seen: float,
        last_seen: float, box: Box, vehicle_class: str,
    ) -> bool:  # fmt: skip
        """Mark the track read by ``event_id``; False when another event already has it
        (True when the cache fails: reporting wins over losing an event)."""
        return self._call(
            "mark_reported",
            lambda: self.store.mark_reported(
                self.camera,
                key,
                result,
                event_id,
                first_seen=first_seen,
                last_seen=last_seen,
                box=box,
                vehicle_class=vehicle_class,
            ),
            True,
        )

    def claim(self, plate: str, event_id: str, window_s: float) -> bool:
        """First report of ``plate`` within ``window_s`` (True when the cache fails)."""
        return self._call(
            "claim_report",
            lambda: self.store.claim_report(self.camera, plate, event_id, window_s),
            True,
        )

    def heartbeat(self, fields: dict[str, str | int | float], ttl_s: int) -> bool:
        """Publish the camera's status hash (False when the cache fails)."""
        return self._call(
            "heartbeat", lambda: self.store.heartbeat(self.camera, fields, ttl_s), False
        )
