"""One camera's pipeline: frames -> detect (Triton) -> track -> read once -> vote -> report.

The main loop owns all track state. Decoding runs in its own thread behind a bounded
queue; reading runs in a worker thread behind another; sinks buffer on their own. The
loop never waits on the network for more than one detection call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from alpr_common.sinks import SinkSet
from ensemble.image_io import encode_jpeg

from .config import Camera, EdgeConfig
from .contracts import (
    Detections,
    Frame,
    PlateResult,
    Read,
    TrackedBox,
    Tracker,
    TrackStatus,
)
from .crops import save_crop
from .detect import FrameDetector
from .events import camera_event
from .metrics import Metrics
from .plates.formats import PlateFormat
from .plates.voting import is_plausible, vote
from .reader import ReadJob, ReadOutcome, ReadWorker
from .source import END, VideoSource, is_live
from .state.cache import TrackCache
from .state.resume import Reported, ResumeState
from .trackbook import TrackRecord, crop_box, should_decide, should_read
from .zones.colour import dominant_colour
from .zones.tracker import ZoneGeometry, ZoneTracker

log = logging.getLogger("ovr_alpr.pipeline")


@dataclass
class PipelineStats:
    frames: int = 0
    detect_errors: int = 0  # consecutive (drives the backoff)
    detect_failures: int = 0  # total
    tracks: int = 0
    adopted: int = 0
    reads: int = 0
    events: int = 0
    no_plate: int = 0
    duplicates: int = 0
    read_failures: int = 0
    idle_skipped: int = 0  # frames not sent to the detector: zone empty (``zone.idle_every``)
    vehicle_events: int = 0
    started: float = field(default_factory=time.monotonic)

    def fps(self) -> float:
        return self.frames / max(1e-6, time.monotonic() - self.started)


def fit_long_side(image: np.ndarray, limit: int = 640) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    if max(h, w) <= limit:
        return image
    s = limit / max(h, w)
    return cv2.resize(
        image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )


class CameraPipeline:
    def __init__(
        self,
        camera_id: str,
        cam: Camera,
        cfg: EdgeConfig,
        *,
        detector: FrameDetector,
        tracker: Tracker,
        worker: ReadWorker,
        cache: TrackCache,
        sinks: SinkSet,
        formats: list[PlateFormat],
        resume: ResumeState,
        metrics: Metrics,
        labels: dict[int, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.id, self.cam, self.cfg = camera_id, cam, cfg
        self.detector, self.tracker, self.worker = detector, tracker, worker
        self.cache, self.sinks, self.formats = cache, sinks, formats
        self.resume, self.metrics, self.labels, self.clock = resume, metrics, labels, clock
        self.thr = cam.thresholds
        self.book: dict[int, TrackRecord] = {}
        self.stats = PipelineStats()
        self.run_id = uuid.uuid4().hex[:8]
        self.frames: queue.Queue[Frame | None] = queue.Queue(maxsize=8)
        self.margin = 0.04 if cam.mode == "vehicles" else 0.12
        self._detect_backoff = 0.0
        self._last_status = time.monotonic()
        self._last_cursor = 0.0
        self._last_frame = 0
        self._zones: ZoneTracker | None = None  # built on the first frame (needs its size)
        self._zone_busy = True  # a vehicle (even a tentative one) is in the zone
        self._seen_frames = 0
        self._hb = (time.monotonic(), 0)  # last heartbeat (time, frames) for a recent fps
        self.vehicle_events = (not cam.read_plates) or (
            cam.zone is not None and cam.zone.vehicle_events
        )

    # --- main loop ---------------------------------------------------------------
    def run(
        self, source_override: str | None = None, stop: threading.Event | None = None
    ) -> PipelineStats:
        stop = stop or threading.Event()
        source_str = source_override or self.cam.source
        self.resume.load_reported()
        resumable = not is_live(source_str) and not self.cam.loop
        start = self.resume.load_cursor() if resumable else 0
        if start:
            log.info("camera %s: resuming at frame %d", self.id, start)
        source = VideoSource(
            self.id, source_str, self.frames, process_every=self.cam.process_every,
            max_fps=self.cam.max_fps, start_frame=start, loop=self.cam.loop,
        ).start()  # fmt: skip
        held: Frame | None = None  # a file frame waiting for the detector to come back
        try:
            while not stop.is_set():
                self._apply_outcomes()
                self._retry_due()
                if held is not None:
                    frame: Frame | None = held
                    time.sleep(min(0.05, max(0.0, self._detect_backoff - time.monotonic())))
                else:
                    try:
                        frame = self.frames.get(timeout=0.05)
                    except queue.Empty:
                        continue
                if frame is END:
                    break
                assert frame is not None
                done = self._process(frame)
                # a live camera moves on (frames are dropped and counted); a file is not
                # real time, so its frame is held until the server answers: nothing lost
                held = frame if not done and not source.live else None
                if not done and source.live:
                    self.metrics.frames_dropped.labels(self.id, "detector_down").inc()
                self._periodic(source)
        finally:
            source.stop()
            self._flush(graceful=not stop.is_set())
            self._save_cursor()
        return self.stats

    def _periodic(self, source: VideoSource) -> None:
        now = time.monotonic()
        m, cam = self.metrics, self.id
        m.queue_depth.labels(cam, "frames").set(self.frames.qsize())
        m.queue_depth.labels(cam, "reads").set(self.worker.pending())
        if now - self._last_cursor > 1.0:
            self._save_cursor()
            self._last_cursor = now
        if now - self._hb[0] >= 2.0:
            self._heartbeat(now, source)
        if now - self._last_status >= self.cfg.status_interval_s:
            self._last_status = now
            s = self.stats
            m.fps.labels(cam).set(s.fps())
            log.info(
                "camera %s: %.1f fps | frames %d (dropped %d) | tracks %d | reads %d | events %d | "
                "duplicates %d | no plate %d | read queue %d",
                cam, s.fps(), s.frames, source.stats.dropped, s.tracks, s.reads, s.events,
                s.duplicates, s.no_plate, self.worker.pending(),
            )  # fmt: skip

    def _heartbeat(self, now: float, source: VideoSource) -> None:
        """Camera status for the gate dashboard: recent fps, counters, liveness."""
        t0, f0 = self._hb
        fps = (self.stats.frames + self.stats.idle_skipped - f0) / max(1e-6, now - t0)
        self._hb = (now, self.stats.frames + self.stats.idle_skipped)
        s = self.stats
        fields: dict[str, str | int | float] = {
            "fps": round(fps, 2), "frames": s.frames, "idle_skipped": s.idle_skipped,
            "dropped": source.stats.dropped, "tracks": s.tracks, "reads": s.reads,
            "events": s.events, "mode": self.cam.mode, "read_plates": int(self.cam.read_plates),
            "updated_at": round(time.time(), 3), "run_id": self.run_id,
        }  # fmt: skip
        self._cache("heartbeat", self.id, fields, 15)

    def _save_cursor(self) -> None:
        pending = [r.first_frame for r in self.book.values() if r.status is TrackStatus.PENDING]
        self.resume.save_cursor(min([*pending, self._last_frame]))

    # --- per frame ---------------------------------------------------------------
    def _detect(self, frame: Frame) -> Detections | None:
        if time.monotonic() < self._detect_backoff:
            return None
        t0 = time.monotonic()
        image, (ox, oy) = frame.image, (0, 0)
        if self._zones is not None and self.cam.zone is not None and self.cam.zone.crop_detection:
            x1, y1, x2, y2 = self._zones.geometry.detect_rect()
            image, (ox, oy) = np.ascontiguousarray(frame.image[y1:y2, x1:x2]), (x1, y1)
        try:
            dets = self.detector.detect([image])[0]
            if (ox or oy) and len(dets):
                offset = np.array([ox, oy, ox, oy], np.float32)
                dets = Detections(dets.boxes + offset, dets.scores, dets.classes, dets.labels)
        except Exception as exc:  # unreachable or failing server: keep decoding, back off
            self.stats.detect_errors += 1
            self.stats.detect_failures += 1
            self.metrics.triton_errors.labels(self.id, "detector").inc()
            wait = min(5.0, 0.25 * 2 ** min(5, self.stats.detect_errors))
            self._detect_backoff = time.monotonic() + wait
            log.warning("camera %s: detection failed (%s); retrying in %.1fs", self.id, exc, wait)
            return None
        self.stats.detect_errors = 0
        self.metrics.triton_calls.labels(self.id, "detector").inc()
        self.metrics.stage_seconds.labels(self.id, "detect").observe(time.monotonic() - t0)
        return self._in_roi(dets, (frame.image.shape[0], frame.image.shape[1]))

    def _in_roi(self, dets: Detections, hw: tuple[int, int]) -> Detections:
        """Only detections whose box centre is in the zone polygon (or the ``roi``)."""
        roi = self.cam.roi
        if len(dets) == 0:
            return dets
        if self._zones is not None:
            geo = self._zones.geometry
            keep = np.array([geo.contains(tuple(map(float, b))) for b in dets.boxes], bool)
        elif (roi.x1, roi.y1, roi.x2, roi.y2) == (0, 0, 1, 1):
            return dets
        else:
            h, w = hw
            cx = (dets.boxes[:, 0] + dets.boxes[:, 2]) / 2 / w
            cy = (dets.boxes[:, 1] + dets.boxes[:, 3]) / 2 / h
            keep = (cx >= roi.x1) & (cx <= roi.x2) & (cy >= roi.y1) & (cy <= roi.y2)
        labels = tuple(lbl for lbl, k in zip(dets.labels, keep, strict=False) if k)
        return Detections(dets.boxes[keep], dets.scores[keep], dets.classes[keep], labels)

    def _zone_idle(self, frame: Frame) -> bool:
        """With a zone and nothing in it, only one frame in ``idle_every`` is detected: an
        empty gate is cheap, and any vehicle in the zone (moving or waiting at the
        barrier) makes every frame count again. Detection, not motion, decides."""
        zone = self.cam.zone
        if zone is None:
            return False
        if self._zones is None:
            h, w = frame.image.shape[:2]
            self._zones = ZoneTracker(ZoneGeometry(zone, w, h), zone.entry)
        self._seen_frames += 1
        if self._zone_busy or zone.idle_every <= 1:
            return False
        return self._seen_frames % zone.idle_every != 0

    def _process(self, frame: Frame) -> bool:
        """Detect, track and schedule reads for one frame; False when detection failed."""
        if self._zone_idle(frame):
            self._last_frame = frame.index
            self.stats.idle_skipped += 1
            self.metrics.frames_dropped.labels(self.id, "zone_idle").inc()
            return True
        dets = self._detect(frame)
        if dets is None:
            return False
        self._last_frame = frame.index
        self.stats.frames += 1
        self.metrics.frames.labels(self.id).inc()
        t0 = time.monotonic()
        was_occupied = self._zones is not None and self._zones.occupied()
        tracked: list[TrackedBox] = self.tracker.update(dets)
        self.metrics.stage_seconds.labels(self.id, "track").observe(time.monotonic() - t0)
        for tb in tracked:
            rec = self.book.get(tb.track_id) or self._new_track(tb, frame)
            rec.observe(tb, frame.index, frame.timestamp)
            if self._zones is not None:
                self._zones.update(tb.track_id, tb.box, frame.timestamp)
            if not self.cam.read_plates:
                self._offer(rec, frame, tb)  # best frame for class/colour; no OCR
            elif rec.status is TrackStatus.PENDING:
                self._offer(rec, frame, tb)
                if should_read(rec, self.thr, self.clock()):
                    self._submit(rec)
        if self._zones is not None:
            self._zones.frame_done({tb.track_id for tb in tracked}, frame.timestamp)
            # busy while anything is in the zone, even a detection not yet a track; one
            # frame of grace after the last one (a missed detection is not an empty zone)
            self._zone_busy = len(dets) > 0 or was_occupied or self._zones.occupied()
        for tid in self.tracker.removed():
            gone = self.book.get(tid)
            if gone is not None:
                self._close(gone)
        return True

    def _offer(self, rec: TrackRecord, frame: Frame, tb: TrackedBox) -> None:
        """Keep the track's best crop. A box cut by the frame edge shows a partial plate
        (a receding car entering from the bottom): never read it in ``plates`` mode, and
        rank it low in ``vehicles`` mode."""
        h, w = frame.image.shape[:2]
        x1, y1, x2, y2 = tb.box
        cut = x1 <= 2 or y1 <= 2 or x2 >= w - 2 or y2 >= h - 2
        if cut and self.cam.mode == "plates":
            return
        rec.offer_crop(
            crop_box(frame.image, tb.box, self.margin), frame.index, tb.box, 0.3 if cut else 1.0
        )

    def _new_track(self, tb: TrackedBox, frame: Frame) -> TrackRecord:
        label = self.labels.get(
            tb.class_id, "plate" if self.cam.mode == "plates" else str(tb.class_id)
        )
        rec = TrackRecord(
            tb.track_id, f"{self.run_id}-{tb.track_id}", label, frame.timestamp, frame.index,
            tb.box, self.clock(),
        )  # fmt: skip
        self.book[tb.track_id] = rec
        self.stats.tracks += 1
        self.metrics.tracks.labels(self.id).inc()
        rep = self.resume.match(frame.timestamp, tb.box)
        if rep is not None:  # the same vehicle was reported before a restart
            rec.status, rec.adopted = TrackStatus.READ, True
            self.stats.adopted += 1
            self.metrics.cache_hits.labels(self.id).inc()
            log.info(
                "camera %s: track %d is %s, reported before restart",
                self.id,
                tb.track_id,
                rep.plate,
            )
        self._cache("upsert_seen", self.id, rec.key, rec.first_seen, rec.last_seen, tb.box, label)
        return rec

    def _submit(self, rec: TrackRecord) -> bool:
        assert rec.best_crop is not None
        jpeg = encode_jpeg(fit_long_side(rec.best_crop, 640), 85)
        job = ReadJob(self.id, rec.track_id, jpeg, rec.best_frame, self.clock())
        if not self.worker.submit(job):
            self.metrics.frames_dropped.labels(self.id, "read_queue_full").inc()
            return False
        rec.in_flight = True
        rec.attempts += 1
        rec.quality_at_last_read = rec.best_quality
        self.stats.reads += 1
        self.metrics.ocr_reads.labels(self.id).inc()
        self.metrics.ocr_per_track.labels(self.id).set(self.stats.reads / max(1, self.stats.tracks))
        return True

    # --- read results ------------------------------------------------------------
    def _apply_outcomes(self) -> None:
        while True:
            try:
                out: ReadOutcome = self.worker.outcomes.get_nowait()
            except queue.Empty:
                return
            rec = self.book.get(out.job.track_id)
            if rec is None:
                continue
            rec.in_flight = False
            self.metrics.stage_seconds.labels(self.id, "read").observe(out.latency_s)
            if out.read is None:
                rec.attempts -= 1  # a failed request is not a read; retry after a pause
                self.stats.read_failures += 1
                self.metrics.triton_errors.labels(self.id, "reader").inc()
                rec.retry_after = self.clock() + min(
                    10.0, 0.5 * 2 ** min(5, self.stats.read_failures)
                )
                log.warning(
                    "camera %s: read of track %d failed: %s", self.id, rec.track_id, out.error
                )
                continue
            self.stats.read_failures = 0
            self.metrics.triton_calls.labels(self.id, "reader").inc()
            rec.reads.append(out.read)
            self._cache("add_vote", self.id, rec.key, out.read)
            plausible = is_plausible(
                out.read.text,
                self.formats,
                self.thr.min_plate_len,
                char_confidences=out.read.char_confidences,
            )
            if rec.closing or should_decide(rec, self.thr, plausible):
                self._decide(rec)

    def _retry_due(self) -> None:
        """Tracks that left the view with a failed read: retry their best frame after the pause."""
        now = self.clock()
        for rec in list(self.book.values()):
            due = rec.closing and rec.status is TrackStatus.PENDING and not rec.in_flight
            if due and not rec.reads and rec.best_crop is not None and now >= rec.retry_after:
                self._submit(rec)

    # --- decisions -------------------------------------------------------------------
    def _close(self, rec: TrackRecord) -> None:
        """The tracker dropped the track: decide with what we have, or read it one last time."""
        if rec.status is not TrackStatus.PENDING or not self.cam.read_plates:
            self._retire(rec)
            return
        rec.closing = True
        if rec.in_flight:
            return
        if rec.reads:
            self._decide(rec)
        elif rec.best_crop is not None and rec.age + 1 >= self.thr.stable_frames:
            self._submit(rec)
        else:
            self._retire(rec)

    def _decide(self, rec: TrackRecord) -> None:
        result = vote(rec.reads, self.formats, min_len=self.thr.min_plate_len)
        if result is None:
            rec.status = TrackStatus.NO_PLATE
            self.stats.no_plate += 1
            self._cache("set_status", self.id, rec.key, TrackStatus.NO_PLATE)
        else:
            self._report(rec, result)
        if rec.closing:
            self._retire(rec)

    def _retire(self, rec: TrackRecord) -> None:
        """A track is done: forget it, and tell the gate where it went and for how long."""
        self.book.pop(rec.track_id, None)
        if self.vehicle_events and not rec.adopted and rec.age + 1 >= self.thr.stable_frames:
            self._vehicle_event(rec)
        if self._zones is not None:
            self._zones.forget(rec.track_id)

    def _zone_fields(self, rec: TrackRecord) -> tuple[str | None, float | None]:
        if self._zones is None:
            return None, None
        st = self._zones.state(rec.track_id, rec.last_seen)
        if st is None:
            return None, None
        return (st.direction.value if st.direction else None), st.dwell_s

    def _colour(self, rec: TrackRecord) -> str | None:
        """Dominant colour, once per track, on its best frame (vehicles mode only)."""
        if not rec.color_done and self.cam.mode == "vehicles" and self.cam.vehicle_colour:
            rec.color_done = True
            if rec.best_crop is not None:
                rec.color = dominant_colour(rec.best_crop)
        return rec.color

    def _vehicle_event(self, rec: TrackRecord) -> None:
        direction, dwell = self._zone_fields(rec)
        event_id = f"{self.id}-{rec.key}-v{uuid.uuid4().hex[:6]}"
        crop_path = None
        if not self.cam.read_plates and rec.best_crop is not None:  # an overview camera's view
            try:
                crop_path = str(save_crop(self.cfg.output_dir, self.id, event_id, rec.best_crop))
            except OSError as exc:
                log.warning("camera %s: could not save crop: %s", self.id, exc)
        now = self.clock()
        event = camera_event(
            event_id=event_id, camera=self.id, track_id=rec.key, plate=rec.plate,
            raw_text="", confidence=rec.plate_confidence, region=None, format=None,
            first_seen=rec.first_seen, last_seen=rec.last_seen, box=rec.best_box,
            vehicle_class=rec.label, frame=rec.best_frame,
            latency_ms=1000 * (now - rec.first_wall), votes=0, crop_path=crop_path,
            kind="vehicle", reported_at=now, color=self._colour(rec), direction=direction,
            dwell_s=dwell,
        )  # fmt: skip
        self.sinks.emit(event)
        self.stats.vehicle_events += 1

    def _report(self, rec: TrackRecord, result: PlateResult) -> None:
        rec.status = TrackStatus.READ
        event_id = f"{self.id}-{rec.key}-{uuid.uuid4().hex[:6]}"
        won = self._cache(
            "mark_reported", self.id, rec.key, result, event_id, default=True,
            first_seen=rec.first_seen, last_seen=rec.last_seen, box=rec.box,
            vehicle_class=rec.label,
        )  # fmt: skip
        claimed = won and self._cache(
            "claim_report", self.id, result.plate, event_id, self.cam.dedup_window_s, default=True
        )
        if not claimed:
            self.stats.duplicates += 1
            self.metrics.duplicates.labels(self.id, "track" if not won else "dedup_window").inc()
            log.info("camera %s: %s already reported, suppressed", self.id, result.plate)
            return
        crop_path = None
        if rec.best_crop is not None:
            try:
                crop_path = str(save_crop(self.cfg.output_dir, self.id, event_id, rec.best_crop))
            except OSError as exc:
                log.warning("camera %s: could not save crop: %s", self.id, exc)
        rec.plate, rec.plate_confidence = result.plate, result.confidence
        direction, dwell = self._zone_fields(rec)
        now = self.clock()
        event = camera_event(
            event_id=event_id, camera=self.id, track_id=rec.key, plate=result.plate,
            raw_text=result.raw_text, confidence=result.confidence, region=result.region,
            format=result.format, first_seen=rec.first_seen, last_seen=rec.last_seen,
            box=rec.best_box, vehicle_class=rec.label, frame=rec.best_frame,
            latency_ms=1000 * (now - rec.first_wall), votes=result.votes,
            crop_path=crop_path, reported_at=now, color=self._colour(rec), direction=direction,
            dwell_s=dwell,
        )  # fmt: skip
        self.sinks.emit(event)
        self.stats.events += 1
        self.metrics.events.labels(self.id).inc()
        self.resume.add_reported(
            Reported(result.plate, rec.first_seen, rec.last_seen, rec.first_box, rec.box, event_id)
        )
        log.info("camera %s: %s (%.2f, %s) track %d", self.id, result.plate, result.confidence,
                 result.format or "no format", rec.track_id)  # fmt: skip

    def _flush(self, graceful: bool, timeout_s: float = 30.0) -> None:
        """End of a file: read every stable unread track, wait for reads, decide all."""
        if graceful:
            for rec in list(self.book.values()):
                self._close(rec)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and any(
                r.in_flight
                or (r.closing and r.status is TrackStatus.PENDING and r.best_crop is not None)
                for r in self.book.values()
            ):
                self._apply_outcomes()
                self._retry_due()
                time.sleep(0.02)
            self._apply_outcomes()

    def _cache(self, op: str, *args: object, default: object = None, **kw: object) -> object:
        """Cache calls never take the pipeline down (the cache buffers when Redis is down)."""
        try:
            return getattr(self.cache, op)(*args, **kw)
        except Exception as exc:
            log.warning("camera %s: cache %s failed: %s", self.id, op, exc)
            return default


__all__ = ["CameraPipeline", "PipelineStats", "Read"]
