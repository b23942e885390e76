"""Two cameras, one vehicle record: merge a gate's plate-camera and overview-camera
observations of the same vehicle by time.

A gate has a plate camera (reads plates; its plate observations drive the access decision)
and optionally an overview camera (sees the whole vehicle: class, colour, direction). Each
camera tracks the vehicle independently, so their observations are paired by the time of
first sighting: an observation joins the open record of the other camera whose
``first_seen`` is closest to its own, within ``window_s``. Records stay open (mergeable)
until nothing has been seen of them for ``2 * window_s``; ``expire`` hands them back for
final storage.

Rules (``GateMerger.add``):

- plate observation from the plate camera: updates the record already holding that track
  (the more confident plate wins), else completes the nearest overview-only record, else
  opens a new record;
- vehicle observation from the overview camera: completes the nearest record that has a
  plate and no overview yet (a repeat of an overview track updates its record), else opens
  an overview-only record that waits for a plate;
- vehicle observation from the plate camera (its track ended): updates the record holding
  that track (direction, dwell; class and colour only where still empty), even after the
  record closed (a car waiting at the barrier, a slow client: a bounded index of closed
  records by track); ignored if none.

The overview camera's class, colour and direction take precedence (it sees the whole
vehicle), whichever arrives first; the plate camera's dwell takes precedence (it is
measured at the barrier). ``MergeResult.decide`` is True whenever the record has a plate
and no decision yet: the caller decides, then stores the decision back with ``update``.
Pure logic: no I/O, no clocks; idempotent per ``event_id``; memory is bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from uuid import uuid4

from .contracts import Observation, ObservationKind, VehicleRecord


@dataclass(frozen=True)
class MergeResult:
    """What one observation did: the record's new version, whether it was just created, and
    whether the caller should make (or retry) the access decision for it."""

    record: VehicleRecord
    created: bool
    decide: bool


@dataclass
class _Open:
    """An open record and its bookkeeping (not part of the stored record)."""

    record: VehicleRecord
    last_seen: float  # latest sighting (reported_at) of any of its observations
    plate_track: str | None = None
    overview_track: str | None = None
    overview_direction: bool = False  # the overview camera supplied the direction


def _new_id() -> str:
    return uuid4().hex


class GateMerger:
    """Merges one gate's camera observations into ``VehicleRecord``s (see the module doc).

    ``window_s``: observations whose first sightings are this close may be the same vehicle.
    ``max_open``: open records kept at most; beyond it the least recently updated one is
    closed and returned by the next ``expire`` call. ``max_seen``: event ids remembered
    for idempotency (oldest forgotten first).
    """

    def __init__(
        self,
        gate: str,
        plate_camera: str,
        overview_camera: str | None,
        window_s: float,
        new_id: Callable[[], str] = _new_id,
        max_open: int = 10_000,
        max_seen: int = 100_000,
    ) -> None:
        if window_s <= 0 or max_open < 1 or max_seen < 1:
            raise ValueError("window_s, max_open and max_seen must be positive")
        self.gate = gate
        self.plate_camera = plate_camera
        self.overview_camera = overview_camera
        self.window_s = window_s
        self._new_id = new_id
        self._max_open = max_open
        self._max_seen = max_seen
        self._open: OrderedDict[str, _Open] = OrderedDict()  # least recently updated first
        self._plate_tracks: dict[str, str] = {}  # plate camera track id -> record id
        self._overview_tracks: dict[str, str] = {}  # overview camera track id -> record id
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._evicted: list[VehicleRecord] = []
        # closed records by plate-camera track: a track's end event (direction, dwell) can
        # come long after its record stopped merging (a car waiting at the barrier, a slow
        # client); it still completes the record
        self._closed: OrderedDict[str, _Open] = OrderedDict()
        self._max_closed = max_open

    def __len__(self) -> int:
        return len(self._open)

    def get(self, record_id: str) -> VehicleRecord | None:
        """The open record with this id, or None (unknown or already expired)."""
        entry = self._open.get(record_id)
        return entry.record if entry else None

    def open_records(self) -> list[VehicleRecord]:
        return [e.record for e in self._open.values()]

    # --- input ---------------------------------------------------------------------------
    def add(self, obs: Observation) -> MergeResult | None:
        """Merge one observation. None when it is not for this gate (another camera, or a
        plate observation from the overview camera), a repeated ``event_id``, or a
        plate-camera vehicle observation whose track has no open record."""
        from_plate = obs.camera == self.plate_camera
        from_overview = not from_plate and obs.camera == self.overview_camera
        if not (from_plate or from_overview) or obs.event_id in self._seen:
            return None
        if from_overview and obs.kind is not ObservationKind.VEHICLE:
            return None
        self._remember(obs.event_id)
        if from_plate and obs.kind is ObservationKind.PLATE:
            return self._plate(obs)
        if from_plate:
            return self._plate_vehicle(obs)
        return self._overview(obs)

    def _plate(self, obs: Observation) -> MergeResult:
        rid = self._plate_tracks.get(obs.track_id)
        entry = self._open.get(rid) if rid is not None else None
        if entry is not None:
            rec = entry.record
            if obs.confidence > rec.plate_confidence or not rec.plate:
                rec = rec.with_(
                    plate=obs.plate,
                    plate_confidence=obs.confidence,
                    crop_path=obs.crop_path or rec.crop_path,
                )
            return self._store(entry, rec, obs, created=False)
        entry = self._nearest(obs.first_seen_wall, lambda e: e.plate_track is None)
        created = entry is None
        if entry is None:
            entry = self._create(obs)
        entry.plate_track = obs.track_id
        self._plate_tracks[obs.track_id] = entry.record.record_id
        rec = entry.record.with_(
            plate=obs.plate,
            plate_confidence=obs.confidence,
            plate_camera=obs.camera,
            crop_path=obs.crop_path,
        )
        return self._store(entry, self._complete(entry, rec, obs), obs, created=created)

    def _overview(self, obs: Observation) -> MergeResult:
        rid = self._overview_tracks.get(obs.track_id)
        entry = self._open.get(rid) if rid is not None else None
        created = False
        if entry is None:
            entry = self._nearest(
                obs.first_seen_wall,
                lambda e: e.plate_track is not None and e.overview_track is None,
            )
        if entry is None:
            entry = self._create(obs)
            created = True
        entry.overview_track = obs.track_id
        self._overview_tracks[obs.track_id] = entry.record.record_id
        rec = entry.record
        changes: dict[str, object] = {
            "overview_camera": obs.camera,
            "overview_crop_path": obs.crop_path or rec.overview_crop_path,
        }
        if obs.vehicle_class:
            changes["vehicle_class"] = obs.vehicle_class
        if obs.color:
            changes["color"] = obs.color
        if obs.direction is not None:
            changes["direction"] = obs.direction
            entry.overview_direction = True
        if rec.dwell_s is None and obs.dwell_s is not None:
            changes["dwell_s"] = obs.dwell_s
        return self._store(entry, rec.with_(**changes), obs, created=created)

    def _plate_vehicle(self, obs: Observation) -> MergeResult | None:
        rid = self._plate_tracks.get(obs.track_id)
        entry = self._open.get(rid) if rid is not None else None
        if entry is None:
            entry = self._closed.pop(obs.track_id, None)
            if entry is None:
                return None
            entry.record = self._complete(entry, entry.record, obs).with_(
                event_ids=(*entry.record.event_ids, obs.event_id)
            )
            return MergeResult(entry.record, created=False, decide=False)
        return self._store(entry, self._complete(entry, entry.record, obs), obs, created=False)

    @staticmethod
    def _complete(entry: _Open, rec: VehicleRecord, obs: Observation) -> VehicleRecord:
        """What a plate-camera observation adds to ``rec``: its direction (unless the
        overview camera gave one), dwell, and class/colour where still empty."""
        changes: dict[str, object] = {}
        if obs.direction is not None and not entry.overview_direction:
            changes["direction"] = obs.direction
        if obs.dwell_s is not None:
            changes["dwell_s"] = obs.dwell_s
        if obs.vehicle_class and not rec.vehicle_class:
            changes["vehicle_class"] = obs.vehicle_class
        if obs.color and rec.color is None:
            changes["color"] = obs.color
        return rec.with_(**changes)

    # --- output --------------------------------------------------------------------------
    def update(self, record: VehicleRecord) -> bool:
        """Store the caller's new version of an open record (e.g. with its decision), so
        later observations build on it. False when the record is no longer open."""
        entry = self._open.get(record.record_id)
        if entry is None:
            return False
        entry.record = record
        return True

    def expire(self, now: float) -> list[VehicleRecord]:
        """Close and return the records that can no longer merge (nothing seen of them
        since ``now - 2 * window_s``), plus any evicted by the ``max_open`` cap, oldest
        first. The caller stores these final versions."""
        cutoff = now - 2.0 * self.window_s
        out, self._evicted = self._evicted, []
        for rid in [rid for rid, e in self._open.items() if e.last_seen < cutoff]:
            out.append(self._close(rid).record)
        return out

    # --- internals -----------------------------------------------------------------------
    def _nearest(self, t: float, eligible: Callable[[_Open], bool]) -> _Open | None:
        """The eligible open record whose first_seen is closest to ``t`` within the window
        (ties: the earlier-updated record)."""
        best: _Open | None = None
        best_gap = self.window_s
        for entry in self._open.values():
            gap = abs(entry.record.first_seen - t)
            if gap <= best_gap and eligible(entry) and (best is None or gap < best_gap):
                best, best_gap = entry, gap
        return best

    def _create(self, obs: Observation) -> _Open:
        while len(self._open) >= self._max_open:
            self._evicted.append(self._close(next(iter(self._open))).record)
        rec = VehicleRecord(
            record_id=self._new_id(), gate=self.gate, first_seen=obs.first_seen_wall
        )
        entry = _Open(record=rec, last_seen=obs.reported_at)
        self._open[rec.record_id] = entry
        return entry

    def _store(
        self, entry: _Open, rec: VehicleRecord, obs: Observation, *, created: bool
    ) -> MergeResult:
        rec = rec.with_(
            first_seen=min(rec.first_seen, obs.first_seen_wall),
            event_ids=(*rec.event_ids, obs.event_id),
        )
        entry.record = rec
        entry.last_seen = max(entry.last_seen, obs.reported_at, obs.first_seen_wall)
        self._open.move_to_end(rec.record_id)
        return MergeResult(rec, created, decide=bool(rec.plate) and rec.decision is None)

    def _close(self, record_id: str) -> _Open:
        entry = self._open.pop(record_id)
        if entry.plate_track is not None:
            self._closed[entry.plate_track] = entry
            while len(self._closed) > self._max_closed:
                self._closed.popitem(last=False)
        self._forget_tracks(self._plate_tracks, entry.plate_track, record_id)
        self._forget_tracks(self._overview_tracks, entry.overview_track, record_id)
        return entry

    @staticmethod
    def _forget_tracks(index: dict[str, str], track: str | None, record_id: str) -> None:
        if track is not None and index.get(track) == record_id:
            del index[track]

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        while len(self._seen) > self._max_seen:
            self._seen.popitem(last=False)
