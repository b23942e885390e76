"""One camera's loop: frames -> zone filter -> detect -> track -> read once -> vote -> report.

The loop owns all track state. Decoding runs in the source's thread behind a bounded
queue (``runtime.frame_queue``); reading runs in the worker's thread behind another; sinks
buffer on their own. The loop never waits on the network for more than one detection
call. Everything it talks to comes in one ``Stages`` (fakes in tests); what differs by
``mode:`` / ``read_plates`` is the ``CameraMode`` strategy, the zone logic is the
``ZoneFilter`` stage, and every tunable number is in the camera's config.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque

import numpy as np

from edge_client.config import Camera, EdgeConfig
from edge_client.contracts import Box, Detections, Frame, PlateResult, TrackedBox, TrackStatus
from edge_client.crops import save_crop
from edge_client.enhance import enhance, should_enhance
from edge_client.events import EventKind, ImageKind
from edge_client.plates.voting import is_plausible, vote
from edge_client.reader import ReadJob, ReadOutcome
from edge_client.source import END, Source
from edge_client.state.resume import Reported
from edge_client.streams import scale_box
from edge_client.trackbook import TrackRecord, should_decide
from edge_client.unread import UnreadCropStore
from edge_client.zones.filter import ZoneFilter
from ensemble.image_io import encode_jpeg

from .ahead import DetectAhead, Detected
from .cache import LoopCache
from .events import event_id, track_event
from .modes import mode_for
from .stages import Stages
from .stats import PipelineStats

log = logging.getLogger("ovr_alpr.pipeline")


def fit_long_side(image: np.ndarray, limit: int = 640) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    if max(h, w) <= limit:
        return image
    s = limit / max(h, w)
    return cv2.resize(
        image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )


def _unsettled(rec: TrackRecord) -> bool:
    """A read is in flight, or a closing track still waits for one (flush keeps waiting)."""
    waiting = rec.closing and rec.status is TrackStatus.PENDING and rec.best_crop is not None
    return rec.in_flight or waiting


class CameraPipeline:
    """One camera: ``run`` drives the loop until the source ends or ``stop`` is set."""

    def __init__(self, camera_id: str, cam: Camera, cfg: EdgeConfig, stages: Stages) -> None:
        self.id, self.cam, self.cfg, self.stages = camera_id, cam, cfg, stages
        self.thr, self.rt = cam.thresholds, cam.runtime
        self.mode = mode_for(cam)
        self.zones = ZoneFilter(cam.zone, cam.roi)
        self.cache = LoopCache(stages.cache, camera_id)
        self.metrics = stages.metrics
        self.book: dict[int, TrackRecord] = {}
        now = stages.monotonic()
        self.stats = PipelineStats(started=now)
        self.run_id = stages.new_id()[:8]
        self.frames: queue.Queue[Frame | None] = queue.Queue(maxsize=self.rt.frame_queue)
        self._detect_after = 0.0  # monotonic time before which no frame is sent to detect
        self._detect_retry = self.rt.detect_backoff.retry()
        self._read_retry = self.rt.read_backoff.retry()
        self._last_status = now
        self._last_cursor = 0.0
        self._last_frame = 0
        self._hb = (now, 0)  # last heartbeat (time, frames) for a recent fps
        self.source: Source | None = None  # the running source (its stats: open_error)
        self.unread = UnreadCropStore(cfg.output_dir, camera_id, cam.unread_crops, stages.clock)

    # --- main loop ---------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> PipelineStats:
        """Frames in order through detection (up to ``runtime.detect_ahead`` requests in
        flight) and tracking (one frame at a time, in order), until the source ends or
        ``stop`` is set."""
        stop = stop or threading.Event()
        st = self.stages
        st.resume.load_reported()
        start = st.resume.load_cursor() if st.source.resumable else 0
        if start:
            log.info("camera %s: resuming at frame %d", self.id, start)
        source = self.source = st.source(self.id, self.frames, start).start()
        depth = self.rt.detect_ahead
        ahead = DetectAhead(depth, self._call_detector)
        # frames taken from the source but not yet sent: a file frame whose detection failed
        # (held until the server answers: nothing lost), or one put back while the frames
        # in flight are tracked first (the zone's idle skipping needs their tracks)
        nxt: deque[tuple[Frame, bool]] = deque()  # (frame, already admitted by the zone)
        ended = drain = False
        try:
            while not stop.is_set():
                self._apply_outcomes()
                self._retry_due()
                self._periodic(source)  # every turn: heartbeats go on while frames drop
                if ahead.window and (drain or ended or ahead.full() or ahead.oldest_done()):
                    self._resolve(ahead, nxt, source.live)
                    drain = drain and bool(ahead.window)
                    continue
                if nxt:
                    frame, admitted = nxt.popleft()
                elif ended:
                    break
                else:
                    try:
                        got = self.frames.get(timeout=self.rt.poll_s if not ahead.window else 0)
                    except queue.Empty:
                        if ahead.window:  # nothing new yet: track what is in flight
                            self._resolve(ahead, nxt, source.live)
                        continue
                    if got is END:
                        ended = True
                        continue
                    assert got is not None
                    frame, admitted = got, False
                if not admitted and ahead.window and self.zones.may_skip():
                    nxt.appendleft((frame, False))  # decide on it once the zone is current
                    drain = True
                    continue
                if not admitted and self._skipped(frame):
                    continue
                wait = self._detect_after - st.monotonic()
                if wait > 0:  # the detector failed: a live camera moves on (frames are
                    if source.live:  # dropped and counted), a file waits for the server
                        self.metrics.frames_dropped.labels(self.id, "detector_down").inc()
                    else:
                        nxt.appendleft((frame, True))
                        st.sleep(min(self.rt.poll_s, wait))
                    continue
                ahead.send(frame)
        finally:
            ahead.close()
            source.stop()
            self._flush(graceful=not stop.is_set())
            self._save_cursor()
        return self.stats

    def fps(self) -> float:
        return self.stats.fps(self.stages.monotonic())

    @property
    def last_frame(self) -> int:
        """Index of the last frame taken from the source (processed or idle-skipped)."""
        return self._last_frame

    def _periodic(self, source: Source) -> None:
        now = self.stages.monotonic()
        m, cam = self.metrics, self.id
        m.queue_depth.labels(cam, "frames").set(self.frames.qsize())
        m.queue_depth.labels(cam, "reads").set(self.stages.worker.pending())
        if now - self._last_cursor > self.rt.cursor_every_s:
            self._save_cursor()
            self._last_cursor = now
        if now - self._hb[0] >= self.rt.heartbeat_every_s:
            self._heartbeat(now, source)
        if now - self._last_status >= self.cfg.status_interval_s:
            self._last_status = now
            s, fps = self.stats, self.stats.fps(now)
            m.fps.labels(cam).set(fps)
            log.info(
                "camera %s: %.1f fps | frames %d (dropped %d) | tracks %d | reads %d | events %d | "
                "duplicates %d | no plate %d | read queue %d",
                cam, fps, s.frames, source.stats.dropped, s.tracks, s.reads, s.events,
                s.duplicates, s.no_plate, self.stages.worker.pending(),
            )  # fmt: skip

    def _heartbeat(self, now: float, source: Source) -> None:
        """Camera status for the gate dashboard: recent fps, counters, liveness."""
        t0, f0 = self._hb
        fps = (self.stats.frames + self.stats.idle_skipped - f0) / max(1e-6, now - t0)
        self._hb = (now, self.stats.frames + self.stats.idle_skipped)
        s = self.stats
        fields: dict[str, str | int | float] = {
            "fps": round(fps, 2), "frames": s.frames, "idle_skipped": s.idle_skipped,
            "dropped": source.stats.dropped, "tracks": s.tracks, "reads": s.reads,
            "events": s.events, "mode": self.cam.mode, "read_plates": int(self.cam.read_plates),
            "updated_at": round(self.stages.clock(), 3), "run_id": self.run_id,
        }  # fmt: skip
        self.cache.heartbeat(fields, self.rt.heartbeat_ttl_s)

    def _save_cursor(self) -> None:
        pending = [r.first_frame for r in self.book.values() if r.status is TrackStatus.PENDING]
        self.stages.resume.save_cursor(min([*pending, self._last_frame]))

    # --- per frame ---------------------------------------------------------------
    def _skipped(self, frame: Frame) -> bool:
        """The zone is empty and this frame is not looked at (``zone.idle_every``)."""
        if not self.zones.skip(frame):
            return False
        self._last_frame = frame.index
        self.stats.idle_skipped += 1
        self.metrics.frames_dropped.labels(self.id, "zone_idle").inc()
        return True

    def _call_detector(self, frame: Frame) -> Detected:
        """The detector on one frame (in a ``DetectAhead`` worker when detecting ahead)."""
        st = self.stages
        t0 = st.monotonic()
        image, offset = self.zones.detector_input(frame.image)
        dets = st.detector.detect([image])[0]
        return Detected(dets, offset, st.monotonic() - t0)

    def _resolve(self, ahead: DetectAhead, nxt: deque[tuple[Frame, bool]], live: bool) -> None:
        """The oldest frame in flight: track it, or, when its detection failed, back off
        and drop it (live) or send it and every later frame in flight again (file)."""
        frame, future = ahead.pop()
        try:
            got = future.result()
        except Exception as exc:  # unreachable or failing server: keep decoding, back off
            self.stats.detect_errors += 1
            self.stats.detect_failures += 1
            self.metrics.triton_errors.labels(self.id, "detector").inc()
            wait = self._detect_retry.fail()
            self._detect_after = self.stages.monotonic() + wait
            log.warning("camera %s: detection failed (%s); retrying in %.1fs", self.id, exc, wait)
            if live:
                self.metrics.frames_dropped.labels(self.id, "detector_down").inc()
            else:
                later = ahead.clear()  # answered or not, detected again after the pause
                nxt.extendleft(reversed([(f, True) for f in [frame, *later]]))
            return
        self.stats.detect_errors = 0
        self._detect_retry.reset()
        self.metrics.triton_calls.labels(self.id, "detector").inc()
        self.metrics.stage_seconds.labels(self.id, "detect").observe(got.seconds)
        hw = (frame.image.shape[0], frame.image.shape[1])
        self._track(frame, self.zones.keep(got.detections, got.offset, hw))

    def _track(self, frame: Frame, dets: Detections) -> None:
        """Track one detected frame and schedule reads."""
        st = self.stages
        self._last_frame = frame.index
        self.stats.frames += 1
        self.metrics.frames.labels(self.id).inc()
        t0 = st.monotonic()
        self.stats.last_frame_at = t0
        if self.stats.first_frame_at is None:
            self.stats.first_frame_at = t0
        tracked: list[TrackedBox] = st.tracker.update(dets)
        self.metrics.stage_seconds.labels(self.id, "track").observe(st.monotonic() - t0)
        for tb in tracked:
            rec = self.book.get(tb.track_id) or self._new_track(tb, frame)
            rec.observe(tb, frame.index, frame.timestamp)
            if self.mode.offers(rec) and not frame.corrupt:  # a concealed-error frame is
                self._offer(rec, tb.box, frame)  # tracked, never read from
            if self.mode.wants_read(rec, st.clock()):
                self._submit(rec)
        self.zones.observe(tracked, len(dets), frame.timestamp)
        for tid in st.tracker.removed():
            gone = self.book.get(tid)
            if gone is not None:
                self._close(gone)

    def _offer(self, rec: TrackRecord, box: Box, frame: Frame) -> None:
        """Offer the track a crop of ``box``: from the matched main-stream frame when there
        is one (the box scaled to it), else from the detect frame."""
        image, at = frame.image, box
        if frame.read_image is not None:
            image = frame.read_image
            at = scale_box(box, frame.image.shape[:2], image.shape[:2])
        crop = self.mode.crop(image, at)
        if crop is not None:
            whole = image if self.cam.crops.save_frame else None
            rec.offer_crop(crop[0], frame.index, box, crop[1], frame_image=whole)

    def _new_track(self, tb: TrackedBox, frame: Frame) -> TrackRecord:
        st = self.stages
        label = self.mode.label(tb.class_id, st.labels)
        rec = TrackRecord(
            tb.track_id, f"{self.run_id}-{tb.track_id}", label, frame.timestamp, frame.index,
            tb.box, st.clock(),
        )  # fmt: skip
        self.book[tb.track_id] = rec
        self.stats.tracks += 1
        self.metrics.tracks.labels(self.id).inc()
        rep = st.resume.match(frame.timestamp, tb.box)
        if rep is not None:  # the same vehicle was reported before a restart
            rec.status, rec.adopted = TrackStatus.READ, True
            self.stats.adopted += 1
            self.metrics.cache_hits.labels(self.id).inc()
            log.info(
                "camera %s: track %d is %s, reported before restart",
                self.id, tb.track_id, rep.plate,
            )  # fmt: skip
        self.cache.seen(rec.key, rec.first_seen, rec.last_seen, tb.box, label)
        return rec

    def _submit(self, rec: TrackRecord) -> bool:
        assert rec.best_crop is not None
        st, crops = self.stages, self.cam.crops
        crop = rec.best_crop
        if should_enhance(crop, crops.enhance):
            crop = enhance(crop, crops.enhance)
            self.stats.enhanced += 1
        jpeg = encode_jpeg(fit_long_side(crop, crops.read_long_side), crops.jpeg_quality)
        job = ReadJob(self.id, rec.track_id, jpeg, rec.best_frame, st.clock())
        if not st.worker.submit(job):
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
        st = self.stages
        while True:
            try:
                out: ReadOutcome = st.worker.outcomes.get_nowait()
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
                rec.retry_after = st.clock() + self._read_retry.fail()
                log.warning(
                    "camera %s: read of track %d failed: %s", self.id, rec.track_id, out.error
                )
                continue
            self.stats.read_failures = 0
            self._read_retry.reset()
            self.metrics.triton_calls.labels(self.id, "reader").inc()
            rec.reads.append(out.read)
            self.cache.vote(rec.key, out.read)
            plausible = is_plausible(
                out.read.text, st.formats, self.thr.min_plate_len,
                char_confidences=out.read.char_confidences,
            )  # fmt: skip
            if rec.closing or should_decide(rec, self.thr, plausible):
                self._decide(rec)

    def _retry_due(self) -> None:
        """Tracks that left the view with a failed read: retry their best frame after the pause."""
        now = self.stages.clock()
        for rec in list(self.book.values()):
            due = rec.closing and rec.status is TrackStatus.PENDING and not rec.in_flight
            if due and not rec.reads and rec.best_crop is not None and now >= rec.retry_after:
                self._submit(rec)

    # --- decisions -------------------------------------------------------------------
    def _close(self, rec: TrackRecord) -> None:
        """The tracker dropped the track: decide with what we have, or read it one last time."""
        if not self.mode.awaits_read(rec):
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
        result = vote(rec.reads, self.stages.formats, min_len=self.thr.min_plate_len)
        if result is None:
            rec.status = TrackStatus.NO_PLATE
            self.stats.no_plate += 1
            self.cache.no_plate(rec.key)
        else:
            self._report(rec, result)
        if rec.closing:
            self._retire(rec)

    def _retire(self, rec: TrackRecord) -> None:
        """A track is done: forget it, and tell the gate where it went and for how long."""
        self.book.pop(rec.track_id, None)
        unread = self.mode.awaits_read(rec) or rec.status is TrackStatus.NO_PLATE
        stable = rec.age + 1 >= self.thr.stable_frames
        if unread and stable and rec.best_crop is not None and not rec.adopted:
            reason = "no_plate" if rec.status is TrackStatus.NO_PLATE else "unread"
            if self.unread.save(
                rec.key, rec.best_crop, reason=reason, timestamp=self.stages.clock(),
                box=rec.best_box,
            ) is not None:  # fmt: skip
                self.stats.unread_saved += 1
        if self.mode.ends_with_vehicle_event(rec):
            self._emit(rec, None)
            self.stats.vehicle_events += 1
        self.zones.forget(rec.track_id)

    def _report(self, rec: TrackRecord, result: PlateResult) -> None:
        """A plate was decided: claim it (track, then dedup window), then emit it."""
        rec.status = TrackStatus.READ
        eid = event_id(self.id, rec, EventKind.PLATE, self.stages.new_id()[:6])
        won = self.cache.report(
            rec.key, result, eid, first_seen=rec.first_seen, last_seen=rec.last_seen,
            box=rec.box, vehicle_class=rec.label,
        )  # fmt: skip
        claimed = won and self.cache.claim(result.plate, eid, self.cam.dedup_window_s)
        if not claimed:
            self.stats.duplicates += 1
            self.metrics.duplicates.labels(self.id, "track" if not won else "dedup_window").inc()
            log.info("camera %s: %s already reported, suppressed", self.id, result.plate)
            return
        self._emit(rec, result, eid)
        self.stats.events += 1
        self.metrics.events.labels(self.id).inc()
        self.stages.resume.add_reported(
            Reported(result.plate, rec.first_seen, rec.last_seen, rec.first_box, rec.box, eid)
        )
        log.info("camera %s: %s (%.2f, %s) track %d", self.id, result.plate, result.confidence,
                 result.format or "no format", rec.track_id)  # fmt: skip

    def _emit(self, rec: TrackRecord, result: PlateResult | None, eid: str | None = None) -> None:
        """Build and send the track's event: ``plate`` with a result, else ``vehicle``."""
        st = self.stages
        if result is None:
            eid = event_id(self.id, rec, EventKind.VEHICLE, st.new_id()[:6])
            crop = self.mode.vehicle_event_crop(rec)
        else:
            assert eid is not None
            crop = rec.best_crop
            rec.plate, rec.plate_confidence = result.plate, result.confidence
        crop_path = self._save_crop(eid, crop)
        images = {self.mode.image_kind: crop_path} if crop_path else {}
        frame_path = self._save_crop(f"{eid}-frame", rec.best_frame_image, max_side=1920)
        if frame_path:
            images[ImageKind.FRAME] = frame_path
        zone = self.zones.fields(rec.track_id, rec.last_seen)
        now = st.clock()
        event = track_event(
            event_id=eid, camera=self.id, rec=rec, reported_at=now, zone=zone,
            color=self.mode.colour(rec), crop_path=crop_path, images=images, result=result,
        )  # fmt: skip
        st.sinks.emit(event)

    def _save_crop(self, eid: str, crop: np.ndarray | None, max_side: int = 640) -> str | None:
        if crop is None:
            return None
        try:
            return str(
                save_crop(
                    self.cfg.output_dir, self.id, eid, crop, max_side,
                    timestamp=self.stages.clock(),
                )
            )  # fmt: skip
        except OSError as exc:
            log.warning("camera %s: could not save crop: %s", self.id, exc)
            return None

    def _flush(self, graceful: bool) -> None:
        """End of a file: read every stable unread track, wait for reads, decide all."""
        if not graceful:
            return
        st = self.stages
        for rec in list(self.book.values()):
            self._close(rec)
        deadline = st.monotonic() + self.rt.flush_timeout_s
        while st.monotonic() < deadline and any(
            r.in_flight
            or (r.closing and r.status is TrackStatus.PENDING and r.best_crop is not None)
            for r in self.book.values()
        ):
            self._apply_outcomes()
            self._retry_due()
            st.sleep(self.rt.flush_poll_s)
        self._apply_outcomes()
