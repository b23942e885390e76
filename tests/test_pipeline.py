"""CameraPipeline over fakes: a list of frames, scripted detections, the real ByteTracker,
scripted reader answers (failures and a full queue included), a track cache that is up or
down, in-memory sinks and a fake clock. Each row runs the whole loop in milliseconds: no
server, no thread, no wall-clock sleep."""

from __future__ import annotations

import queue
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_client.config import Camera, EdgeConfig, Zone, parse_config
from edge_client.contracts import Box, Detections, Frame, PlateResult, Read, TrackStatus
from edge_client.detect import PLATE_CLASS
from edge_client.events import PlateEvent, VehicleEvent
from edge_client.metrics import Metrics
from edge_client.pipeline import (
    MODES,
    CameraPipeline,
    LoopCache,
    PipelineStats,
    PlateMode,
    Stages,
    VehicleMode,
    mode_for,
)
from edge_client.plates.formats import load_formats, select
from edge_client.reader import ReadJob, ReadOutcome
from edge_client.source import END, SourceStats, VideoSourceFactory
from edge_client.state.resume import Reported
from edge_client.tracking import ByteTracker
from edge_client.zones.tracker import ZoneGeometry

W, H, FPS = 640, 480, 25.0
CAM = "cam"
FORMATS = select(load_formats(), ["eu"])


# --- fakes ----------------------------------------------------------------------------
class FakeClock:
    """Wall and monotonic time that move only when told (``sleep`` or ``advance``)."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_700_000_000.0, 100.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, dt: float) -> None:
        self.advance(dt)

    def advance(self, dt: float) -> None:
        self.wall += dt
        self.mono += dt


@dataclass(frozen=True)
class Car:
    """A box over ``n`` frames from ``first``: moves ``dy`` px and grows ``grow`` px a frame."""

    first: int
    n: int
    x: float = 200.0
    y: float = 120.0
    dy: float = 6.0
    grow: float = 3.0
    h: float = 60.0

    def box(self, frame: int) -> Box | None:
        k = frame - self.first
        if not 0 <= k < self.n:
            return None
        h = self.h + self.grow * k
        y1 = self.y + self.dy * k
        return (self.x, y1, self.x + 2 * h, y1 + h)


class FakeSource:
    """A file (or live) source: every frame, then END, straight into the loop's queue."""

    def __init__(
        self, n: int, live: bool = False, resumable: bool = True, read_scale: int = 0,
        corrupt: frozenset[int] = frozenset(),
    ) -> None:  # fmt: skip
        self.n, self.live, self.resumable = n, live, resumable
        self.read_scale, self.corrupt = read_scale, corrupt  # two streams; bad frames
        self.stats = SourceStats()
        self.start_frame: int | None = None
        self.out: queue.Queue[Frame | None] | None = None
        self.stopped = False

    def __call__(self, camera: str, out: queue.Queue[Frame | None], start_frame: int) -> FakeSource:
        self.out, self.start_frame = out, start_frame
        return self

    def start(self) -> FakeSource:
        assert self.out is not None and self.start_frame is not None
        for i in range(self.start_frame, self.n):
            image = np.full((H, W, 3), 90, np.uint8)
            image[..., 2] = i  # the frame number, for the fake detector (crops keep it)
            main = None
            if self.read_scale:  # the main stream: the same instant at a higher resolution
                k = self.read_scale
                main = np.ascontiguousarray(image.repeat(k, axis=0).repeat(k, axis=1))
            self.out.put_nowait(
                Frame(CAM, i, i / FPS, image, corrupt=i in self.corrupt, read_image=main)
            )
        self.out.put_nowait(END)
        return self

    def stop(self) -> None:
        self.stopped = True


class LiveQueue(queue.Queue[Frame | None]):
    """The loop's frame queue for a live camera: frames arrive in real time, 40 ms apart,
    whether the loop detects them or not."""

    def __init__(self, clock: FakeClock, maxsize: int) -> None:
        super().__init__(maxsize)
        self.clock = clock

    def get(self, block: bool = True, timeout: float | None = None) -> Frame | None:
        self.clock.advance(1 / FPS)
        return super().get(block, timeout)


