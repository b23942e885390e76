"""Edge-client logic without servers: config validation, read policy, restart matching,
decoder selection, file sources (incl. truncated files), the batching read worker."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_client.config import ConfigError, Thresholds, load_config, parse_config
from edge_client.contracts import Read, TrackedBox, TrackStatus
from edge_client.reader import ReadJob, ReadWorker
from edge_client.source import END, Backoff, VideoSource, select_decoder
from edge_client.state.resume import Reported
from edge_client.trackbook import TrackRecord, should_decide, should_read

REPO = Path(__file__).resolve().parent.parent


# --- configuration ---------------------------------------------------------------------
def cfg(**camera: object) -> dict:
    return {"cameras": {"cam1": {"source": "a.mp4", **camera}}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (cfg(process_every=0), "cameras.cam1.process_every"),
        (cfg(mode="faces"), "cameras.cam1.mode"),
        (cfg(colour="red"), "cameras.cam1.colour"),
        (cfg(thresholds={"detection": 1.5}), "cameras.cam1.thresholds.detection"),
        (cfg(roi={"x1": 0.8, "x2": 0.2}), "roi must have x1 < x2"),
        (cfg(sinks=[{"type": "carrier-pigeon"}]), "cameras.cam1.sinks.0"),
        (cfg(sinks=[{"type": "webhook", "url": "ftp://x"}]), "cameras.cam1.sinks.0.webhook.url"),
        ({"cameras": {}}, "cameras"),
        ({"cameras": {"../etc": {"source": "a.mp4"}}}, "camera id '../etc'"),
        ({"redis": {"url": "http://x"}, **cfg()}, "redis.url"),
        ({"tritton": {}, **cfg()}, "tritton"),
    ],
)
def test_invalid_config_names_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as err:
        parse_config(data)
    assert message in str(err.value)


def test_shipped_config_is_valid() -> None:
    config = load_config(REPO / "config" / "edge.yaml")
    assert {"cam1", "demo"} <= set(config.cameras)
    assert config.cameras["demo"].mode == "plates"


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "cameras: [\n"])
def test_config_file_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


# --- read policy -----------------------------------------------------------------------
THR = Thresholds(detection=0.5, min_box_px=20, stable_frames=3, read_confidence=0.9, max_retries=1)


def rec(age: int = 5, score: float = 0.8, height: float = 40, **kw: object) -> TrackRecord:
    r = TrackRecord(1, "k", "car", 0.0, 0, (0, 0, 100, height), 0.0)
    r.observe(TrackedBox(1, (0, 0, 100, height), score, 2, age), 5, 0.5)
    r.offer_crop(np.full((int(height), 100, 3), 128, np.uint8), 5, (0, 0, 100, height))
    for k, v in kw.items():
        setattr(r, k, v)
    return r


@pytest.mark.parametrize(
    ("last_read", "quality", "replaced"),
    [
        (None, 0.9, False),  # not read yet: only a better crop replaces the best
        (Read("AB12", 0.5, (), 5), 0.9, False),  # text read: only a better crop
        (Read("", 0.0, (), 5), 0.9, True),  # nothing read on it: another frame's will do
        (Read("", 0.0, (), 5), 0.5, False),  # ... unless much worse
        (Read("", 0.0, (), 4), 0.9, False),  # the empty read was of an older crop
    ],
)  # fmt: skip
def test_a_crop_the_reader_found_nothing_on_gives_way(
    last_read: Read | None, quality: float, replaced: bool
) -> None:
    r = rec()  # best crop: frame 5
    if last_read is not None:
        r.reads.append(last_read)
    best = r.best_quality
    side = int(40 * quality)  # a smaller crop of the same texture: lower quality
    r.offer_crop(np.full((side, 100, 3), 128, np.uint8), 6, (0, 0, 100 * quality, side))
    assert (r.best_frame == 6) is replaced, (best, r.best_quality)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (rec(), True),
        (rec(age=1), False),  # not stable yet
        (rec(score=0.3), False),  # low detector score
        (rec(height=10), False),  # too small to read
        (rec(in_flight=True), False),
        (rec(status=TrackStatus.READ), False),
        (rec(retry_after=1e12), False),  # backing off after a failed request
        (rec(attempts=1, reads=[Read("AB12", 0.5)], quality_at_last_read=1.0), True),  # retry
        (rec(attempts=1, reads=[Read("AB12", 0.95)], quality_at_last_read=1.0), False),
        (rec(attempts=1, reads=[Read("AB12", 0.5)], quality_at_last_read=1e9), False),
        (rec(attempts=2, reads=[Read("AB12", 0.5)], quality_at_last_read=1.0), False),
        # the reader found no text on frame 5's crop: only another frame's is worth a retry
        (rec(attempts=1, reads=[Read("", 0.0, (), 5)], quality_at_last_read=1.0), False),
        (rec(attempts=1, reads=[Read("", 0.0, (), 4)], quality_at_last_read=1e9), True),
        (rec(attempts=2, reads=[Read("", 0.0, (), 4)], quality_at_last_read=1.0), False),
    ],
)  # fmt: skip
def test_should_read(record: TrackRecord, expected: bool) -> None:
    assert should_read(record, THR, now_wall=1.0) is expected


@pytest.mark.parametrize(
    ("record", "plausible", "expected"),
    [
        (rec(attempts=1, reads=[Read("AB12CDE", 0.95)]), True, True),
        (rec(attempts=1, reads=[Read("AB12CDE", 0.95)]), False, False),
        (rec(attempts=1, reads=[Read("AB12CDE", 0.5)]), True, False),
        (rec(attempts=2, reads=[Read("AB", 0.5), Read("AB1", 0.5)]), False, True),  # budget spent
        (rec(attempts=1, reads=[]), True, False),
        (rec(attempts=1, reads=[Read("AB12CDE", 0.95)], in_flight=True), True, False),
    ],
)
def test_should_decide(record: TrackRecord, plausible: bool, expected: bool) -> None:
    assert should_decide(record, THR, plausible) is expected


# --- restart matching ------------------------------------------------------------------
REP = Reported("AB12CDE", 10.0, 20.0, (0, 0, 100, 50), (200, 0, 300, 50), "e1")


@pytest.mark.parametrize(
    ("t", "box", "matches"),
    [
        (15.0, (100, 0, 200, 50), True),  # interpolated midway
        (10.0, (0, 0, 100, 50), True),
        (21.5, (200, 0, 300, 50), True),  # within the slack after the last sighting
        (25.0, (200, 0, 300, 50), False),
        (15.0, (0, 200, 100, 250), False),  # elsewhere in the frame
    ],
)
def test_reported_matching(t: float, box: tuple, matches: bool) -> None:
    assert REP.matches(t, box, slack_s=2.0, min_iou=0.3) is matches


# --- decoder and source ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("pref", "gpu", "expected"),
    [
        ("auto", False, "cpu"),
        ("auto", True, "nvdec"),
        ("cpu", True, "cpu"),
        ("nvdec", False, "cpu"),
    ],
)
def test_select_decoder(pref: str, gpu: bool, expected: str) -> None:
    assert select_decoder(pref, available=lambda: gpu) == expected


def test_backoff_is_capped() -> None:
    delays = Backoff(0.5, 4.0).delays()
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def write_video(path: Path, frames: int = 30) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (160, 120))
    for i in range(frames):
        writer.write(np.full((120, 160, 3), (i * 8) % 255, np.uint8))
    writer.release()
    return path


def drain(q: queue.Queue) -> list:
    out = []
    while True:
        item = q.get(timeout=10)
        if item is END:
            return out
        out.append(item)


@pytest.mark.parametrize(("every", "start", "expected"), [(1, 0, 30), (3, 0, 10), (1, 20, 10)])
def test_file_source_frame_selection(tmp_path: Path, every: int, start: int, expected: int) -> None:
    q: queue.Queue = queue.Queue(4)
    VideoSource(
        "c", str(write_video(tmp_path / "v.mp4")), q, process_every=every, start_frame=start
    ).start()
    frames = drain(q)
    assert len(frames) == expected
    assert [f.index for f in frames] == sorted(f.index for f in frames)


def test_truncated_file_ends_cleanly(tmp_path: Path) -> None:
    data = write_video(tmp_path / "v.mp4", 60).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    q: queue.Queue = queue.Queue(4)
    VideoSource("c", str(cut), q).start()
    assert len(drain(q)) < 60  # whatever decodes, then a clean end (no hang, no exception)


def test_missing_file_ends_cleanly(tmp_path: Path) -> None:
    q: queue.Queue = queue.Queue(4)
    src = VideoSource("c", str(tmp_path / "none.mp4"), q).start()
    assert drain(q) == [] and src.stats.errors == 1


def test_live_source_retries_with_backoff() -> None:
    q: queue.Queue = queue.Queue(4)
    src = VideoSource(
        "c", "rtsp://127.0.0.1:9/none", q, backoff=Backoff(0.01, 0.02), max_reconnects=2
    ).start()
    assert drain(q) == [] and src.stats.errors == 3


# --- read worker -----------------------------------------------------------------------
def test_worker_batches_and_isolates_failures() -> None:
    calls: list[int] = []

    def reader(jpegs):  # type: ignore[no-untyped-def]
        calls.append(len(jpegs))
        if b"bad" in jpegs:
            raise OSError("server gone")
        return [(j.decode().lower(), 0.9, (0.9,)) for j in jpegs]

    worker = ReadWorker(reader, max_batch=4, queue_size=8, linger_s=0.05)
    for i in range(6):
        assert worker.submit(ReadJob("c", i, f"AB{i}".encode(), i, time.time()))
    worker.start()
    outs = [worker.outcomes.get(timeout=5) for _ in range(6)]
    assert sorted(o.read.text for o in outs if o.read) == [f"AB{i}" for i in range(6)]
    assert calls[0] == 4  # several tracks in one request
    worker.submit(ReadJob("c", 9, b"bad", 9, time.time()))
    failed = worker.outcomes.get(timeout=5)
    assert failed.read is None and "server gone" in (failed.error or "")
    worker.stop()


def test_worker_queue_is_bounded() -> None:
    worker = ReadWorker(lambda j: [], max_batch=1, queue_size=2)
    results = [worker.submit(ReadJob("c", i, b"x", i, 0.0)) for i in range(4)]
    assert results == [True, True, False, False] and worker.refused == 2


def test_metrics_are_exposed_in_prometheus_format() -> None:
    import urllib.request

    from edge_client.metrics import Metrics
    from ensemble.ops.server_process import free_port

    m = Metrics()
    m.frames.labels("cam1").inc(3)
    m.ocr_reads.labels("cam1").inc()
    m.stage_seconds.labels("cam1", "detect").observe(0.05)
    m.queue_depth.labels("cam1", "reads").set(2)
    port = free_port()
    m.serve(port)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'alpr_frames_processed_total{camera="cam1"} 3.0' in text
    assert 'alpr_ocr_reads_total{camera="cam1"} 1.0' in text
    assert 'alpr_queue_depth{camera="cam1",queue="reads"} 2.0' in text
    assert "alpr_stage_seconds_bucket" in text
