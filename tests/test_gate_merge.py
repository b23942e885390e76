"""Merging a gate's plate-camera and overview-camera observations into vehicle records,
on synthetic observation streams."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from gate.contracts import Direction, Observation, ObservationKind, VehicleRecord
from gate.merge import GateMerger, MergeResult

PLATE_CAM, OVERVIEW_CAM = "gate1-plate", "gate1-overview"
WINDOW = 5.0
_eids = itertools.count()


def plate(t: float, track: str = "p1", text: str = "AB12CDE", conf: float = 0.9,
          *, eid: str | None = None, camera: str = PLATE_CAM, reported: float | None = None,
          **kw: Any) -> Observation:  # fmt: skip
    """A plate observation first seen at ``t`` (reported half a second later)."""
    return Observation(
        kind=ObservationKind.PLATE,
        event_id=eid or f"e{next(_eids)}",
        camera=camera,
        track_id=track,
        first_seen_wall=t,
        reported_at=t + 0.5 if reported is None else reported,
        plate=text,
        confidence=conf,
        crop_path=f"crops/{track}.jpg",
        **kw,
    )


def vehicle(t: float, track: str = "o1", colour: str | None = "red", cls: str = "car",
            direction: Direction | None = Direction.ENTRY, dwell: float | None = 4.0,
            *, eid: str | None = None, camera: str = OVERVIEW_CAM,
            reported: float | None = None) -> Observation:  # fmt: skip
    """A vehicle (track ended) observation first seen at ``t``, reported 3 s later."""
    return Observation(
        kind=ObservationKind.VEHICLE,
        event_id=eid or f"e{next(_eids)}",
        camera=camera,
        track_id=track,
        first_seen_wall=t,
        reported_at=t + 3.0 if reported is None else reported,
        vehicle_class=cls,
        color=colour,
        direction=direction,
        dwell_s=dwell,
        crop_path=f"crops/{track}.jpg" if camera == OVERVIEW_CAM else None,
    )


def merger(overview: str | None = OVERVIEW_CAM, **kw: Any) -> GateMerger:
    ids = itertools.count(1)
    return GateMerger("gate1", PLATE_CAM, overview, WINDOW, new_id=lambda: f"r{next(ids)}", **kw)


@dataclass(frozen=True)
class Summary:
    """The fields a stream test checks, per record."""

    plate: str
    vehicle_class: str = ""
    color: str | None = None
    direction: Direction | None = None
    dwell_s: float | None = None

    @classmethod
    def of(cls, r: VehicleRecord) -> Summary:
        return cls(r.plate, r.vehicle_class, r.color, r.direction, r.dwell_s)


def outcome(r: MergeResult | None) -> str:
    """'-' ignored, 'C' created, 'U' updated; '!' when the caller must decide."""
    if r is None:
        return "-"
    return ("C" if r.created else "U") + ("!" if r.decide else "")


def run(m: GateMerger, stream: list[Observation]) -> str:
    """Feed a stream like the gate service does: decide when asked, store the decision."""
    outcomes = []
    for obs in stream:
        r = m.add(obs)
        outcomes.append(outcome(r))
        if r is not None and r.decide:
            assert m.update(r.record.with_(decision="allow", decided_at=obs.reported_at))
    return " ".join(outcomes)


RED_ENTRY = dict(vehicle_class="car", color="red", direction=Direction.ENTRY, dwell_s=4.0)


@pytest.mark.parametrize(
    ("stream", "outcomes", "records"),
    [
        pytest.param(
            [plate(100.0), vehicle(100.6)],
            "C! U",
            [Summary("AB12CDE", **RED_ENTRY)],
            id="plate-then-overview-within-window",
        ),
        pytest.param(
            [vehicle(100.0), plate(100.8)],
            "C U!",
            [Summary("AB12CDE", **RED_ENTRY)],
            id="overview-first-then-plate-decides",
        ),
        pytest.param(
            [plate(100.0), vehicle(106.0)],
            "C! C",
            [Summary("AB12CDE"), Summary("", **RED_ENTRY)],
            id="outside-window-two-records",
        ),
        pytest.param(
            [vehicle(100.0), plate(105.5)],
            "C C!",
            [Summary("", **RED_ENTRY), Summary("AB12CDE")],
            id="overview-first-outside-window",
        ),
        pytest.param(
            [plate(100.0, "p1", "AAA111"), plate(102.0, "p2", "BBB222"),
             vehicle(100.3, "o1", "red"), vehicle(102.2, "o2", "blue")],
            "C! C! U U",
            [Summary("AAA111", **RED_ENTRY), Summary("BBB222", **{**RED_ENTRY, "color": "blue"})],
            id="two-vehicles-2s-apart-nearest-partner",
        ),
        pytest.param(
            [plate(100.0, "p1", "AAA111"), plate(102.0, "p2", "BBB222"),
             vehicle(102.2, "o2", "blue"), vehicle(100.3, "o1", "red")],
            "C! C! U U",
            [Summary("AAA111", **RED_ENTRY), Summary("BBB222", **{**RED_ENTRY, "color": "blue"})],
            id="two-vehicles-overviews-reversed",
        ),
        pytest.param(
            [vehicle(100.3, "o1", "red"), vehicle(102.2, "o2", "blue"),
             plate(100.0, "p1", "AAA111"), plate(102.0, "p2", "BBB222")],
            "C C U! U!",
            [Summary("AAA111", **RED_ENTRY), Summary("BBB222", **{**RED_ENTRY, "color": "blue"})],
            id="two-vehicles-overviews-first",
        ),
        pytest.param(
            [plate(100.0, reported=101.0), vehicle(97.5, reported=98.0)],
            "C! U",
            [Summary("AB12CDE", **RED_ENTRY)],
            id="out-of-order-overview-seen-earlier-arrives-later",
        ),
        pytest.param(
            [plate(100.0, eid="dup"), plate(100.0, eid="dup"), vehicle(100.5, eid="dupv"),
             vehicle(100.5, eid="dupv")],
            "C! - U -",
            [Summary("AB12CDE", **RED_ENTRY)],
            id="repeated-events-ignored",
        ),
        pytest.param(
            [plate(100.0), vehicle(100.0, "p1", None, "", Direction.EXIT, 12.0, camera=PLATE_CAM)],
            "C! U",
            [Summary("AB12CDE", direction=Direction.EXIT, dwell_s=12.0)],
            id="plate-camera-vehicle-sets-direction-dwell",
        ),
        pytest.param(
            [plate(100.0), vehicle(100.0, "p1", "grey", "van", Direction.EXIT, 12.0,
                                   camera=PLATE_CAM), vehicle(100.4)],
            "C! U U",
            [Summary("AB12CDE", "car", "red", Direction.ENTRY, 12.0)],
            id="overview-class-colour-direction-win-arriving-later",
        ),
        pytest.param(
            [plate(100.0), vehicle(100.4), vehicle(100.0, "p1", "grey", "van", Direction.EXIT,
                                                   12.0, camera=PLATE_CAM)],
            "C! U U",
            [Summary("AB12CDE", "car", "red", Direction.ENTRY, 12.0)],
            id="overview-class-colour-direction-win-arriving-first",
        ),
        pytest.param(
            [plate(100.0), vehicle(100.4, direction=None, colour=None, cls=""),
             vehicle(100.0, "p1", "grey", "van", Direction.EXIT, 12.0, camera=PLATE_CAM)],
            "C! U U",
            [Summary("AB12CDE", "van", "grey", Direction.EXIT, 12.0)],
            id="plate-camera-fills-what-overview-lacked",
        ),
        pytest.param(
            [vehicle(100.0, "p9", camera=PLATE_CAM)],
            "-",
            [],
            id="plate-camera-vehicle-without-record-ignored",
        ),
        pytest.param(
            [plate(100.0, camera="gate2-plate"), vehicle(100.0, camera="gate2-overview")],
            "- -",
            [],
            id="cameras-of-another-gate-ignored",
        ),
        pytest.param(
            [plate(100.0, camera=OVERVIEW_CAM), plate(100.2)],
            "- C!",
            [Summary("AB12CDE")],
            id="plate-read-by-overview-camera-ignored",
        ),
        pytest.param(
            [plate(100.0, "p1", "AB12CDF", 0.6), plate(100.0, "p1", "AB12CDE", 0.95),
             plate(100.0, "p1", "A812CDE", 0.7)],
            "C! U U",
            [Summary("AB12CDE")],
            id="same-track-better-confidence-wins-no-redecide",
        ),
        pytest.param(
            [vehicle(100.0, "o1", "red"), vehicle(100.0, "o1", "blue")],
            "C U",
            [Summary("", **{**RED_ENTRY, "color": "blue"})],
            id="repeated-overview-track-updates-its-record",
        ),
        pytest.param(
            [plate(100.0, "p1", "AAA111"), plate(101.0, "p2", "BBB222"), vehicle(100.9)],
            "C! C! U",
            [Summary("AAA111"), Summary("BBB222", **RED_ENTRY)],
            id="overview-joins-closest-not-first",
        ),
    ],
)  # fmt: skip
def test_streams(stream: list[Observation], outcomes: str, records: list[Summary]) -> None:
    m = merger()
    assert run(m, stream) == outcomes
    assert sorted(map(Summary.of, m.open_records()), key=repr) == sorted(records, key=repr)
    for r in m.open_records():
        assert r.gate == "gate1"
        assert len(set(r.event_ids)) == len(r.event_ids)  # no event counted twice


def test_merged_record_fields() -> None:
    m = merger()
    p = plate(100.0, conf=0.93, reported=100.7)
    v = vehicle(99.2)
    first = m.add(p)
    assert first is not None and first.created and first.decide
    assert first.record.record_id == "r1" and first.record.first_seen == 100.0
    r = m.add(v)
    assert r is not None and not r.created
    rec = r.record
    assert rec.first_seen == 99.2  # min of the sightings
    assert (rec.plate, rec.plate_confidence, rec.plate_camera) == ("AB12CDE", 0.93, PLATE_CAM)
    assert (rec.overview_camera, rec.crop_path, rec.overview_crop_path) == (
        OVERVIEW_CAM, "crops/p1.jpg", "crops/o1.jpg",
    )  # fmt: skip
    assert rec.event_ids == (p.event_id, v.event_id)
    assert m.get("r1") == rec and len(m) == 1


def test_decide_repeats_until_a_decision_is_stored() -> None:
    m = merger()
    first = m.add(plate(100.0))
    again = m.add(vehicle(100.2))
    assert first is not None and again is not None
    assert first.decide and again.decide  # no decision stored yet: still to decide
    assert m.update(again.record.with_(decision="deny", matched="AB12CDE", decided_at=101.0))
    later = m.add(plate(100.0, conf=0.99))
    assert later is not None and not later.decide
    assert later.record.decision == "deny" and later.record.plate_confidence == 0.99


def test_update_of_closed_record_is_refused() -> None:
    m = merger()
    r = m.add(plate(100.0))
    assert r is not None
    assert m.expire(200.0) == [r.record]
    assert not m.update(r.record.with_(decision="allow"))
    assert m.get(r.record.record_id) is None


def test_gate_without_overview_camera() -> None:
    m = merger(overview=None)
    assert run(m, [plate(100.0), vehicle(100.2), vehicle(100.2, "p1", camera=PLATE_CAM)]) == (
        "C! - U"
    )
    (rec,) = m.open_records()
    assert rec.overview_camera is None and rec.plate == "AB12CDE"
    assert (rec.color, rec.direction, rec.dwell_s) == ("red", Direction.ENTRY, 4.0)


@pytest.mark.parametrize(
    ("stream", "now", "expired"),
    [
        pytest.param([plate(100.0, reported=100.5)], 110.4, 0, id="within-2x-window-kept"),
        pytest.param([plate(100.0, reported=100.5)], 110.6, 1, id="after-2x-window-expired"),
        pytest.param(
            [plate(100.0, reported=100.5), vehicle(100.0, "p1", camera=PLATE_CAM, reported=108.0)],
            117.9, 0, id="later-sighting-extends",
        ),
        pytest.param(
            [plate(100.0, reported=100.5), vehicle(100.0, "p1", camera=PLATE_CAM, reported=108.0)],
            118.1, 1, id="later-sighting-then-expired",
        ),
        pytest.param(
            [plate(100.0, "p1"), plate(120.0, "p2")], 125.0, 1, id="only-the-stale-one",
        ),
    ],
)  # fmt: skip
def test_expire_timing(stream: list[Observation], now: float, expired: int) -> None:
    m = merger()
    run(m, stream)
    before = len(m)
    out = m.expire(now)
    assert len(out) == expired and len(m) == before - expired
    assert m.expire(now) == []  # handed back once


def test_expired_track_starts_a_new_record() -> None:
    m = merger()
    run(m, [plate(100.0, eid="a")])
    (old,) = m.expire(200.0)
    r = m.add(plate(100.0, eid="b"))  # same plate-camera track, after its record closed
    assert r is not None and r.created and r.record.record_id != old.record_id
    # A late vehicle event for the track completes its newest (closed) record.
    m.expire(300.0)
    late = m.add(vehicle(100.0, "p1", camera=PLATE_CAM))
    assert late is not None and late.record.record_id == r.record.record_id
    assert not late.created and not late.decide


def test_open_record_cap_evicts_least_recently_updated() -> None:
    m = merger(max_open=3)
    for i in range(5):  # 20 s apart: every plate opens its own record
        m.add(plate(100.0 + 20 * i, f"p{i}", f"PLATE{i}"))
    assert len(m) == 3
    assert sorted(r.plate for r in m.open_records()) == ["PLATE2", "PLATE3", "PLATE4"]
    evicted = m.expire(0.0)  # nothing is stale at t=0; only the evicted come back
    assert [r.plate for r in evicted] == ["PLATE0", "PLATE1"]
    assert m.expire(0.0) == []
    # The evicted record still takes its track's late end event (no new record).
    late = m.add(vehicle(100.0, "p0", camera=PLATE_CAM))
    assert late is not None and late.record.plate == "PLATE0" and not late.created
    assert len(m) == 3


def test_seen_event_ids_are_bounded() -> None:
    m = merger(max_seen=2)
    assert outcome(m.add(plate(100.0, "p1", eid="a"))) == "C!"
    m.add(plate(100.0, "p1", eid="b"))
    m.add(plate(100.0, "p1", eid="c"))
    assert m.add(plate(100.0, "p1", eid="c")) is None  # still remembered
    assert m.add(plate(100.0, "p1", eid="a")) is not None  # forgotten: oldest of three


@pytest.mark.parametrize(
    "kw",
    [{"window_s": 0.0}, {"max_open": 0}, {"max_seen": 0}],
    ids=["zero-window", "zero-open", "zero-seen"],
)
def test_rejects_bad_bounds(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"window_s": WINDOW, **kw}
    with pytest.raises(ValueError, match="positive"):
        GateMerger("gate1", PLATE_CAM, OVERVIEW_CAM, **args)


def test_track_end_after_expiry_still_completes_the_record() -> None:
    """A car waits at the barrier (or the client is slow): its plate camera's track-end
    event comes long after the record stopped merging, and still sets direction/dwell."""
    m = merger(overview=None)
    first = m.add(plate(100.0, track="t1", eid="p"))
    assert first is not None and first.decide
    (closed,) = m.expire(200.0)
    assert closed.direction is None
    late = m.add(vehicle(100.0, track="t1", colour=None, cls="", direction=Direction.EXIT,
                         dwell=150.0, eid="v", camera=PLATE_CAM, reported=260.0))  # fmt: skip
    assert late is not None and not late.decide and not late.created
    assert (late.record.record_id, late.record.plate) == (closed.record_id, "AB12CDE")
    assert (late.record.direction, late.record.dwell_s) == (Direction.EXIT, 150.0)
    assert late.record.event_ids == ("p", "v")
    again = vehicle(100.0, track="t1", eid="v2", camera=PLATE_CAM, reported=270.0)
    assert m.add(again) is None  # completed once


def test_plate_observation_carries_direction_and_dwell() -> None:
    m = merger(overview=None)
    r = m.add(plate(100.0, direction=Direction.ENTRY, dwell_s=1.5))
    assert r is not None and (r.record.direction, r.record.dwell_s) == (Direction.ENTRY, 1.5)