class FakeDetector:
    """Detections per frame from the cars; ``fail`` frames raise on their first call. Each
    call takes 40 ms of fake time (so read retry pauses pass as frames go by)."""

    def __init__(
        self, cars: Sequence[Car], clock: FakeClock, class_id: int, *,
        fail: frozenset[int] = frozenset(), offset: tuple[int, int] = (0, 0),
    ) -> None:  # fmt: skip
        self.cars, self.clock, self.class_id = cars, clock, class_id
        self.fail, self.offset = set(fail), offset
        self.calls = 0

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        self.calls += 1
        self.clock.advance(0.04)
        image = frames[0]
        i = int(image[0, 0, 2])
        if i in self.fail:
            self.fail.discard(i)
            raise ConnectionError("detector unreachable")
        ox, oy = self.offset if image.shape[:2] != (H, W) else (0, 0)
        boxes = [b for c in self.cars if (b := c.box(i)) is not None]
        if not boxes:
            return [Detections.empty()]
        arr = np.array([[x1 - ox, y1 - oy, x2 - ox, y2 - oy] for x1, y1, x2, y2 in boxes])
        n = len(boxes)
        return [
            Detections(
                arr.astype(np.float32), np.full((n,), 0.9, np.float32),
                np.full((n,), self.class_id, np.int32),
            )
        ]  # fmt: skip


FULL = "FULL"  # a reader answer: the read queue refuses the job
Answer = str | tuple[str, float] | None  # text (0.95), (text, confidence), None = failure


class FakeWorker:
    """Scripted reader answers per track id, answered at once on ``outcomes``; a track
    whose answers ran out reads nothing."""

    def __init__(self, answers: dict[int, list[Answer]]) -> None:
        self.answers = {tid: list(a) for tid, a in answers.items()}
        self.outcomes: queue.Queue[ReadOutcome] = queue.Queue()
        self.jobs: list[ReadJob] = []

    def submit(self, job: ReadJob) -> bool:
        script = self.answers.get(job.track_id, [])
        answer: Answer = script.pop(0) if script else ""
        if answer == FULL:
            return False
        self.jobs.append(job)
        if answer is None:
            self.outcomes.put(ReadOutcome(job, None, "reader unreachable"))
            return True
        text, conf = (answer, 0.95) if isinstance(answer, str) else answer
        self.outcomes.put(ReadOutcome(job, Read(text, conf, (), job.frame)))
        return True

    def pending(self) -> int:
        return 0


class FakeCache:
    """The track cache's loop-facing calls in memory; ``up=False``: every call raises."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.reported: dict[str, str] = {}  # track key -> event id
        self.claims: dict[str, str] = {}  # plate -> event id
        self.status: dict[str, str] = {}
        self.votes: dict[str, int] = {}
        self.heartbeats: list[dict[str, Any]] = []

    def _check(self) -> None:
        if not self.up:
            raise ConnectionError("redis down")

    def upsert_seen(
        self, camera: str, track_key: str, first_seen: float, last_seen: float,
        box: Sequence[float] | None = None, vehicle_class: str | None = None,
    ) -> None:  # fmt: skip
        self._check()
        self.status.setdefault(track_key, TrackStatus.PENDING.value)

    def add_vote(self, camera: str, track_key: str, read: Read) -> int:
        self._check()
        self.votes[track_key] = self.votes.get(track_key, 0) + 1
        return self.votes[track_key]

    def set_status(self, camera: str, track_key: str, status: TrackStatus | str) -> bool:
        self._check()
        self.status[track_key] = TrackStatus(status).value
        return True

    def mark_reported(
        self, camera: str, track_key: str, result: PlateResult, event_id: str, *,
        first_seen: float | None = None, last_seen: float | None = None,
        box: Sequence[float] | None = None, vehicle_class: str | None = None,
    ) -> bool:  # fmt: skip
        self._check()
        if self.reported.setdefault(track_key, event_id) != event_id:
            return False
        self.status[track_key] = TrackStatus.READ.value
        return True

    def claim_report(self, camera: str, plate: str, event_id: str, window_s: float) -> bool:
        self._check()
        return window_s <= 0 or self.claims.setdefault(plate, event_id) == event_id

    def heartbeat(self, camera: str, fields: dict[str, str | int | float], ttl_s: int) -> bool:
        self._check()
        self.heartbeats.append(fields)
        return True


class ListSink:
    def __init__(self) -> None:
        self.events: list[PlateEvent | VehicleEvent] = []

    def emit(self, event: PlateEvent | VehicleEvent) -> None:
        self.events.append(event)


class FakeResume:
    """Restart state in memory: a saved cursor and vehicles reported before a restart."""

    def __init__(self, reported: Sequence[Reported] = (), cursor: int = 0) -> None:
        self.known, self.cursor = list(reported), cursor  # reported before this run
        self.added: list[Reported] = []  # reported by this run: for the next, never matched
        self.saved: list[int] = []

    def load_cursor(self) -> int:
        return self.cursor

    def save_cursor(self, frame: int) -> None:
        self.saved.append(frame)

    def load_reported(self) -> list[Reported]:
        return list(self.known)

    def add_reported(self, rep: Reported) -> None:
        self.added.append(rep)

    def match(self, t: float, box: Box) -> Reported | None:
        for rep in reversed(self.known):
            if rep.matches(t, box, slack_s=2.0, min_iou=0.3):
                return rep
        return None


# --- one run ---------------------------------------------------------------------------
@dataclass
class Run:
    pipeline: CameraPipeline
    stats: PipelineStats
    sink: ListSink
    worker: FakeWorker
    cache: FakeCache
    detector: FakeDetector
    source: FakeSource
    resume: FakeResume
    metrics: Metrics

    def drops(self, reason: str) -> int:
        labels = {"camera": CAM, "reason": reason}
        return int(self.metrics.registry.get_sample_value("alpr_frames_dropped_total", labels) or 0)

    def errors(self, model: str) -> int:
        labels = {"camera": CAM, "model": model}
        return int(self.metrics.registry.get_sample_value("alpr_triton_errors_total", labels) or 0)


def config(tmp_path: Path, **camera: Any) -> EdgeConfig:
    cam = {"source": "video.mp4", "tracking": {"lost_frames": 2}, **camera}
    cam.setdefault("runtime", {}).setdefault("frame_queue", 1000)
    return parse_config({"output_dir": str(tmp_path), "cameras": {CAM: cam}})


def run(
    tmp_path: Path, cars: Sequence[Car], frames: int, answers: dict[int, list[Answer]], *,
    cache_up: bool = True, fail: frozenset[int] = frozenset(), live: bool = False,
    reported: Sequence[Reported] = (), cursor: int = 0, read_scale: int = 0,
    corrupt: frozenset[int] = frozenset(), **camera: Any,
) -> Run:  # fmt: skip
    cfg = config(tmp_path, **camera)
    cam = cfg.cameras[CAM]
    clock = FakeClock()
    offset = (0, 0)
    if cam.zone is not None and cam.zone.crop_detection:
        offset = ZoneGeometry(cam.zone, W, H).detect_rect()[:2]
    class_id = PLATE_CLASS if cam.mode == "plates" else 2
    detector = FakeDetector(cars, clock, class_id, fail=fail, offset=offset)
    worker, cache, sink = FakeWorker(answers), FakeCache(cache_up), ListSink()
    source = FakeSource(
        frames, live=live, resumable=not live, read_scale=read_scale, corrupt=corrupt
    )
    resume, metrics = FakeResume(reported, cursor), Metrics()
    ids = iter(f"{n:x}".ljust(32, "0") for n in range(1, 10_000))  # run id "10000000"
    stages = Stages(
        detector=detector, tracker=ByteTracker.from_config(cam.tracking, min_hits=3),
        worker=worker, cache=cache, sinks=sink, resume=resume, source=source,
        formats=FORMATS, metrics=metrics, labels={2: "car"}, clock=clock.time,
        monotonic=clock.monotonic, sleep=clock.sleep, new_id=lambda: next(ids),
    )  # fmt: skip
    pipeline = CameraPipeline(CAM, cam, cfg, stages)
    if live:
        pipeline.frames = LiveQueue(clock, cam.runtime.frame_queue)
    stats = pipeline.run()
    return Run(pipeline, stats, sink, worker, cache, detector, source, resume, metrics)


# --- the table ----------------------------------------------------------------------------
ZONE = {
    "polygon": [[0.05, 0.05], [0.95, 0.05], [0.95, 0.95], [0.05, 0.95]],
    "line": [[0.0, 0.5], [1.0, 0.5]],
    "entry": "down",
    "idle_every": 1,
    "crop_detection": False,
}
DOWN = Car(0, 30, y=60.0, dy=8.0, grow=1.0)  # crosses y = 240 px going down: an entry
UP = Car(0, 30, y=330.0, dy=-8.0, grow=1.0)  # crosses it going up: an exit
BEFORE = Reported(
    "AB123CD", 0.0, 0.5, (200.0, 120.0, 320.0, 180.0), (200.0, 150.0, 330.0, 215.0), "old"
)


@dataclass(frozen=True)
class Case:
    id: str
    cars: tuple[Car, ...]
    answers: dict[int, list[Answer]]
    events: list[tuple[str, str]]  # (kind, plate) in emission order
    stats: dict[str, int]
    frames: int = 20
    camera: dict[str, Any] = field(default_factory=dict)
    cache_up: bool = True
    fail: frozenset[int] = frozenset()
    live: bool = False
    reported: tuple[Reported, ...] = ()
    drops: dict[str, int] = field(default_factory=dict)
    directions: list[str | None] | None = None  # per event, when the case checks them


PLATES = {"mode": "plates"}
VEHICLES = {"mode": "vehicles"}
OVERVIEW = {"mode": "vehicles", "read_plates": False}
CASES = [
    Case("plates: a car read once", (Car(0, 12),), {1: ["AB123CD"]},
         [("plate", "AB123CD")], {"tracks": 1, "reads": 1, "events": 1}, camera=PLATES),
    Case("plates: two cars, two plates", (Car(0, 12), Car(2, 12, x=420.0)),
         {1: ["AB123CD"], 2: ["B123XYZ"]}, [("plate", "AB123CD"), ("plate", "B123XYZ")],
         {"tracks": 2, "reads": 2, "events": 2, "duplicates": 0}, camera=PLATES),
    Case("plates: same plate twice in the window is a duplicate",
         (Car(0, 12), Car(2, 12, x=420.0)), {1: ["AB123CD"], 2: ["AB123CD"]},
         [("plate", "AB123CD")], {"events": 1, "duplicates": 1}, camera=PLATES),
    Case("plates: a plate never plausible is no_plate", (Car(0, 12),), {1: ["XX", "XX", "XX"]},
         [], {"events": 0, "no_plate": 1}, camera=PLATES),
    Case("plates: unsure read, retried on a better frame", (Car(0, 16, grow=6.0),),
         {1: [("AB123CD", 0.5), ("AB123CD", 0.95)]}, [("plate", "AB123CD")],
         {"reads": 2, "events": 1, "read_failures": 0}, camera=PLATES),
    Case("plates: reader fails, retried after the pause", (Car(0, 60, dy=1.0, grow=0.5),),
         {1: [None, "AB123CD"]}, [("plate", "AB123CD")],
         {"reads": 2, "events": 1, "read_failures": 0}, frames=60, camera=PLATES),
    Case("plates: reader keeps failing, the last read wins at the end", (Car(0, 12),),
         {1: [None, None, "AB123CD"]}, [("plate", "AB123CD")],
         {"reads": 3, "events": 1}, camera=PLATES),
    Case("plates: read queue full, offered again", (Car(0, 12),), {1: [FULL, "AB123CD"]},
         [("plate", "AB123CD")], {"reads": 1, "events": 1}, camera=PLATES,
         drops={"read_queue_full": 1}),
    Case("plates: cache down, events still emitted", (Car(0, 12), Car(2, 12, x=420.0)),
         {1: ["AB123CD"], 2: ["B123XYZ"]}, [("plate", "AB123CD"), ("plate", "B123XYZ")],
         {"events": 2, "duplicates": 0}, camera=PLATES, cache_up=False),
    Case("plates: cache down, no claim to dedup on (at least once)",
         (Car(0, 12), Car(2, 12, x=420.0)), {1: ["AB123CD"], 2: ["AB123CD"]},
         [("plate", "AB123CD"), ("plate", "AB123CD")], {"events": 2, "duplicates": 0},
         camera=PLATES, cache_up=False),
    Case("plates: reported before a restart is not reported again", (Car(0, 12),),
         {1: ["AB123CD"]}, [], {"adopted": 1, "reads": 0, "events": 0}, camera=PLATES,
         reported=(BEFORE,)),
    Case("plates: nothing read on a standing car's crop, the next frame's is read",
         (Car(0, 16, dy=0.0, grow=0.0),), {1: ["", "AB123CD"]}, [("plate", "AB123CD")],
         {"reads": 2, "events": 1, "no_plate": 0}, camera=PLATES),
    Case("plates: the next car stopping where the last one stood is read (not adopted)",
         (Car(0, 12), Car(15, 12)), {1: ["AB123CD"], 2: ["XY98ZZT"]},
         [("plate", "AB123CD"), ("plate", "XY98ZZT")], {"adopted": 0, "events": 2},
         frames=30, camera={**PLATES, "tracking": {"lost_frames": 2}}),
    Case("plates: a plate cut by the frame edge is never read", (Car(0, 12, x=0.0),),
         {1: ["AB123CD"]}, [], {"tracks": 1, "reads": 0, "events": 0}, camera=PLATES),
    Case("plates: detector down on a file holds the frame", (Car(0, 12),), {1: ["AB123CD"]},
         [("plate", "AB123CD")], {"frames": 20, "detect_failures": 1, "events": 1},
         camera=PLATES, fail=frozenset({4})),
    Case("plates: detector down on a live camera drops frames for the backoff",
         (Car(0, 30, dy=2.0, grow=1.0),), {1: ["AB123CD"]}, [("plate", "AB123CD")],
         {"frames": 17, "detect_failures": 1, "events": 1}, frames=30, camera=PLATES,
         fail=frozenset({4}), live=True, drops={"detector_down": 13}),  # 0.5 s = 12 frames
    Case("vehicles: plate read, no vehicle event without a zone", (Car(0, 12),),
         {1: ["AB123CD"]}, [("plate", "AB123CD")], {"events": 1, "vehicle_events": 0},
         camera=VEHICLES),
    Case("vehicles: a vehicle cut by the edge is still read", (Car(0, 12, x=0.0),),
         {1: ["AB123CD"]}, [("plate", "AB123CD")], {"events": 1}, camera=VEHICLES),
    Case("vehicles: overview camera, no OCR, one vehicle event per track",
         (Car(0, 12), Car(2, 12, x=420.0)), {}, [("vehicle", ""), ("vehicle", "")],
         {"reads": 0, "events": 0, "vehicle_events": 2}, camera=OVERVIEW),
    Case("vehicles: overview camera, a short track is no vehicle", (Car(0, 2),), {}, [],
         {"tracks": 0, "vehicle_events": 0}, camera=OVERVIEW),
    Case("zone: entry, plate then vehicle event", (DOWN,), {1: ["AB123CD"]},
         [("plate", "AB123CD"), ("vehicle", "AB123CD")], {"events": 1, "vehicle_events": 1},
         frames=40, camera={**VEHICLES, "zone": ZONE},
         directions=[None, "entry"]),  # the plate is read before the car reaches the line
    Case("zone: exit", (UP,), {1: ["AB123CD"]},
         [("plate", "AB123CD"), ("vehicle", "AB123CD")], {"events": 1, "vehicle_events": 1},
         frames=40, camera={**VEHICLES, "zone": ZONE}, directions=[None, "exit"]),
    Case("zone: overview camera, direction only", (DOWN,), {}, [("vehicle", "")],
         {"reads": 0, "vehicle_events": 1}, frames=40,
         camera={**OVERVIEW, "zone": ZONE}, directions=["entry"]),
    Case("zone: empty frames detected one in three", (Car(20, 10),), {1: ["AB123CD"]},
         [("plate", "AB123CD"), ("vehicle", "AB123CD")],
         {"idle_skipped": 13, "frames": 17, "events": 1}, frames=30,
         camera={**VEHICLES, "zone": {**ZONE, "idle_every": 3}}, drops={"zone_idle": 13}),
    Case("zone: detector input cropped to the zone", (DOWN,), {1: ["AB123CD"]},
         [("plate", "AB123CD"), ("vehicle", "AB123CD")], {"events": 1}, frames=40,
         camera={**VEHICLES, "zone": {**ZONE, "polygon": [[0.2, 0.05], [0.8, 0.05],
                 [0.8, 0.95], [0.2, 0.95]], "crop_detection": True}},
         directions=[None, "entry"]),
    Case("zone: a car outside the zone is ignored", (Car(0, 12, x=10.0),), {1: ["AB123CD"]},
         [], {"tracks": 0, "events": 0}, camera={**VEHICLES, "zone": {**ZONE, "polygon": [
             [0.5, 0.05], [0.95, 0.05], [0.95, 0.95], [0.5, 0.95]]}}),
]  # fmt: skip


@pytest.mark.parametrize("ahead", [1, 2, 4], ids=lambda d: f"ahead{d}")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pipeline(tmp_path: Path, case: Case, ahead: int) -> None:
    """Every case gives the same events and counts whether frames are detected one at a
    time or up to ``ahead`` of tracking (``runtime.detect_ahead``)."""
    runtime = {**case.camera.get("runtime", {}), "detect_ahead": ahead}
    r = run(
        tmp_path, case.cars, case.frames, case.answers, cache_up=case.cache_up,
        fail=case.fail, live=case.live, reported=case.reported,
        **{**case.camera, "runtime": runtime},
    )  # fmt: skip
    assert [(e.kind.value, e.plate) for e in r.sink.events] == case.events
    got = {k: getattr(r.stats, k) for k in case.stats}
    drops = {k: r.drops(k) for k in case.drops}
    if case.live and case.fail and ahead > 1:
        # frames already in flight when a detection fails are tracked, not dropped: how
        # many depends on thread timing, so the split moves; none is lost or counted twice
        assert r.stats.frames + drops["detector_down"] == case.frames
        assert r.stats.detect_failures == case.stats["detect_failures"]
        assert drops["detector_down"] >= 1
    else:
        assert got == case.stats
        assert drops == case.drops
    if case.directions is not None:
        assert [e.direction and e.direction.value for e in r.sink.events] == case.directions
    for e in r.sink.events:
        assert e.camera == CAM and e.track_id.startswith("10000000")  # the injected id source
        assert 0 <= e.box[0] < e.box[2] <= W and 0 <= e.box[1] < e.box[3] <= H
    assert r.source.stopped
    if not case.cache_up:
        assert r.pipeline.cache.failures > 0
    else:  # every plate event was marked and claimed in the cache
        plates = [e for e in r.sink.events if e.kind.value == "plate"]
        assert {e.event_id for e in plates} <= set(r.cache.reported.values())
        assert {e.event_id for e in plates} == set(r.cache.claims.values())


def test_plate_event_fields(tmp_path: Path) -> None:
    """One plate event, field by field: the voted result, the best frame, the fake clock."""
    r = run(tmp_path, [Car(0, 12)], 20, {1: ["AB123CD"]}, mode="plates")
    (e,) = r.sink.events
    assert isinstance(e, PlateEvent)
    assert (e.plate, e.raw_text, e.region, e.format, e.votes) == (
        "AB123CD",
        "AB123CD",
        "eu",
        "fr_it_sk",
        1,
    )
    assert e.vehicle_class == "plate" and e.event_id.startswith(f"{CAM}-{e.track_id}-")
    assert e.first_seen == pytest.approx(2 / FPS)  # confirmed on its third frame
    assert e.last_seen >= e.first_seen  # decided on its first read, one frame later
    assert e.crop_path is not None and Path(e.crop_path).is_file()
    assert e.reported_at == pytest.approx(1_700_000_000.0 + 3 * 0.04)  # three detector calls
    assert e.latency_ms == 0.0  # read and decided between two detector calls (fake clock)
    assert r.worker.jobs[0].frame == e.frame
    assert r.resume.added[-1].event_id == e.event_id  # remembered for a restart


def test_overview_vehicle_event_has_crop_and_colour(tmp_path: Path) -> None:
    r = run(tmp_path, [Car(0, 12)], 20, {}, mode="vehicles", read_plates=False)
    (e,) = r.sink.events
    assert isinstance(e, VehicleEvent) and e.vehicle_class == "car"
    assert e.crop_path is not None and e.color is not None
    assert "-v" in e.event_id and r.worker.jobs == []


@pytest.mark.parametrize(
    ("live", "cursor", "start"),
    [(False, 0, 0), (False, 7, 7), (True, 7, 0)],
    ids=["file from the start", "file resumes at the cursor", "live never resumes"],
)
def test_resume_at_frame(tmp_path: Path, live: bool, cursor: int, start: int) -> None:
    r = run(tmp_path, [Car(0, 20)], 20, {1: ["AB123CD"]}, mode="plates", live=live,
            cursor=cursor)  # fmt: skip
    assert r.source.start_frame == start
    assert r.stats.frames == 20 - start
    assert r.resume.saved and r.resume.saved[-1] == 19  # nothing pending at the end


def test_heartbeat_and_cursor_on_the_injected_clock(tmp_path: Path) -> None:
    # one frame at a time: with detection ahead the fake clock is advanced from the workers
    # too, so when each heartbeat falls depends on thread timing
    r = run(
        tmp_path, [Car(0, 80, dy=1.0, grow=0.0)], 100, {1: ["AB123CD"]}, mode="plates",
        runtime={"detect_ahead": 1},
    )  # fmt: skip
    # 100 detector calls of 40 ms each: 4 s, one heartbeat every 2 s
    assert len(r.cache.heartbeats) == 2
    hb = r.cache.heartbeats[-1]
    assert hb["mode"] == "plates" and hb["read_plates"] == 1 and hb["events"] == 1
    assert hb["updated_at"] == pytest.approx(1_700_000_000.0 + 4.0, abs=0.1)
    assert r.pipeline.fps() == pytest.approx(100 / 4.0, rel=0.05)


# --- the parts ----------------------------------------------------------------------------
def test_modes_registry_covers_the_config_literal() -> None:
    literal = Camera.model_fields["mode"].annotation
    assert set(MODES) == set(literal.__args__)  # type: ignore[union-attr]
    assert isinstance(mode_for(Camera(source="a.mp4", mode="plates")), PlateMode)
    assert isinstance(mode_for(Camera(source="a.mp4", mode="vehicles")), VehicleMode)


@pytest.mark.parametrize(
    ("mode", "read_plates", "zone", "reads", "vehicle_events"),
    [
        ("plates", True, False, True, False),
        ("plates", False, False, False, True),
        ("vehicles", True, False, True, False),
        ("vehicles", True, True, True, True),
        ("vehicles", False, False, False, True),
    ],
)
def test_what_read_plates_means(
    mode: str, read_plates: bool, zone: bool, reads: bool, vehicle_events: bool
) -> None:
    z = Zone(polygon=[(0, 0), (1, 0), (1, 1)]) if zone else None
    m = mode_for(Camera(source="a.mp4", mode=mode, read_plates=read_plates, zone=z))  # type: ignore[arg-type]
    from edge_client.trackbook import TrackRecord

    rec = TrackRecord(1, "k", "car", 0.0, 0, (0, 0, 10, 10), 0.0, age=5)
    assert m.awaits_read(rec) is reads
    assert m.ends_with_vehicle_event(rec) is vehicle_events
    assert (m.vehicle_event_crop(rec) is None) or not reads


class Down:
    def __getattr__(self, name: str) -> Any:
        def fail(*a: object, **k: object) -> Any:
            raise ConnectionError(f"{name}: redis down")

        return fail


def test_loop_cache_never_raises() -> None:
    c = LoopCache(Down(), CAM)
    result = PlateResult("AB123CD", "AB123CD", 0.9, "eu", None, 1)
    c.seen("k", 0.0, 1.0, (0, 0, 1, 1), "car")
    c.vote("k", Read("AB123CD", 0.9))
    c.no_plate("k")
    assert c.report("k", result, "e1", first_seen=0.0, last_seen=1.0, box=(0, 0, 1, 1),
                    vehicle_class="car") is True  # fmt: skip
    assert c.claim("AB123CD", "e1", 60.0) is True
    assert c.heartbeat({"fps": 1.0}, 15) is False
    assert c.failures == 6


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("crops.vehicle_margin", 0.04), ("crops.plate_margin", 0.12), ("crops.edge_px", 2),
        ("crops.cut_weight", 0.3), ("crops.read_long_side", 640), ("crops.jpeg_quality", 85),
        ("runtime.frame_queue", 8), ("runtime.poll_s", 0.05), ("runtime.flush_timeout_s", 30.0),
        ("runtime.flush_poll_s", 0.02), ("runtime.cursor_every_s", 1.0),
        ("runtime.heartbeat_every_s", 2.0), ("runtime.heartbeat_ttl_s", 15),
        ("thresholds.retry_quality_gain", 1.15),
    ],
)  # fmt: skip
def test_defaults_are_the_former_constants(path: str, value: float) -> None:
    obj: Any = Camera(source="a.mp4")
    for part in path.split("."):
        obj = getattr(obj, part)
    assert obj == value


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        ("detect_backoff", [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]),  # was min(5, 0.25 * 2 ** n)
        ("read_backoff", [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]),  # was min(10, 0.5 * 2 ** n)
    ],
)
def test_backoffs_are_the_former_formulas(policy: str, delays: list[float]) -> None:
    retry = getattr(Camera(source="a.mp4").runtime, policy).retry()
    assert [retry.fail() for _ in delays] == delays
    retry.reset()  # after a success
    assert retry.fail() == delays[0]


@pytest.mark.parametrize(
    ("url", "live", "resumable"),
    [("a.mp4", False, True), ("rtsp://cam/1", True, False), ("/dev/video0", True, False),
     ("0", True, False), ("https://cam/mjpg", True, False)],
)  # fmt: skip
def test_video_source_factory(url: str, live: bool, resumable: bool) -> None:
    factory = VideoSourceFactory(url)
    assert factory.resumable is resumable
    assert VideoSourceFactory(url, loop=True).resumable is False
    src = factory(CAM, queue.Queue(), 0)
    assert src.live is live and src.stats.dropped == 0


# --- ingest and tuning aids wired into the loop ----------------------------------------------
def job_crop(r: Run) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(r.worker.jobs[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_read_crop_comes_from_the_main_stream(tmp_path: Path) -> None:
    """With a matched main-stream frame the box is scaled and the crop cut from it."""
    one = run(tmp_path / "one", [Car(0, 12)], 20, {1: ["AB123CD"]}, mode="plates")
    two = run(tmp_path / "two", [Car(0, 12)], 20, {1: ["AB123CD"]}, mode="plates", read_scale=2)
    a, b = job_crop(one), job_crop(two)
    assert b.shape[0] == pytest.approx(2 * a.shape[0], abs=3)
    assert b.shape[1] == pytest.approx(2 * a.shape[1], abs=3)
    (e1,), (e2,) = one.sink.events, two.sink.events
    assert e1.plate == e2.plate and e2.box == e1.box  # events stay in detect-stream pixels


def test_corrupt_frames_are_tracked_not_read(tmp_path: Path) -> None:
    r = run(tmp_path, [Car(0, 12)], 20, {1: ["AB123CD"]}, mode="plates",
            corrupt=frozenset(range(20)))  # fmt: skip
    assert r.stats.tracks == 1 and r.stats.reads == 0 and r.sink.events == []


def test_events_carry_their_images_by_kind(tmp_path: Path) -> None:
    r = run(tmp_path, [Car(0, 12)], 20, {1: ["AB123CD"]}, mode="plates",
            crops={"save_frame": True})  # fmt: skip
    (e,) = r.sink.events
    assert set(e.images) == {"plate", "frame"} and e.images["plate"] == e.crop_path
    import cv2

    frame = cv2.imread(e.images["frame"])
    assert frame is not None and frame.shape[:2] == (H, W)
    plain = run(tmp_path / "plain", [Car(0, 12)], 20, {1: ["AB123CD"]}, mode="vehicles")
    assert set(plain.sink.events[0].images) == {"vehicle"}


def test_unread_tracks_keep_their_best_crop(tmp_path: Path) -> None:
    r = run(tmp_path, [Car(0, 12)], 20, {1: ["XX", "XX", "XX"]}, mode="plates",
            unread_crops={"enabled": True})  # fmt: skip
    assert r.stats.no_plate == 1 and r.stats.unread_saved == 1
    (jpg,) = (tmp_path / "unread" / CAM).rglob("*_no_plate.jpg")
    assert jpg.with_suffix(".json").is_file()
    off = run(tmp_path / "off", [Car(0, 12)], 20, {1: ["XX", "XX", "XX"]}, mode="plates")
    assert off.stats.unread_saved == 0 and not (tmp_path / "off" / "unread").exists()


def test_enhancement_applies_to_dark_crops_only(tmp_path: Path) -> None:
    dark = {"enhance": {"enabled": True, "only_below_brightness": 200}}
    bright = {"enhance": {"enabled": True, "only_below_brightness": 10}}
    r = run(tmp_path, [Car(0, 12)], 20, {1: ["AB123CD"]}, mode="plates", crops=dark)
    assert r.stats.enhanced == r.stats.reads == 1
    r = run(tmp_path / "b", [Car(0, 12)], 20, {1: ["AB123CD"]}, mode="plates", crops=bright)
    assert r.stats.enhanced == 0 and r.stats.reads == 1
